"""SA-VAE's posterior transform: the SVI update rule, the refinement on real text, gradients through the unrolled
steps, exact and by Kim et al.'s finite-difference reverse pass, evaluation under no_grad, and training through the
trainer with an exact resume."""

from __future__ import annotations

import json
import math

import attrs
import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Independent, MultivariateNormal, Normal

from tests.conftest import small_config
from vaezoo.api import (
    UNCHECKED,
    Context,
    DataSpec,
    Decoder,
    Encoder,
    Prior,
    TrainingStep,
    UsageError,
    build_model_for_data,
    diagonal_normal,
    kl_or_estimate,
    merge_raw,
    resolve,
)
from vaezoo.cli.main import main
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.networks.lstm import LSTMDecoder, LSTMDecoderParams
from vaezoo_plugins.networks.pixelcnn import PixelCNNDecoder, PixelCNNParams
from vaezoo_plugins.priors.gaussian import StandardPrior
from vaezoo_plugins.priors.mixture_priors import MixtureOfGaussians
from vaezoo_plugins.transforms import svi_backward
from vaezoo_plugins.transforms.svi import BACKWARDS, CLIP_EPSILON, SemiAmortized, SVIParams
from vaezoo_plugins.transforms.svi_backward import default_step

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


def through_the_steps(case, max_norm: float, backward: str, prior: Prior | None = None, tamper=None) -> list[Tensor]:
    """The gradients of a fixed random linear function of λ_K (a loss with no direct term: all of it comes through
    the steps) with respect to λ0 = (μ0, log σ0²) and then the decoder's and the prior's parameters, from 4 steps
    with momentum 0.5 drawn from seed 5, differences of step ``FD_STEP``. ``tamper(transform)`` runs between the
    forward and the backward pass."""
    encoder, decoder, x = case()
    steps = {"steps": 4, "lr_mean": 0.2, "lr_logvar": 0.1, "max_grad_norm": max_norm, "fd_step": FD_STEP}
    transform = savae(decoder, 3, backward=backward, **steps)
    if prior is not None:
        transform.attach(decoder, prior)
    with torch.no_grad():
        posterior = encoder(x)
    start = [posterior.mean.clone().requires_grad_(), posterior.variance.log().clone().requires_grad_()]
    torch.manual_seed(5)
    weights = torch.randn(2, *start[0].shape, dtype=start[0].dtype)
    refined = transform(Independent(Normal(start[0], (start[1] / 2).exp()), 1), x)
    loss = (weights[0] * refined.mean).sum() + (weights[1] * refined.variance.log()).sum()
    if tamper is not None:
        tamper(transform)
    return list(torch.autograd.grad(loss, [*start, *transform.refinement_parameters()]))


def mixture_prior() -> Prior:
    torch.manual_seed(1)
    return MixtureOfGaussians(MixtureOfGaussians.Params(components=2), 3).double()


#: The cases of the finite-difference backward: (case, clip, prior). Both clip some examples' gradients and leave
#: others; the LSTM decoder draws dropout masks (training mode) that the reverse pass must replay; the learned
#: mixture prior has no closed-form KL and parameters of its own.
FD_CASES = {"linear-gaussian+mixture": (real_case, 5.0, mixture_prior), "lstm+dropout": (token_case, 0.8, None)}
#: The step of the differences in these float64 cases, and ‖finite-difference − exact‖ / ‖exact‖ allowed for each
#: gradient. The one-sided difference's error is O(step): at most 5e-5 measured here (the mixture prior's curvature
#: makes the largest), at most 4e-7 with the default step √ε ≈ 1.5e-8 in the LSTM case alone. Smaller steps trade
#: truncation for rounding: at 1e-8 the mixture case's errors reach 1e-3.
FD_STEP = 1e-6
FD_TOLERANCE = 1e-4


def relative_errors(approximate: list[Tensor], exact: list[Tensor]) -> list[float]:
    return [float((a - e).norm() / e.norm()) for a, e in zip(approximate, exact, strict=True)]


@pytest.mark.parametrize("name", FD_CASES)
def test_finite_difference_gradients_through_the_steps_match_the_exact_ones(name):
    case, max_norm, prior = FD_CASES[name]
    exact = through_the_steps(case, max_norm, "exact", prior and prior())
    approximate = through_the_steps(case, max_norm, "finite_difference", prior and prior())
    parameters = [*case()[1].parameters(), *(prior().parameters() if prior else ())]
    assert len(exact) == 2 + len(parameters), "λ0, then the decoder's and the prior's parameters"
    assert all(float(g.norm()) > 1e-3 for g in exact), "every gradient, the mixed terms' too, is far from zero"
    assert max(relative_errors(approximate, exact)) < FD_TOLERANCE


def without_the_momentum_adjoint(transform, monkeypatch) -> None:
    """The reverse pass as if v were not carried from step to step (γ = 0 in the backward pass only)."""
    transform.params = attrs.evolve(transform.params, momentum=0.0)


def without_the_clip_derivative(transform, monkeypatch) -> None:
    """The reverse pass differencing in the direction v itself, as if the clip were the identity (as Kim et al.)."""
    monkeypatch.setattr(svi_backward, "through_clip", lambda transform, gradients, adjoint: adjoint)


def without_the_replay(transform, monkeypatch) -> None:
    """The reverse pass drawing its ε and dropout masks afresh rather than those of the forward pass's steps."""
    monkeypatch.setattr(svi_backward, "restore_generators", lambda states, device: None)


