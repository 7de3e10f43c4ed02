"""Metrics against closed forms (docs/maths.md section 5).

Axis legend: ``b`` batch, ``k`` importance samples, ``d`` latent, ``f`` data features.

The reference model is linear-Gaussian: p(z) = N(0, t I), p(x|z) = N(W z + c, sigma^2 I), so
p(x) = N(c, t W W^T + sigma^2 I) and p(z|x) is Gaussian. The columns of W are orthogonal, which makes the exact
posterior diagonal, so the real ``mlp`` encoder with ``hidden=()`` can represent it exactly.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from vaezoo.base.errors import UsageError
from vaezoo.components.distributions import isotropic_normal
from vaezoo.components.interfaces import DataSpec, Regularizer, evaluation_rows
from vaezoo.evaluation.evaluation_pass import (
    evaluate,
    importance_weighted_log_likelihood,
    importance_weighted_log_likelihoods,
)
from vaezoo.evaluation.priors import isotropic_variance, offered_test_priors, resolve_test_prior
from vaezoo.plugins.loading import load_plugins
from vaezoo_plugins.metrics.activity import active_units
from vaezoo_plugins.metrics.information import (
    he_groups,
    mutual_information,
    mutual_information_he,
    pairwise_log_density,
)
from vaezoo_plugins.networks.mlp import MLPDecoder, MLPDecoderParams, MLPEncoder, MLPParams
from vaezoo_plugins.regularizers.ncvae import kl_optimal_test_variance, tuned_test_variance

F, D = 3, 2
SPEC = DataSpec(shape=(F,), kind="real")
# Orthogonal columns: W^T W = diag(1.5, 1.25).
W = torch.tensor([[1.0, 0.5], [-0.5, 1.0], [0.5, 0.0]])
C = torch.tensor([0.3, -0.2, 0.1])
SIGMA = 0.5


# ----------------------------------------------------------------------------------------------- helpers


def linear_decoder() -> MLPDecoder:
    """The real mlp decoder with p(x|z) = N(W z + C, SIGMA^2 I)."""
    decoder = MLPDecoder(MLPDecoderParams(hidden=(), likelihood="gaussian"), SPEC, D)
    with torch.no_grad():
        decoder.net[0].weight.copy_(W)
        decoder.net[0].bias.copy_(C)
        decoder.log_scale.fill_(math.log(SIGMA))
    return decoder


def linear_encoder(weight: Tensor, bias: Tensor, std: Tensor) -> MLPEncoder:
    """The real mlp encoder with q(z|x) = N(weight x + bias, diag std^2)."""
    features = weight.shape[1]
    encoder = MLPEncoder(MLPParams(hidden=()), DataSpec(shape=(features,), kind="real"), weight.shape[0])
    with torch.no_grad():
        layer = encoder.net[0]
        layer.weight.zero_()
        layer.weight[: weight.shape[0]] = weight
        layer.bias[: weight.shape[0]] = bias
        layer.bias[weight.shape[0] :] = std.log()
    return encoder


def exact_posterior_params(prior_variance: float) -> tuple[Tensor, Tensor, Tensor]:
    """p(z|x) = N(A x + a, diag v): returns A 'd f', a 'd', v 'd'."""
    v = 1.0 / (1.0 / prior_variance + (W * W).sum(0) / SIGMA**2)
    A = v[:, None] * W.T / SIGMA**2
    return A, -A @ C, v


def exact_encoder(prior_variance: float = 1.0, shift: float = 0.0, inflate: float = 1.0) -> MLPEncoder:
    """The exact posterior, or with its mean moved by ``shift`` posterior stds and its std times ``inflate``."""
    A, a, v = exact_posterior_params(prior_variance)
    return linear_encoder(A, a + shift * v.sqrt(), v.sqrt() * inflate)


def marginal(prior_variance: float = 1.0) -> MultivariateNormal:
    return MultivariateNormal(C, prior_variance * W @ W.T + SIGMA**2 * torch.eye(F))


class ConstantEncoder(MLPEncoder):
    """q(z|x) = N(loc, diag std^2) whatever x is."""

    def __init__(self, loc: Tensor, std: Tensor, features: int = F) -> None:
        super().__init__(MLPParams(hidden=()), DataSpec(shape=(features,), kind="real"), loc.shape[0])
        self.loc, self.std = loc, std

    def forward(self, x: Tensor):
        b = x.shape[0]
        return Independent(Normal(self.loc.expand(b, -1), self.std.expand(b, -1)), 1)


class RecordingNormal(Independent):
    """A diagonal Gaussian that keeps every sample it draws."""

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        super().__init__(Normal(loc, scale), 1)
        self.drawn: list[Tensor] = []

    def sample(self, sample_shape=()):
        z = super().sample(torch.Size(sample_shape))
        self.drawn.append(z)
        return z


# ----------------------------------------------------------------------------------------------- IW-NLL


@pytest.mark.parametrize("prior_variance", [1.0, 2.0])
def test_iw_nll_of_exact_posterior_is_exact_with_one_sample(prior_variance):
    """With q = p(z|x) every importance weight equals p(x): the k = 1 estimate has zero variance."""
    torch.manual_seed(0)
    x = marginal(prior_variance).sample((1024,))
    encoder, decoder = exact_encoder(prior_variance), linear_decoder()
    prior = isotropic_normal(D, prior_variance)
    exact = -marginal(prior_variance).log_prob(x)
    with torch.no_grad():
        for _ in range(3):  # different z, same answer
            got = -importance_weighted_log_likelihood(decoder, encoder(x), prior, x, samples=1, chunk=1)
            torch.testing.assert_close(got, exact, atol=1e-4, rtol=1e-5)
    result = evaluate(encoder, decoder, prior, [x[:400], x[400:]], iw_samples=1, iw_chunk=1)
    assert result["iw_nll"] == pytest.approx(exact.mean().item(), abs=1e-4)
    # The ELBO of the exact posterior is tight too: E[recon] + KL = -log p(x), up to one-sample noise
    # (standard error about 0.03 here).
    assert result["neg_elbo"] == pytest.approx(exact.mean().item(), abs=0.12)


def test_iw_nll_on_a_subset_is_the_mean_over_its_examples_with_their_standard_error():
    """With q = p(z|x) each example's estimate is exact, so the subset's figures are those of the exact values."""
    torch.manual_seed(0)
    x = marginal().sample((1000,))
    encoder, decoder, prior = exact_encoder(), linear_decoder(), isotropic_normal(D, 1.0)
    exact = -marginal().log_prob(x)
    rows = evaluation_rows(1000, 100)
    mask = torch.zeros(1000, dtype=torch.bool)
    mask[rows] = True
    batches = [x[:300], x[300:310], x[310:]]  # subsets of every size within a batch, the middle one maybe empty
    subset = evaluate(encoder, decoder, prior, batches, iw_samples=1, iw_chunk=1, iw_mask=mask)
    assert subset["iw_examples"] == 100
    assert subset["iw_nll"] == pytest.approx(exact[rows].mean().item(), abs=1e-4)
    assert subset["iw_nll_se"] == pytest.approx(exact[rows].std().item() / 10, rel=1e-3)
    assert subset["neg_elbo"] == pytest.approx(exact.mean().item(), abs=0.12), "-ELBO still over all 1000"
    whole = evaluate(encoder, decoder, prior, batches, iw_samples=1, iw_chunk=1)
    assert whole["iw_examples"] == 1000 and whole["iw_nll"] == pytest.approx(exact.mean().item(), abs=1e-4)
    assert whole["iw_nll_se"] == pytest.approx(exact.std().item() / 1000**0.5, rel=1e-3)
    assert "iw_nll" not in evaluate(encoder, decoder, prior, batches, iw_samples=0, iw_mask=mask)


def test_iw_nll_converges_to_exact_nll_with_imperfect_encoder():
    """Gap to -log p(x) shrinks with k, stays >= 0 (an upper bound on NLL in expectation), small at k = 1000.

    The bias at k = 100 is ~0.01 nats: 4096 examples keep the noise of the average well below that.
    """
    torch.manual_seed(1)
    x = marginal().sample((4096,))
    encoder, decoder = exact_encoder(shift=1.0, inflate=1.8), linear_decoder()
    prior = isotropic_normal(D, 1.0)
    exact = -marginal().log_prob(x).mean().item()
    gaps = {}
    for k in (1, 10, 100, 1000):
        result = evaluate(encoder, decoder, prior, [x], iw_samples=k, iw_chunk=100)
        gaps[k] = result["iw_nll"] - exact
        assert gaps[k] >= -0.005, gaps
        # The ELBO is an upper bound of the NLL too, and IW-NLL with k = 1 is a one-sample ELBO.
        assert result["neg_elbo"] >= exact - 0.05
    assert gaps[1] > 1.0, gaps  # the encoder is really off
    assert gaps[1] > gaps[10] > gaps[100] > gaps[1000], gaps
    assert gaps[1000] < 0.005, gaps


def test_iw_nll_uses_the_test_prior():
    """With test prior N(0, t I), the limit is -log N(x; c, t W W^T + sigma^2 I), not the N(0, I) marginal."""
    torch.manual_seed(2)
    t = 3.0
    x = marginal(t).sample((64,))
    encoder, decoder = exact_encoder(t, shift=0.3, inflate=1.2), linear_decoder()
    result = evaluate(encoder, decoder, isotropic_normal(D, t), [x], iw_samples=1000, iw_chunk=250)
    assert result["iw_nll"] == pytest.approx(-marginal(t).log_prob(x).mean().item(), abs=0.01)
    assert abs(result["iw_nll"] + marginal(1.0).log_prob(x).mean().item()) > 0.1


def test_iw_chunks_combine_to_the_log_mean_of_all_weights():
    """Chunking is exact: the result is log (1/k) sum_k w_k over exactly the k samples drawn, in any chunks."""
    torch.manual_seed(3)
    x = marginal().sample((16,))
    decoder = linear_decoder()
    prior = isotropic_normal(D, 1.0)
    A, a, v = exact_posterior_params(1.0)
    loc, scale = x @ A.T + a + 0.5, (1.5 * v.sqrt()).expand(16, D)
    for samples, chunk in ((1000, 7), (1000, 1000), (10, 3), (5, 8)):
        posterior = RecordingNormal(loc, scale)
        with torch.no_grad():
            got = importance_weighted_log_likelihood(decoder, posterior, prior, x, samples, chunk)
            z = torch.cat(posterior.drawn)  # 'k b d'
            assert z.shape == (samples, 16, D)
            assert max(len(c) for c in posterior.drawn) <= chunk
            log_w = decoder.log_prob(x, z) + prior.log_prob(z) - posterior.log_prob(z)
            expected = torch.logsumexp(log_w, dim=0) - math.log(samples)
        assert got.shape == (16,)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)


class RowCountingDecoder(torch.nn.Module):
    """A decoder that records how many rows (samples times examples) each call sees."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.calls = inner, []

    def log_prob(self, x, z):
        self.calls.append(z.shape[0] * z.shape[1])
        return self.inner.log_prob(x, z)


