"""The maths that a one-line slip would get wrong while every other test still passes, checked against what it
must equal: derived independently (a numerical optimum, a closed form of torch's, an exact count), never the same
formula typed again.

Axis legend: ``b`` batch, ``d`` latent, ``f`` data features, ``t`` tokens.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal, kl_divergence

from tests.conftest import small_config
from vaezoo.components.distributions import diagonal_normal, isotropic_normal, kl_or_estimate
from vaezoo.components.interfaces import DataSpec, Step
from vaezoo.evaluation.evaluation_pass import evaluate_priors
from vaezoo.evaluation.priors import resolve_test_prior
from vaezoo.model.assembly import build_model
from vaezoo.plugins.loading import load_plugins
from vaezoo_plugins.networks.mlp import MLPEncoder, MLPParams
from vaezoo_plugins.regularizers.ncvae import optimal_test_variance

D = 3


def as_mixture(distribution: Independent) -> MixtureSameFamily:
    """The same distribution as a one-component mixture, for which torch has no closed-form KL."""
    base = distribution.base_dist
    components = Independent(Normal(base.loc.unsqueeze(-2), base.scale.unsqueeze(-2)), 1)
    return MixtureSameFamily(Categorical(logits=torch.zeros((*base.loc.shape[:-1], 1))), components)


# -- NC-VAE's contrastive term ---------------------------------------------------------------------------------


def ncvae_model(registry, beta: float, delta: float, K: float):
    config = small_config(
        registry,
        regularizer={"name": "ncvae", "beta": beta, "delta": delta, "K": K},
        noise={"name": "gaussian", "sigma": 0.5},
    )
    return build_model(config, registry, DataSpec(shape=(20,), kind="real"))


def test_ncvae_encodes_the_noise_batch_and_its_term_is_delta_times_the_kl_to_n_0_k2(registry, monkeypatch):
    torch.manual_seed(0)
    beta, delta, K = 0.7, 2.5, 3.0
    model = ncvae_model(registry, beta, delta, K)
    x, x_noise = torch.randn(16, 20), 3.0 + 2.0 * torch.randn(16, 20)
    monkeypatch.setattr(type(model.noise), "forward", lambda self, x, decoder, prior, data, step: x_noise)
    step = model.forward_step(x, step=0)
    assert torch.equal(step.noise_posterior.mean, model.encoder(x_noise).mean), "q(z|x_n) is of the noise batch"
    assert not torch.allclose(step.noise_posterior.mean, model.encoder(x).mean)
    terms = model.regularizer(step)
    latent = step.z.shape[1]
    contrastive = Independent(Normal(torch.zeros(latent), K * torch.ones(latent)), 1)
    expected = delta * kl_divergence(model.encoder(x_noise), contrastive).mean()
    assert terms["delta_noise_kl"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert terms["beta_kl"].item() == pytest.approx(beta * kl_divergence(step.posterior, step.prior).mean().item())


@pytest.mark.parametrize(("K", "beta", "delta"), [(5.0, 1.0, 1.0), (2.0, 0.6, 3.0), (10.0, 5.0, 0.3), (0.5, 2.0, 1.0)])
def test_the_optimal_test_variance_minimises_the_objectives_kl_terms_of_a_collapsed_encoder(K, beta, delta):
    """With p_n = p_d and q(z|x) = N(0, s^2 I) for every x, the objective's KL terms are
    beta KL(N(0, s^2) || N(0, 1)) + delta KL(N(0, s^2) || N(0, K^2)); f(K, beta, delta) must be their minimiser,
    found here by gradient descent on log s^2 with torch's closed-form KLs."""
    log_variance = torch.zeros((), dtype=torch.float64, requires_grad=True)  # float64: the optimum is flat
    optimiser = torch.optim.LBFGS(
        [log_variance], max_iter=500, tolerance_grad=1e-15, tolerance_change=1e-18, line_search_fn="strong_wolfe"
    )

    def objective() -> Tensor:
        optimiser.zero_grad()
        zero = torch.zeros((), dtype=torch.float64)
        q = Normal(zero, (0.5 * log_variance).exp())
        value = beta * kl_divergence(q, Normal(zero, zero + 1.0)) + delta * kl_divergence(q, Normal(zero, zero + K))
        value.backward()
        return value

    for _ in range(5):
        optimiser.step(objective)
    assert log_variance.exp().item() == pytest.approx(optimal_test_variance(K, beta, delta), rel=1e-7)


# -- the Monte Carlo KL of priors without a closed form -------------------------------------------------------------


