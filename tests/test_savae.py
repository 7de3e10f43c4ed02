"""SA-VAE's posterior transform: the SVI update rule, the refinement on real text, gradients through the unrolled
steps, evaluation under no_grad, and training through the trainer with an exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal

from tests.conftest import small_config
from vaezoo.api import (
    UNCHECKED,
    DataSpec,
    Decoder,
    Encoder,
    UsageError,
    build_model_for_data,
    diagonal_normal,
    kl_or_estimate,
    merge_raw,
    resolve,
)
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.networks.lstm import LSTMDecoder, LSTMDecoderParams
from vaezoo_plugins.networks.pixelcnn import PixelCNNDecoder, PixelCNNParams
from vaezoo_plugins.priors.gaussian import StandardPrior
from vaezoo_plugins.transforms.svi import CLIP_EPSILON, SemiAmortized, SVIParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyEncoder(Encoder):
    """float64 x -> N(μ, diag σ²) through one linear map (of the mean token embedding for token data)."""

    name = "tiny"

    def __init__(self, spec: DataSpec, latent_dim: int, features: int) -> None:
        super().__init__(None, spec, latent_dim)
        self.embed = nn.Embedding(spec.vocab_size, features) if spec.kind == "tokens" else None
        self.head = nn.Linear(features, 2 * latent_dim)

    def forward(self, x: Tensor) -> Independent:
        features = self.embed(x).mean(dim=1) if self.embed is not None else x
        loc, log_scale = self.head(features).chunk(2, dim=-1)
        return diagonal_normal(loc, log_scale)


class LinearGaussian(Decoder):
    """p(x|z) = N(W z + b, s² I): ∂log p/∂z = Wᵀ(x − W z − b)/s² in closed form."""

    name = "linear"

    def __init__(self, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(None, spec, latent_dim)
        self.linear = nn.Linear(latent_dim, spec.shape[0])
        self.log_scale = nn.Parameter(torch.tensor(-0.4))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return Independent(Normal(self.linear(z), self.log_scale.exp(), **UNCHECKED), 1).log_prob(x)

    def sample(self, z: Tensor) -> Tensor:
        raise NotImplementedError


def savae(decoder: Decoder, latent_dim: int, **params) -> SemiAmortized:
    transform = SemiAmortized(SVIParams(**params), latent_dim)
    transform.attach(decoder, StandardPrior(None, latent_dim).to(torch.float64))
    return transform


def real_case(seed: int = 0, b: int = 6, d: int = 3, f: int = 5):
    """A float64 linear-Gaussian model and a batch whose examples differ in scale (so that some gradients are
    clipped and others not)."""
    torch.manual_seed(seed)
    spec = DataSpec(shape=(f,), kind="real")
    encoder, decoder = TinyEncoder(spec, d, f).double(), LinearGaussian(spec, d).double()
    x = torch.randn(b, f, dtype=torch.float64) * torch.linspace(0.2, 4.0, b, dtype=torch.float64)[:, None]
    return encoder, decoder, x


def test_without_steps_the_posterior_passes_unchanged():
    encoder, decoder, x = real_case()
    posterior = encoder(x)
    assert savae(decoder, 3, steps=0)(posterior, x) is posterior


def test_defaults_are_kim_et_al_text_setting_per_example():
    """lr 1 and a clip of 5 on the batch mean of 32 examples are lr 1/32 and a clip of 5·sqrt(32) per example."""
    params = SVIParams()
    assert (params.steps, params.momentum) == (20, 0.5)
    assert params.lr_mean == params.lr_logvar == 1 / 32
    assert params.max_grad_norm == pytest.approx(5 * math.sqrt(32))


def hand_steps(x, decoder, mean, logvar, eps, lr, momentum, max_norm):
    """λ_K by the formulas: g_μ = −Wᵀr + μ, g_logvar = −(Wᵀr)·ε·σ/2 + (σ² − 1)/2 with r = (x − W z − b)/s², each
    example's part clipped to ``max_norm``, heavy-ball momentum. Also how many rows were clipped and left."""
    w, bias, s2 = decoder.linear.weight.detach(), decoder.linear.bias.detach(), decoder.log_scale.detach().exp() ** 2
    velocity, clipped = [torch.zeros_like(mean), torch.zeros_like(logvar)], []
    for e in eps:
        sigma = (logvar / 2).exp()
        z = mean + sigma * e
        pull = ((x - z @ w.T - bias) / s2) @ w  # Wᵀr, 'b d'
        grads = [-pull + mean, -pull * e * sigma / 2 + (sigma**2 - 1) / 2]
        norms = [g.norm(dim=-1, keepdim=True) for g in grads]
        clipped += [n > max_norm for n in norms]
        grads = [g * torch.clamp(max_norm / (n + CLIP_EPSILON), max=1.0) for g, n in zip(grads, norms, strict=True)]
        velocity = [momentum * m - g for m, g in zip(velocity, grads, strict=True)]
        mean, logvar = mean + lr[0] * velocity[0], logvar + lr[1] * velocity[1]
    clipped = torch.cat(clipped)
    return mean, logvar, int(clipped.sum()), int((~clipped).sum())