def test_iw_rows_split_the_examples_without_changing_the_estimate():
    """The decoder sees at most max(rows, chunk) rows per call, every example once per chunk, and the estimate is
    the one of whole-batch calls with the same samples."""
    x = marginal().sample((16,))
    prior = isotropic_normal(D, 1.0)
    A, a, v = exact_posterior_params(1.0)
    posterior = RecordingNormal(x @ A.T + a + 0.5, (1.5 * v.sqrt()).expand(16, D))
    estimates = {}
    for rows in (None, 35, 1):
        decoder = RowCountingDecoder(linear_decoder())
        progress = []
        torch.manual_seed(3)
        with torch.no_grad():
            estimates[rows] = importance_weighted_log_likelihoods(
                decoder, posterior, [prior], x, samples=50, chunk=10, on_chunk=progress.append, rows=rows
            )[0]
        assert max(decoder.calls) == {None: 160, 35: 30, 1: 10}[rows]
        assert sum(decoder.calls) == sum(progress) == 50 * 16
    torch.testing.assert_close(estimates[35], estimates[None])
    torch.testing.assert_close(estimates[1], estimates[None])


def test_iw_chunk_size_does_not_change_the_estimate_statistically():
    """Chunks draw different z (torch's sampler is not chunk-stable), so compare the two estimates to the truth."""
    torch.manual_seed(4)
    x = marginal().sample((1024,))
    encoder, decoder = exact_encoder(shift=0.7, inflate=1.6), linear_decoder()
    prior = isotropic_normal(D, 1.0)
    exact = -marginal().log_prob(x).mean().item()
    small = evaluate(encoder, decoder, prior, [x], iw_samples=1000, iw_chunk=7)["iw_nll"]
    large = evaluate(encoder, decoder, prior, [x], iw_samples=1000, iw_chunk=1000)["iw_nll"]
    assert small == pytest.approx(exact, abs=0.01)
    assert large == pytest.approx(exact, abs=0.01)
    assert small == pytest.approx(large, abs=0.01)