def test_the_monte_carlo_kl_equals_the_closed_form_in_expectation():
    torch.manual_seed(1)
    samples = 20000
    loc, scale = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.3, 1.5, 0.8])
    posterior = Independent(Normal(loc.expand(samples, D), scale.expand(samples, D)), 1)
    prior = isotropic_normal(D, 2.0)
    z = posterior.rsample()
    estimates = kl_or_estimate(posterior, as_mixture(prior), z)
    exact = kl_divergence(posterior, prior)[0].item()
    standard_error = estimates.std().item() / math.sqrt(samples)
    assert abs(estimates.mean().item() - exact) < 4 * standard_error, (estimates.mean().item(), exact)
    record = Step(torch.zeros(samples, 1), posterior, z, torch.zeros(samples), as_mixture(prior), None, 0)
    assert torch.equal(record.kl(), estimates), "a step's KL is this estimate at its own sample"


# -- training uses a reparameterised sample ------------------------------------------------------------------------


def test_the_reconstruction_gradient_reaches_the_encoder_through_the_sample(registry):
    torch.manual_seed(2)
    model = ncvae_model(registry, 1.0, 0.0, 5.0)
    step = model.forward_step(torch.randn(8, 20), step=0)
    gradients = torch.autograd.grad(-step.log_px.mean(), list(model.encoder.parameters()), allow_unused=True)
    assert all(g is not None for g in gradients) and any(g.abs().sum() > 0 for g in gradients)


# -- the tuned test prior reads the validation split only --------------------------------------------------------


def scaling_encoder() -> MLPEncoder:
    """q(z|x) = N(x, tiny variance): E[sigma^2 + mu^2] is the data's second moment, so each split has its own
    KL-optimal variance."""
    encoder = MLPEncoder(MLPParams(hidden=()), DataSpec(shape=(D,), kind="real"), D)
    with torch.no_grad():
        encoder.net[0].weight.zero_()
        encoder.net[0].weight[:D] = torch.eye(D)
        encoder.net[0].bias.fill_(0.0)
        encoder.net[0].bias[D:] = math.log(1e-4)
    return encoder


def test_the_tuned_test_prior_is_fitted_on_the_validation_split_and_no_other():
    from vaezoo_plugins.regularizers.ncvae import NCVAE, NCParams

    second_moment = {"valid": 2.0, "test": 3.0, "train": 1.5}
    read: list[str] = []

    def batches(split: str) -> list[Tensor]:
        read.append(split)
        return [torch.full((4, D), math.sqrt(second_moment[split]))]

    regularizer = NCVAE(NCParams(beta=1.0, delta=4.0, K=5.0), D)  # f = 25 * 5 / 29, above every moment here
    model = SimpleNamespace(regularizer=regularizer, encoder=scaling_encoder(), parameters=nn.Linear(1, 1).parameters)
    config = SimpleNamespace(model=SimpleNamespace(latent_dim=D), regularizer=SimpleNamespace(name="ncvae"))
    session = SimpleNamespace(model=model, config=config, batches=batches, hook=load_plugins().manager.hook)
    tuned = resolve_test_prior(session, "tuned")
    assert read == ["valid"]
    assert tuned.variance == pytest.approx(second_moment["valid"], rel=1e-3)


# -- perplexity from IW-NLL on a subset of documents -------------------------------------------------------------


class BagOfTokens(nn.Module):
    """A decoder of token documents whose log p(x|z) is -1 nat per predicted token, whatever z: the NLL of a
    document is its length in predicted tokens, so every perplexity is exactly e."""

    spec = DataSpec(shape=(6,), kind="tokens", vocab_size=5, pad_id=0, bos_id=1, eos_id=2)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        predicted = ((x != 0) & (x != 1)).sum(dim=-1).float()  # 'b'
        return -predicted.expand(z.shape[0], -1)  # 'k b'


def test_iw_perplexity_counts_the_tokens_of_the_iw_documents_alone():
    """Documents of unequal length, IW-NLL on some of them: ppl_iw is exp(their NLL / their tokens) = e; dividing
    by the mean length of every document (11 / 4 tokens, not 6 / 2) would give exp(3 / 2.75)."""
    documents = torch.tensor(
        [
            [1, 3, 4, 3, 4, 2],  # 5 predicted tokens
            [1, 3, 2, 0, 0, 0],  # 2
            [1, 4, 3, 2, 0, 0],  # 3
            [1, 2, 0, 0, 0, 0],  # 1
        ]
    )

    def encoder(x: Tensor) -> Distribution:  # q(z|x) = p(z): every importance weight is 1, so IW-NLL is exact
        return diagonal_normal(torch.zeros(x.shape[0], D), torch.zeros(x.shape[0], D))

    iw_mask = torch.tensor([True, False, False, True])  # 6 tokens over 2 documents; all: 11 over 4
    metrics = evaluate_priors(
        encoder, BagOfTokens(), {"standard": isotropic_normal(D, 1.0)}, [documents], iw_samples=3, iw_mask=iw_mask
    )["standard"]
    assert metrics["iw_nll"] == pytest.approx(3.0) and metrics["iw_examples"] == 2
    assert metrics["ppl_iw"] == pytest.approx(math.e, rel=1e-6)
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6) and metrics["ppl_elbo"] == pytest.approx(math.e, rel=1e-6)