def test_svi_steps_match_a_hand_computation_with_momentum_and_clipping():
    encoder, decoder, x = real_case()
    lr, momentum, max_norm, steps = (0.3, 0.1), 0.5, 2.0, 3
    transform = savae(
        decoder, 3, steps=steps, lr_mean=lr[0], lr_logvar=lr[1], momentum=momentum, max_grad_norm=max_norm
    )
    with torch.no_grad():
        posterior = encoder(x)
        torch.manual_seed(7)
        refined = transform(posterior, x)
    torch.manual_seed(7)  # the refinement's draws: one ε 'b d' per step from the global generator
    eps = [torch.randn(x.shape[0], 3, dtype=torch.float64) for _ in range(steps)]
    mean0, logvar0 = posterior.mean, posterior.variance.log()
    mean, logvar, clipped, unclipped = hand_steps(x, decoder, mean0, logvar0, eps, lr, momentum, max_norm)
    assert clipped and unclipped, "the case should clip some examples' gradients and leave others"
    torch.testing.assert_close(refined.mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(refined.variance.log(), logvar, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(refined.mean, mean0)


def token_case(seed: int = 0, b: int = 5, d: int = 3):
    """A float64 LSTM decoder (with dropout, in training mode) and a batch of hand-made token sequences."""
    torch.manual_seed(seed)
    spec = DataSpec(shape=(7,), kind="tokens", vocab_size=9, pad_id=0, bos_id=1, eos_id=2, unk_id=3)
    decoder = LSTMDecoder(LSTMDecoderParams(embed_dim=4, hidden=5, dropout=0.2), spec, d).double()
    encoder = TinyEncoder(spec, d, 4).double()
    lengths = torch.tensor([7, 4, 6, 3, 5])
    x = torch.randint(4, 9, (b, 7))
    positions = torch.arange(7)
    x[:, 0] = 1
    x[positions[None] == lengths[:, None] - 1] = 2
    x[positions[None] >= lengths[:, None]] = 0
    return encoder, decoder, x


def refined_loss(encoder, decoder, transform, x, detach=False) -> Tensor:
    """The training loss at the refined posterior, −log p(x|z) + KL per example averaged, drawn from seed 3."""
    torch.manual_seed(3)
    posterior = transform(encoder(x), x)
    if detach:
        posterior = diagonal_normal(posterior.mean.detach(), posterior.stddev.detach().log())
    z = posterior.rsample()
    prior = transform._attached()[1]()
    return (-decoder.log_prob(x, z[None])[0] + kl_or_estimate(posterior, prior, z)).mean()


def directional_difference(loss, parameters, direction, h=1e-5) -> float:
    """(L(θ + h v) − L(θ − h v)) / 2h, the parameters restored after."""
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, v in zip(parameters, direction, strict=True):
                p.add_(sign * h * v)
            values.append(loss().item())
            for p, v in zip(parameters, direction, strict=True):
                p.sub_(sign * h * v)
    return (values[0] - values[1]) / (2 * h)


@pytest.mark.parametrize("case", [real_case, token_case], ids=["linear-gaussian", "lstm"])
def test_gradients_flow_through_the_unrolled_steps_exactly(case):
    encoder, decoder, x = case()
    transform = savae(decoder, 3, steps=4, lr_mean=0.2, lr_logvar=0.1)

    def loss():
        return refined_loss(encoder, decoder, transform, x)

    encoder.zero_grad(), decoder.zero_grad()
    loss().backward()
    torch.manual_seed(11)
    for module in (encoder, decoder):
        parameters = list(module.parameters())
        direction = [torch.randn_like(p) for p in parameters]
        exact = sum(float((p.grad * v).sum()) for p, v in zip(parameters, direction, strict=True))
        assert exact != 0
        assert exact == pytest.approx(directional_difference(loss, parameters, direction), rel=1e-6, abs=1e-9)
    through_steps = [p.grad.clone() for p in decoder.parameters()]
    encoder.zero_grad(), decoder.zero_grad()
    refined_loss(encoder, decoder, transform, x, detach=True).backward()
    assert all(p.grad is None for p in encoder.parameters())
    difference = sum(float((a - p.grad).norm()) for a, p in zip(through_steps, decoder.parameters(), strict=True))
    assert difference > 1e-3 * sum(float(a.norm()) for a in through_steps), "no decoder term through the steps"


@pytest.fixture(scope="module")
def ptb_model(registry, data_dir):
    """A small untrained LSTM VAE with the savae transform, and 16 PTB validation sentences."""
    raw = {
        "data": {"name": "ptb", "limit": 200, "max_vocab": 2000, "max_len": 40},
        "model": {"latent_dim": 8},
        "encoder": {"name": "lstm", "embed_dim": 16, "hidden": 16},
        "decoder": {"name": "lstm", "embed_dim": 16, "hidden": 16},
        "transform": {"name": "savae"},
        "train": {"batch_size": 16},
    }
    config = resolve(merge_raw(raw), registry)
    data = registry.get("data", "ptb").cls(config.data.params).load(data_dir, 0)
    torch.manual_seed(0)
    model = build_model_for_data(config, registry, data)
    return model, data.splits["valid"][:16]


def elbo_samples(model, posterior, x, samples=64) -> Tensor:
    """log p(x|z) − log q(z) + log p(z) at ``samples`` draws of the seeded generator, ``'k b'``."""
    torch.manual_seed(5)
    z = posterior.sample((samples,))  # 'k b d'
    return model.decoder.log_prob(x, z) - posterior.log_prob(z) + model.prior().log_prob(z)


def test_refinement_raises_the_elbo_of_real_sentences(ptb_model):
    model, x = ptb_model
    model.eval()
    with torch.no_grad():
        initial = model.encoder.network(x)
        torch.manual_seed(1)
        refined = model.encoder.transform(initial, x)
        before, after = elbo_samples(model, initial, x), elbo_samples(model, refined, x)
    gain = (after - before).sum(dim=1)  # 'k': the batch's summed ELBO gain at each shared ε
    standard_error = gain.std() / math.sqrt(len(gain))
    assert gain.mean() > 5 * standard_error > 0
    assert (after.mean(dim=0) > before.mean(dim=0)).float().mean() > 0.5, "most sentences gain"


def test_evaluation_under_no_grad_refines_and_returns_no_graph(ptb_model):
    model, x = ptb_model
    model.eval()
    transform = model.encoder.transform
    with torch.no_grad():
        initial = model.encoder.network(x)
        torch.manual_seed(1)
        refined = transform(initial, x)
    assert not refined.mean.requires_grad and not refined.stddev.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert not torch.allclose(refined.mean, initial.mean)
    # the same steps as with gradients on (which keep the graph): refinement is not skipped or changed by no_grad
    torch.manual_seed(1)
    with_graph = transform(model.encoder.network(x), x)
    assert with_graph.mean.requires_grad
    torch.testing.assert_close(with_graph.mean.detach(), refined.mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(with_graph.stddev.detach(), refined.stddev, rtol=1e-5, atol=1e-6)


def test_training_steps_leave_batch_norm_statistics_to_the_model_forward_pass():
    """A PixelCNN decoder's batch norms see the steps in training mode; their running statistics move only in the
    model's own forward pass, and the training loss still differentiates through the steps."""
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 5, 5), kind="binary")
    decoder = PixelCNNDecoder(PixelCNNParams(kernels=(3, 3), channels=4), spec, 2)
    encoder = TinyEncoder(DataSpec(shape=(25,), kind="real"), 2, 25)
    x = torch.bernoulli(torch.full((4, 1, 5, 5), 0.4))
    transform = SemiAmortized(SVIParams(steps=3), 2)
    transform.attach(decoder, StandardPrior(None, 2))
    before = {name: b.clone() for name, b in decoder.named_buffers()}
    refined = transform(encoder(x.flatten(1)), x)
    assert all(torch.equal(b, before[name]) for name, b in decoder.named_buffers())
    (-decoder.log_prob(x, refined.rsample()[None])).mean().backward()
    assert any(not torch.equal(b, before[name]) for name, b in decoder.named_buffers() if "running" in name)
    assert all(p.grad is not None for p in encoder.parameters())


class CudnnRecorder(LinearGaussian):
    """Records whether cuDNN was enabled at each call."""

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        self.seen.append(torch.backends.cudnn.enabled)
        return super().log_prob(x, z)


def test_cudnn_is_off_exactly_while_the_steps_are_differentiated():
    """cuDNN's LSTM has no second derivative: the differentiated steps run without it, and it comes back after."""
    encoder, _, x = real_case()
    decoder = CudnnRecorder(encoder.spec, 3).double()
    decoder.seen = []
    transform = savae(decoder, 3, steps=2)
    assert torch.backends.cudnn.enabled
    transform(encoder(x), x)
    with torch.no_grad():
        transform(encoder(x), x)
    assert decoder.seen == [False, False, True, True] and torch.backends.cudnn.enabled


def test_refuses_a_posterior_that_is_not_a_diagonal_gaussian():
    _, decoder, _ = real_case()
    transform = savae(decoder, 2)
    full = MultivariateNormal(torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2))
    assert "diagonal Gaussian" in transform.incompatibility(full)
    assert transform.incompatibility(diagonal_normal(torch.zeros(2, 2), torch.zeros(2, 2))) is None