# ----------------------------------------------------------------------------------------------- MI


def test_mi_of_encoder_ignoring_x_is_zero_on_every_batch():
    """Full collapse reads exactly 0, even on a small batch in many dims: both terms share each sample z_i."""
    torch.manual_seed(5)
    encoder = ConstantEncoder(torch.tensor([0.4, -1.0]), torch.tensor([0.3, 2.0]))
    batches = [torch.randn(b, F) for b in (2, 10, 1000)]
    mi = evaluate(encoder, linear_decoder(), isotropic_normal(D, 1.0), batches)["mi"]
    assert mi == pytest.approx(0.0, abs=1e-6)
    collapsed = Independent(Normal(torch.randn(32).expand(50, 32), torch.rand(32).add(0.5).expand(50, 32)), 1)
    assert [mutual_information(collapsed).item() for _ in range(5)] == pytest.approx([0.0] * 5, abs=1e-5)


def test_mi_estimates_vary_little_between_draws_on_a_small_batch():
    """100 examples, 32 dims, weakly informative codes (the regime of near-collapse): the estimate is close to
    the true I = 16 log(1.01) = 0.16 nats, and its spread over z draws is far below the sqrt(d / 2b) = 0.4 nats
    of an estimate whose first term is the exact negative entropy."""
    torch.manual_seed(9)
    posterior = Independent(Normal(0.1 * torch.randn(100, 32), torch.ones(100, 32)), 1)
    draws = torch.tensor([mutual_information(posterior).item() for _ in range(200)])
    assert draws.std().item() < 0.1
    assert draws.mean().item() == pytest.approx(16 * math.log(1.01), abs=0.05)