@pytest.mark.parametrize("name", FD_CASES)
@pytest.mark.parametrize("flaw", [without_the_momentum_adjoint, without_the_clip_derivative, without_the_replay])
def test_the_tolerance_catches_a_reverse_pass_missing_a_term(name, flaw, monkeypatch):
    """Each term of the reverse pass, and the replay of the draws, moves some gradient by far more than the
    tolerance in these cases (dropping the mixed term would zero the parameters' gradients, far from zero above)."""
    case, max_norm, prior = FD_CASES[name]
    exact = through_the_steps(case, max_norm, "exact", prior and prior())
    flawed = through_the_steps(
        case, max_norm, "finite_difference", prior and prior(), tamper=lambda t: flaw(t, monkeypatch)
    )
    assert max(relative_errors(flawed, exact)) > 100 * FD_TOLERANCE


@pytest.mark.parametrize("case", [real_case, token_case], ids=["linear-gaussian", "lstm"])
def test_the_finite_difference_forward_is_the_exact_one_bit_for_bit(case):
    """Same seed, same λ_K and same draws; the reverse pass replays the draws and leaves the generator as it was."""
    refined, states = {}, {}
    for backward in BACKWARDS:
        encoder, decoder, x = case()
        transform = savae(decoder, 3, steps=4, lr_mean=0.2, lr_logvar=0.1, max_grad_norm=1.0, backward=backward)
        torch.manual_seed(5)
        refined[backward] = transform(encoder(x), x)
        states[backward] = torch.get_rng_state()
    exact, approximate = refined["exact"], refined["finite_difference"]
    assert torch.equal(exact.mean, approximate.mean) and torch.equal(exact.stddev, approximate.stddev)
    assert torch.equal(states["exact"], states["finite_difference"])
    (approximate.mean.sum() + approximate.stddev.sum()).backward()
    assert torch.equal(torch.get_rng_state(), states["finite_difference"])


def test_finite_difference_gradients_reach_the_encoder_and_decoder_with_the_direct_term():
    """The training loss at λ_K: the reverse pass's terms join the decoder's direct term and flow on into the
    encoder, and what the steps add to the decoder's gradient is far larger than the error."""

    def gradients(backward: str, detach: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        encoder, decoder, x = token_case()
        transform = savae(decoder, 3, steps=4, lr_mean=0.2, lr_logvar=0.1, max_grad_norm=0.8, backward=backward)
        refined_loss(encoder, decoder, transform, x, detach=detach).backward()
        return [p.grad for p in encoder.parameters()], [p.grad for p in decoder.parameters()]

    exact_encoder, exact_decoder = gradients("exact")
    encoder, decoder = gradients("finite_difference")
    _, direct = gradients("exact", detach=True)
    assert max(relative_errors(encoder + decoder, exact_encoder + exact_decoder)) < FD_TOLERANCE
    through_steps = sum(float((e - d).norm()) for e, d in zip(exact_decoder, direct, strict=True))
    error = sum(float((a - e).norm()) for a, e in zip(decoder, exact_decoder, strict=True))
    assert through_steps > 1e4 * error


def test_a_training_step_clips_the_total_gradient_the_finite_differences_joined(registry):
    """Through the trainer's step (SGD, with ``train.grad_clip`` active), a float32 model moves as with the exact
    backward: the run's clip sees the parameters' whole gradient, the through-the-steps part included."""
    moved = {}
    for backward in BACKWARDS:
        config = small_config(
            registry,
            transform={"name": "savae", "steps": 3, "backward": backward},
            train={"optimizer": "sgd", "lr": 0.1, "grad_clip": 0.5},
        )
        data = registry.get("data", "synthetic").cls(config.data.params).load(None, 0)
        torch.manual_seed(0)
        model = build_model_for_data(config, registry, data)
        before = [p.detach().clone() for p in model.parameters()]
        torch.manual_seed(1)
        TrainingStep(model, config.train)(Context().wrap(model), data.train_batch(0, 0, 32, 0), 0, data)
        moved[backward] = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    for steps in moved.values():
        assert sum(float(step.norm()) ** 2 for step in steps) ** 0.5 == pytest.approx(0.1 * 0.5, rel=1e-4)
    assert max(relative_errors(moved["finite_difference"], moved["exact"])) < 1e-3


class AutocastRecorder(LinearGaussian):
    """Records whether bf16 autocast was on at each call."""

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        self.seen.append(torch.is_autocast_enabled("cpu"))
        return super().log_prob(x, z)


def test_the_reverse_pass_replays_the_steps_under_the_autocast_they_ran_in():
    """The backward pass runs outside autocast; its differences need both gradients computed alike, in bf16 here,
    and a step that bf16's 8 significant bits resolve: √ε of bf16, 2^-3.5, rather than float32's."""
    encoder, _, x = real_case()
    encoder, x = encoder.float(), x.float()
    decoder = AutocastRecorder(encoder.spec, 3)
    decoder.seen = []
    transform = SemiAmortized(SVIParams(steps=2, backward="finite_difference"), 3)
    transform.attach(decoder, StandardPrior(None, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        refined = transform(encoder(x), x)
    refined.mean.sum().backward()
    assert decoder.seen == [True] * 4
    assert default_step(("cpu", True, torch.bfloat16), (x,)) == 2**-3.5
    assert default_step(("cpu", False, torch.bfloat16), (x,)) == torch.finfo(torch.float32).eps ** 0.5


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("backward=adjoint", "'backward' must be one of exact, finite_difference: 'adjoint'"),
        ("fd_step=0", "'fd_step' must be > 0: 0.0"),
    ],
)
def test_a_bad_backward_or_step_is_refused_in_one_line(setting, message, capsys):
    assert main(["run", "--dry-run", "--transform", "savae", "--set", f"transform.{setting}"]) == 2
    assert capsys.readouterr().err.strip() == f"vaezoo: error: transform 'savae': {message}"


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