def test_a_prior_built_from_the_refined_encoder_is_refused(registry):
    """A VampPrior of the transformed encoder would need the refinement to refine: a circle, refused up front."""
    config = small_config(registry, transform={"name": "savae"}, prior={"name": "vamp"})
    data = registry.get("data", "synthetic").cls(config.data.params).load(None, 0)
    with pytest.raises(UsageError, match="circular"):
        build_model_for_data(config, registry, data)


def test_training_with_savae_resumes_bit_identically(registry, tmp_path):
    def config(steps):
        return small_config(registry, transform={"name": "savae", "steps": 3}, train={"steps": steps})

    straight = Trainer(config(40), registry, tmp_path / "straight", None).run()
    half = tmp_path / "half"
    Trainer(config(20), registry, half, None).run()
    resumed = Trainer(config(40), registry, half, None).run(resume=True)
    assert resumed["metrics"] == straight["metrics"]
    a = load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME)["model"]
    b = load_checkpoint(half / CHECKPOINT_NAME)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(k.startswith("encoder.transform.") for k in a), "the decoder and prior are saved once"
    lines = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    neg_elbo = [json.loads(line)["valid"]["neg_elbo"] for line in lines]
    assert neg_elbo[-1] < neg_elbo[0], "training lowers the validation -ELBO"