def test_mi_of_linear_gaussian_encoder_matches_closed_form():
    """q(z|x) = N(A x, s^2 I), x ~ N(0, I): I(x; z) = 0.5 log det(A A^T + s^2 I) - 0.5 d log s^2."""
    torch.manual_seed(6)
    A = torch.tensor([[0.9, 0.3, 0.0], [0.0, 0.4, -0.5]])
    s = 0.6
    encoder = linear_encoder(A, torch.zeros(D), torch.full((D,), s))
    analytic = 0.5 * torch.logdet(A @ A.T + s**2 * torch.eye(D)).item() - 0.5 * D * math.log(s**2)
    assert 0.8 < analytic < 1.5  # well below log(2000) = 7.6, where the batch-mixture bias is small
    batches = [torch.randn(2000, F) for _ in range(8)]
    single = mutual_information(encoder(batches[0])).item()
    assert single == pytest.approx(analytic, abs=0.1)
    result = evaluate(encoder, linear_decoder(), isotropic_normal(D, 1.0), batches, mi_he_batch=2000)
    assert result["mi"] == pytest.approx(analytic, abs=0.03)
    assert result["mi_he"] == pytest.approx(analytic, abs=0.03)
    # He et al.'s aggregates of 50 bias the mixture's log-density (a mixture of 50 posteriors is a worse q(z)), by
    # less than a tenth of a nat here.
    theirs = evaluate(encoder, linear_decoder(), isotropic_normal(D, 1.0), batches)["mi_he"]
    assert theirs == pytest.approx(analytic, abs=0.1)


def test_mi_he_on_a_collapsed_encoder_is_noise_of_the_predicted_spread():
    """Identical posteriors N(m, diag s^2) in d dims: each example's term is 0.5 (|e|^2 - d), e ~ N(0, I), so He et
    al.'s estimate over n examples has mean 0 and standard deviation sqrt(d / 2n), while the paired estimate is
    exactly 0. For d = 32 and n = 1,000: 0.126 nats, measured over 200 evaluations."""
    torch.manual_seed(13)
    loc, scale = torch.randn(32).expand(1000, 32), torch.rand(32).add(0.5).expand(1000, 32)
    groups = he_groups(1000, 50)
    draws = torch.tensor([mutual_information_he(loc, scale, groups) for _ in range(200)])
    assert draws.mean().item() == pytest.approx(0.0, abs=0.03)
    assert draws.std().item() == pytest.approx(math.sqrt(32 / 2000), rel=0.15)


def test_he_groups_are_their_evaluation_batches():
    """Images: groups of 50 drawn at random, seeded, covering every example once; documents: the documents of each
    length in order, at most 32 a group."""
    torch.manual_seed(0)
    images = he_groups(120, 50)
    assert [len(g) for g in images] == [50, 50, 20]
    assert sorted(torch.cat(images).tolist()) == list(range(120))
    assert images[0].tolist() != list(range(50)), "not consecutive: a split stored class by class is mixed"
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(images, he_groups(120, 50), strict=True)), "seeded"
    lengths = torch.tensor([5, 3, 5, 3, 5, 7] + [4] * 70)
    groups = he_groups(len(lengths), 32, lengths)
    assert [g.tolist() for g in groups[:2]] == [[1, 3], list(range(6, 38))]
    assert [len(g) for g in groups] == [2, 32, 32, 6, 3, 1]
    assert all(len(set(lengths[g].tolist())) == 1 for g in groups)
    assert sorted(torch.cat(groups).tolist()) == list(range(len(lengths)))


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_pairwise_log_density_equals_torch_on_every_pair(scale):
    """The expanded Gaussian cross-density is torch's log_prob of every pair, for sharp posteriors far from 0 too,
    and a posterior that is not a diagonal Gaussian goes through its own log_prob."""
    torch.manual_seed(12)
    loc, spread = 5 * torch.randn(300, 32), scale * torch.rand(300, 32).add(0.5)
    posterior = Independent(Normal(loc, spread), 1)
    z = loc + spread * torch.randn(300, 32)
    exact = Independent(Normal(loc.double(), spread.double()), 1).log_prob(z.double().unsqueeze(1))
    torch.testing.assert_close(pairwise_log_density(posterior, z), exact, rtol=1e-9, atol=1e-6)
    full = MultivariateNormal(loc[:5], scale_tril=torch.diag_embed(spread[:5]))
    torch.testing.assert_close(pairwise_log_density(full, z[:5]), posterior.log_prob(z[:5].unsqueeze(1))[:, :5])


def test_evaluation_is_one_pass_over_each_batch():
    """-ELBO, MI and AU (no IW-NLL) encode each batch once and decode it once."""
    calls = {"encoder": 0, "decoder": 0}
    encoder, decoder = linear_encoder(torch.eye(D, F), torch.zeros(D), torch.ones(D)), linear_decoder()
    encoder.register_forward_pre_hook(lambda *_: calls.__setitem__("encoder", calls["encoder"] + 1))
    log_prob = decoder.log_prob

    def counted(x, z):
        calls["decoder"] += 1
        return log_prob(x, z)

    decoder.log_prob = counted
    batches = list(torch.randn(5, 40, F))
    result = evaluate(encoder, decoder, isotropic_normal(D, 1.0), batches)
    assert calls == {"encoder": 5, "decoder": 5} and {"mi", "au", "neg_elbo"} <= set(result)


def test_mi_is_bounded_by_log_batch_size():
    """A near-deterministic, very informative encoder saturates the estimator at log(b) (in expectation)."""
    torch.manual_seed(7)
    encoder = linear_encoder(torch.eye(D, F) * 10.0, torch.zeros(D), torch.full((D,), 1e-3))
    for b, repeats in ((100, 100), (1000, 10)):
        # One batch is noisy (std ~ 1/sqrt(b) from the z samples): average several.
        mi = sum(mutual_information(encoder(torch.randn(b, F))).item() for _ in range(repeats)) / repeats
        assert mi == pytest.approx(math.log(b), abs=0.05)


# ----------------------------------------------------------------------------------------------- AU


def means_with_variances(variances: list[float], n: int = 1000) -> Tensor:
    """'n d' whose column d has sample variance (torch's default, unbiased) exactly ``variances[d]``."""
    raw = torch.randn(n, len(variances), dtype=torch.float64)
    raw = (raw - raw.mean(0)) / raw.std(0)
    return (raw * torch.tensor(variances, dtype=torch.float64).sqrt() + 5.0).float()


def test_active_units_counts_dims_above_threshold():
    torch.manual_seed(8)
    # With n = 1000 the 1% margins hold for the biased and the unbiased variance alike.
    variances = [0.0, 1e-4, 0.0099, 0.0101, 0.05, 1.0, 3.0]
    means = means_with_variances(variances)
    assert active_units(means) == 4
    assert active_units(means, threshold=0.01) == 4
    assert active_units(means, threshold=0.04) == 3
    assert active_units(means, threshold=0.00989) == 5
    assert active_units(means, threshold=10.0) == 0
    assert active_units(torch.full((50, 4), 2.0)) == 0


def test_active_units_needs_the_variance_to_exceed_the_threshold():
    """'exceeds': a dim whose variance equals the threshold exactly is not active."""
    torch.manual_seed(8)
    means = means_with_variances([0.0099, 0.0101, 0.5])
    for j, expected in ((0, 2), (1, 1), (2, 0)):
        at = means.var(dim=0)[j].item()  # a float32 value, exactly representable as the threshold
        assert active_units(means, threshold=at) == expected


def test_evaluate_au_uses_posterior_means_over_all_batches():
    """E[z_1] = x_1 is constant within each batch but differs between them: active only over all batches."""
    torch.manual_seed(9)
    weight = torch.tensor([[0.05, 0.0, 0.0], [0.0, 1.0, 0.0]])  # E[z_0] = 0.05 x_0: variance 0.0025
    encoder = linear_encoder(weight, torch.zeros(D), torch.ones(D))
    x = torch.randn(200, F)
    x[:100, 1], x[100:, 1] = -1.0, 1.0
    prior = isotropic_normal(D, 1.0)
    assert evaluate(encoder, linear_decoder(), prior, [x[:100], x[100:]])["au"] == 1
    assert evaluate(encoder, linear_decoder(), prior, [x[100:]])["au"] == 0
    weight[0, 0] = 1.0
    encoder = linear_encoder(weight, torch.zeros(D), torch.ones(D))
    assert evaluate(encoder, linear_decoder(), prior, [x[:100], x[100:]])["au"] == 2


# ----------------------------------------------------------------------------------------------- ELBO, KL


def hand_kl(loc: Tensor, std: Tensor, prior_variance: float) -> Tensor:
    """KL(N(loc, diag std^2) || N(0, t I)) per example, by hand."""
    var = std**2
    terms = (var + loc**2) / prior_variance - 1.0 - var.log() + math.log(prior_variance)
    return 0.5 * terms.sum(-1)


@pytest.mark.parametrize("prior_variance", [1.0, 0.5, 4.0])
def test_evaluate_kl_and_elbo_match_closed_forms(prior_variance):
    torch.manual_seed(10)
    # Near the exact posterior (so that the one-sample recon is not too noisy), x-dependent mean, unequal stds.
    A, a, v = exact_posterior_params(1.0)
    A = A + torch.tensor([[0.1, -0.2, 0.1], [0.3, 0.0, -0.1]])
    bias, std = a + torch.tensor([0.2, -0.1]), v.sqrt() * torch.tensor([1.5, 0.7])
    encoder, decoder = linear_encoder(A, bias, std), linear_decoder()
    x = marginal().sample((3000,))
    batches = [x[:1000], x[1000:2999], x[2999:]]  # uneven, including a batch of 1
    result = evaluate(encoder, decoder, isotropic_normal(D, prior_variance), batches)
    assert set(result) == {"recon", "kl", "mi", "mi_he", "neg_elbo", "au"}
    assert result["neg_elbo"] == result["recon"] + result["kl"]
    loc = x @ A.T + bias
    assert result["kl"] == pytest.approx(hand_kl(loc, std, prior_variance).mean().item(), rel=1e-5)
    # E_q[-log p(x|z)] = 0.5 f log(2 pi sigma^2) + (|x - W mu - c|^2 + tr(W diag(std^2) W^T)) / (2 sigma^2);
    # the one-sample estimate has a standard error of about 0.03 here.
    residual = (x - loc @ W.T - C).square().sum(-1)
    trace = (W.square() * std.square()).sum()
    recon = 0.5 * F * math.log(2 * math.pi * SIGMA**2) + (residual + trace) / (2 * SIGMA**2)
    assert result["recon"] == pytest.approx(recon.mean().item(), abs=0.12)


# ----------------------------------------------------------------------------------------------- test prior


def test_kl_optimal_test_variance_is_the_grid_argmin_of_expected_kl():
    torch.manual_seed(11)
    A = torch.tensor([[0.8, -0.2, 0.1], [0.3, 0.5, -0.4]])
    encoder = linear_encoder(A, torch.tensor([0.5, -0.3]), torch.tensor([0.4, 1.3]))
    x = torch.randn(301, F)
    batches = [x[:128], x[128:256], x[256:]]
    got = kl_optimal_test_variance(encoder, batches)
    with torch.no_grad():
        posterior = encoder(x)
        grid = torch.arange(0.05, 5.0, 0.0005).tolist()
        expected_kl = [kl_divergence(posterior, isotropic_normal(D, t)).mean().item() for t in grid]
    best = grid[min(range(len(grid)), key=expected_kl.__getitem__)]
    assert got == pytest.approx(best, abs=0.001)
    assert 0.3 < got < 3.0  # the grid is wide enough on both sides
    # And it is the closed form mean_d E_x[sigma_d^2 + mu_d^2].
    assert got == pytest.approx((posterior.variance + posterior.mean**2).mean().item(), rel=1e-5)


class FixedVariance(Regularizer):
    name = "fixed-variance"

    def __init__(self, variance: float | None) -> None:
        nn.Module.__init__(self)  # skips Regularizer.__init__, whose signature is not what is tested here
        self.params, self.variance = None, variance

    def forward(self, step):
        return {}

    def optimal_test_variance(self) -> float | None:
        return self.variance


def constant_encoder_with_optimum(optimum: float) -> ConstantEncoder:
    """Zero means and variance ``optimum`` in every dim: the expected KL is minimised at s^2 = optimum."""
    return ConstantEncoder(torch.zeros(D), torch.full((D,), math.sqrt(optimum)))


@pytest.mark.parametrize(
    ("f", "optimum", "expected"),
    [
        (4.0, 0.5, 1.0),  # below the interval [1, 4]
        (4.0, 2.5, 2.5),  # inside
        (4.0, 9.0, 4.0),  # above
        (0.25, 0.5, 0.5),  # f < 1: the interval is [0.25, 1]
        (0.25, 0.1, 0.25),
        (0.25, 3.0, 1.0),
    ],
)
def test_tuned_test_variance_is_the_kl_optimum_clipped_to_one_and_f(f, optimum, expected):
    torch.manual_seed(12)
    encoder = constant_encoder_with_optimum(optimum)
    got = tuned_test_variance(f, encoder, [torch.randn(10, F), torch.randn(7, F)])
    assert got == pytest.approx(expected, rel=1e-5)


def fake_session(regularizer: Regularizer, encoder, prior=None) -> SimpleNamespace:
    """What test priors read of a session: its model, latent size, validation batches (which must not be read
    unless asked for) and the plugins' hook."""
    anchor = nn.Linear(1, 1)

    def batches(split: str):
        raise AssertionError(f"{split} data read")

    model = SimpleNamespace(regularizer=regularizer, encoder=encoder, parameters=anchor.parameters, prior=prior)
    config = SimpleNamespace(model=SimpleNamespace(latent_dim=D), regularizer=SimpleNamespace(name=regularizer.name))
    return SimpleNamespace(model=model, config=config, batches=batches, hook=load_plugins().manager.hook)


def test_the_ncvae_plugin_offers_optimal_and_tuned_lazily_where_a_regulariser_implies_a_variance():
    encoder = constant_encoder_with_optimum(2.0)
    offered = offered_test_priors(fake_session(FixedVariance(4.0), encoder))
    assert list(offered) == ["trained", "standard", "optimal", "tuned"]
    assert resolve_test_prior(fake_session(FixedVariance(4.0), encoder), "optimal").variance == 4.0
    assert resolve_test_prior(fake_session(FixedVariance(4.0), encoder), "2.5").variance == 2.5
    assert resolve_test_prior(fake_session(FixedVariance(4.0), encoder), "standard").variance == 1.0
    reads_validation = fake_session(FixedVariance(4.0), encoder)
    reads_validation.batches = lambda split: [torch.randn(10, F)]
    assert resolve_test_prior(reads_validation, "tuned").variance == pytest.approx(2.0, rel=1e-5)


class NoImpliedVariance(Regularizer):
    name = "no-implied-variance"

    def __init__(self) -> None:
        nn.Module.__init__(self)

    def forward(self, step):
        return {}


def test_a_regulariser_that_implies_no_variance_is_offered_the_core_test_priors_only():
    session = fake_session(
        NoImpliedVariance(), constant_encoder_with_optimum(2.0), prior=lambda: isotropic_normal(D, 3.0)
    )
    assert list(offered_test_priors(session)) == ["trained", "standard"]
    with pytest.raises(UsageError, match=r"test prior 'optimal' is not offered .* choose one of: trained, standard"):
        resolve_test_prior(session, "optimal")
    assert resolve_test_prior(session, "trained").variance == pytest.approx(3.0, rel=1e-6)


def test_the_trained_test_prior_reports_a_variance_only_when_it_is_isotropic():
    assert isotropic_variance(isotropic_normal(D, 2.0)) == pytest.approx(2.0, rel=1e-6)
    shifted = Independent(Normal(torch.ones(D), torch.ones(D)), 1)
    uneven = Independent(Normal(torch.zeros(D), torch.tensor([1.0, 2.0])), 1)
    assert isotropic_variance(shifted) is None and isotropic_variance(uneven) is None
