"""The posterior transforms: BN-VAE's floor under the batch's mean KL (``bnvae``) and δ-VAE's committed rate in every
dim of every example (``deltavae``), on arbitrary encoder outputs, through a real training step, and in real runs.

Axis legend: ``b`` batch, ``d`` latent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, kl_divergence

from tests.conftest import small_config
from vaezoo.cli.main import main
from vaezoo.components.interfaces import DataSpec
from vaezoo.config.run_config import TrainConfig
from vaezoo.model.assembly import VAE, build_model
from vaezoo.runs.session import load_trained
from vaezoo.training.distributed import Context
from vaezoo.training.step import TrainingStep
from vaezoo_plugins.priors.gaussian import GaussianPrior, StandardPrior
from vaezoo_plugins.priors.mixture_priors import MixtureOfGaussians, VampPrior
from vaezoo_plugins.transforms.batchnorm import BatchNormMeans, BatchNormParams
from vaezoo_plugins.transforms.delta import CommittedRate, DeltaParams, standard_normal_gap, variance_bounds

EPS = 1e-5  # BatchNorm1d's ε, BN-VAE's too
FEATURES = 20
PROPERTY = settings(max_examples=60, deadline=None)


def diagonal(loc: Tensor, log_scale: Tensor) -> Distribution:
    """An encoder's output: N(loc, diag exp(log_scale)²) over the last axis."""
    return Independent(Normal(loc, log_scale.exp(), validate_args=False), 1, validate_args=False)


def kl_per_dim(posterior: Distribution) -> Tensor:
    """KL(q(z_d|x) || N(0, 1)) per example and dim, ``'b d'``, in float64 (torch's closed form)."""
    return kl_divergence(posterior.base_dist, Normal(0.0, 1.0)).double()


@st.composite
def encoder_outputs(draw, min_batch: int = 1) -> tuple[Tensor, Tensor]:
    """Means ``'b d'`` spread by anything from 1e-2 to 1e2 around an offset, and log-scales from −6 to 6."""
    b, d = draw(st.integers(min_batch, 48)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    spread = 10 ** draw(st.floats(-2, 2))
    offset, scale_spread = draw(st.floats(-10, 10)), draw(st.floats(0, 3))
    generator = torch.Generator().manual_seed(seed)
    loc = offset + spread * torch.randn(b, d, generator=generator)
    log_scale = (scale_spread * torch.randn(b, d, generator=generator)).clamp(-6, 6)
    return loc, log_scale


def bn_transform(gamma: float, d: int, shift: Tensor | None = None) -> BatchNormMeans:
    transform = BatchNormMeans(BatchNormParams(gamma=gamma), d)
    if shift is not None:
        with torch.no_grad():
            transform.norm.bias.copy_(shift)
    return transform


def real_model(registry, transform: dict) -> VAE:
    """The small MLP VAE on 20 real features with a 2-d code and ``transform``."""
    return build_model(small_config(registry, transform=transform), registry, DataSpec((FEATURES,), "real"))


def cli(capsys, *args: str) -> tuple[int, list[str]]:
    """``vaezoo run ARGS`` in this process: the exit code and the lines of stderr."""
    capsys.readouterr()
    code = main(["run", "--no-progress", "--set", "train.threads=1", *args])
    return code, capsys.readouterr().err.strip().splitlines()


SYNTHETIC = ["--data", "synthetic", "--set", "data.n_valid=16", "--set", "data.n_test=16", "--set", "data.dim=5"]


# -- BN-VAE ----------------------------------------------------------------------------------------------------------


@PROPERTY
@given(encoder_outputs(min_batch=2), st.floats(0.05, 3.0), st.integers(0, 2**31 - 1))
def test_bnvae_batch_mean_kl_is_at_least_d_gamma_squared_over_two_in_training(output, gamma, seed):
    """mean_b μ_j² = γ²·v_j/(v_j + ε) + β_j² exactly (v_j the batch's biased variance of the encoder's means), so the
    batch's mean KL is at least ½Σ_j of it, which is d·γ²/2 up to the factor v/(v + ε) of BN's ε."""
    loc, log_scale = output
    d = loc.shape[1]
    shift = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    q = bn_transform(gamma, d, shift).train()(diagonal(loc, log_scale), loc)
    v = loc.double().var(0, unbiased=False)
    mean_square = gamma**2 * v / (v + EPS) + shift.double() ** 2
    # BN subtracts the batch mean in float32: means spread by about sqrt(ε) around an offset of 10 lose up to
    # 3e-4·γ² of the normalised square to rounding; elsewhere the identity holds far tighter
    rounding = 1e-3 * gamma**2
    torch.testing.assert_close((q.mean.double() ** 2).mean(0), mean_square, rtol=1e-4, atol=rounding)
    batch_kl = kl_per_dim(q).sum(1).mean()
    assert batch_kl >= 0.5 * mean_square.sum() * (1 - 1e-4) - d * rounding
    assert batch_kl >= d * gamma**2 / 2 * ((v / (v + EPS)).min() * (1 - 1e-4) - 2e-3)
    torch.testing.assert_close(q.stddev, log_scale.exp())  # the scales pass unchanged


@pytest.mark.parametrize("spread", [0.0, 1e-3, 1e-2, 1e-1])
def test_bnvae_floor_on_a_collapsed_encoder_is_the_fraction_v_over_v_plus_eps_of_d_gamma_squared(spread):
    """Means equal across the batch (an encoder that ignores its input) normalise to 0: the floor is BN's ε away
    from d·γ²/2 only once they spread well beyond sqrt(ε) ≈ 0.003; exactly equal means keep only ½Σβ²."""
    gamma, b, d = 0.6, 32, 4
    torch.manual_seed(0)
    loc = 0.5 + spread * torch.randn(b, 1).expand(b, d)  # every example's means almost (or exactly) the same
    q = bn_transform(gamma, d).train()(diagonal(loc, torch.zeros(b, d)), loc)
    v = loc.double().var(0, unbiased=False)
    batch_kl = kl_per_dim(q).sum(1).mean()  # unit scales: the KL is ½ mean_b Σ μ²
    torch.testing.assert_close(batch_kl, (d * gamma**2 / 2 * v / (v + EPS)).mean() * 1.0, rtol=1e-3, atol=1e-6)
    if spread == 0.0:
        assert torch.all(q.mean == 0) and batch_kl == 0  # β = 0 at the start: no floor at all (0.5 · 32 is exact)
    if spread >= 1e-1:
        assert batch_kl >= d * gamma**2 / 2 * (1 - 1e-3)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_bnvae_gamma_is_not_trained_and_the_shift_is_and_both_survive_a_state_dict_round_trip(registry, optimizer):
    torch.manual_seed(0)
    model = real_model(registry, {"name": "bnvae", "gamma": 0.7})
    norm = model.encoder.transform.norm
    assert torch.all(norm.weight == 0.7) and not norm.weight.requires_grad and torch.all(norm.bias == 0)
    train = TrainConfig(steps=1, batch_size=16, optimizer=optimizer, lr=0.05, momentum=0.9)
    step = TrainingStep(model, train)
    for index in range(3):
        step(Context().wrap(model), torch.randn(16, FEATURES) + index, index, None)
    assert norm.weight.grad is None and torch.all(norm.weight == 0.7), "γ must stay fixed through the optimiser"
    assert norm.bias.grad is not None and norm.bias.abs().min() > 0, "the shift β is trained"
    state = {name: value.clone() for name, value in model.state_dict().items()}
    restored = real_model(registry, {"name": "bnvae", "gamma": 0.3})
    restored.load_state_dict(state)
    again = restored.encoder.transform.norm
    assert torch.all(again.weight == 0.7) and not again.weight.requires_grad
    for name in ("bias", "running_mean", "running_var"):
        torch.testing.assert_close(getattr(again, name), getattr(norm, name), rtol=0, atol=0)


def test_bnvae_evaluation_uses_the_running_statistics_of_the_training_batches():
    gamma, d, momentum = 0.5, 3, 0.1  # torch's default momentum, BN-VAE's
    torch.manual_seed(1)
    transform = bn_transform(gamma, d, torch.tensor([0.2, -0.1, 0.0])).train()
    running_mean, running_var = torch.zeros(d), torch.ones(d)
    for _ in range(5):
        loc = 2.0 + 3.0 * torch.randn(10, d)
        transform(diagonal(loc, torch.zeros(10, d)), loc)
        running_mean = (1 - momentum) * running_mean + momentum * loc.mean(0)
        running_var = (1 - momentum) * running_var + momentum * loc.var(0)  # the unbiased variance
    transform.eval()
    loc = torch.randn(4, d)
    expected = gamma * (loc - running_mean) / (running_var + EPS).sqrt() + transform.norm.bias.detach()
    torch.testing.assert_close(transform(diagonal(loc, torch.zeros(4, d)), loc).mean, expected)
    alone = transform(diagonal(loc[:1], torch.zeros(1, d)), loc[:1]).mean  # a batch of one: its own value
    torch.testing.assert_close(alone, expected[:1])


def test_bnvae_refuses_a_training_batch_of_one_before_the_run_starts(capsys, tmp_path):
    code, lines = cli(capsys, *SYNTHETIC, "--transform", "bnvae", "--batch-size", "1", "--out", str(tmp_path / "r"))
    assert code == 2 and not (tmp_path / "r" / "checkpoint.pt").exists()
    assert lines[-1] == (
        "vaezoo: error: transform 'bnvae' needs training batches of at least 2 examples, got train.batch_size 1"
    )


def test_bnvae_an_epoch_whose_last_batch_is_one_example_is_refused(capsys, tmp_path):
    """33 examples in batches of 32 leave one, on which batch normalisation is undefined in training."""
    args = [*SYNTHETIC, "--set", "data.n_train=33", "--transform", "bnvae", "--batch-size", "32", "--steps", "2"]
    code, lines = cli(capsys, *args, "--set", "eval.iw_samples=1", "--out", str(tmp_path / "r"))
    assert code == 2 and not any("Traceback" in line for line in lines)
    assert any("end each epoch with a batch of 1" in line for line in lines), lines


# -- δ-VAE -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("delta", "sigma_low", "sigma_high"), [(0.15, 0.6412, 1.4093), (0.1, 0.7023, 1.3313)])
def test_deltavae_bounds_are_the_reference_roots(delta, sigma_low, sigma_high):
    """The values BN-VAE's code gets from sympy for its default δ and for 0.1, to the 4 decimals checked."""
    low, high = variance_bounds(delta)
    assert math.sqrt(low) == pytest.approx(sigma_low, abs=5e-5)
    assert math.sqrt(high) == pytest.approx(sigma_high, abs=5e-5)
    transform = CommittedRate(DeltaParams(delta=delta), 2)
    assert (transform.sigma_low, transform.sigma_high) == (math.sqrt(low), math.sqrt(high))


@pytest.mark.parametrize("delta", [5e-324, 1e-12, 1e-6, 0.01, 0.15, 0.5, 1.0, 2.0])
def test_deltavae_bounds_solve_the_equation_on_either_side_of_one(delta):
    low, high = variance_bounds(delta)
    assert 0 < low <= 1 <= high and (low < 1 < high or delta < 1e-15)
    for s in (low, high):
        assert abs(math.log(s) - s + 2 * delta + 1) <= 1e-6 * max(1.0, s)
    # a zero-mean posterior at either bound has KL δ: ½(s − ln s − 1) = δ
    for s in (low, high):
        assert 0.5 * (s - math.log(s) - 1) == pytest.approx(delta, rel=1e-6, abs=1e-12)


def test_deltavae_bounds_match_the_lambert_w_branches():
    """ln s − s + c = 0 ⟺ −s·e^(−s) = −e^(−c): s_l = −W₀(−e^(−c)) and s_u = −W₋₁(−e^(−c)), c = 2δ + 1."""
    special = pytest.importorskip("scipy.special")
    for delta in (0.01, 0.15, 1.0, 2.0):
        argument = -math.exp(-(2 * delta + 1))
        low, high = variance_bounds(delta)
        assert low == pytest.approx(-special.lambertw(argument, 0).real, rel=1e-10)
        assert high == pytest.approx(-special.lambertw(argument, -1).real, rel=1e-10)


def reference_map(delta: float, loc: Tensor, log_scale: Tensor) -> tuple[Tensor, Tensor]:
    """BN-VAE's DeltaGaussianLSTMEncoder, written as it is (enc_lstm.py:137-139): (mean, std)."""
    low, high = (math.sqrt(s) for s in variance_bounds(delta))
    raw_log_variance = 2 * log_scale
    std = low + (high - low) * (1.0 / torch.clamp(1.0 + torch.exp(-raw_log_variance), 1.0, 50.0))
    log_variance = torch.log(std**2)
    mean = torch.sqrt(2 * delta + 1 + log_variance - torch.exp(log_variance) + torch.max(torch.tensor(0.0), loc) + 1e-6)
    return mean, std


@PROPERTY
@given(encoder_outputs(), st.floats(1e-6, 2.0), st.floats(-40, 40))
def test_deltavae_every_dim_of_every_example_has_kl_delta_plus_half_relu_mean(output, delta, extreme):
    """KL_d = δ + relu(μ_raw)/2 + 5e-7 exactly, whatever the encoder gives (a log-scale of ``extreme`` included),
    with σ in [σ_l + (σ_u − σ_l)/50, σ_u], μ ≥ 0, and the map equal to the reference's formula."""
    loc, log_scale = output
    log_scale[0, 0] = extreme
    transform = CommittedRate(DeltaParams(delta=delta), loc.shape[1])
    q = transform(diagonal(loc, log_scale), loc)
    assert q.mean.dtype == q.stddev.dtype == torch.float32
    kl = kl_per_dim(q)
    torch.testing.assert_close(kl, delta + loc.double().relu() / 2 + 5e-7, rtol=1e-6, atol=1e-5)
    assert torch.all(kl >= delta - 1e-6)
    low, high = transform.sigma_low, transform.sigma_high
    assert torch.all(q.stddev >= low + (high - low) / 50 - 1e-6) and torch.all(q.stddev <= high + 1e-6)
    assert torch.all(q.mean >= 0)
    mean, std = reference_map(delta, loc, log_scale)
    torch.testing.assert_close(q.stddev, std, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(q.mean**2, mean**2, rtol=1e-6, atol=2e-6)


@pytest.mark.parametrize("delta", [0.15, 0.1])
def test_deltavae_kl_is_at_least_delta_in_float32_over_the_whole_range_of_the_variance_head(delta):
    log_scale = torch.linspace(-50, 50, 100_001).reshape(-1, 1)  # raw log-variances −100 … 100
    for mean in (-3.0, 0.0, 1e-3, 2.0):
        q = CommittedRate(DeltaParams(delta=delta), 1)(diagonal(torch.full_like(log_scale, mean), log_scale), None)
        kl = kl_per_dim(q)
        assert torch.all(kl >= delta) and torch.isfinite(kl).all()
        assert kl.max() - kl.min() <= 1e-6  # σ moves; the KL does not


def test_deltavae_kl_has_no_gradient_towards_the_variance_head_and_half_a_nat_per_unit_positive_mean():
    loc = torch.tensor([[-1.0, 0.5, 2.0, -0.2]]).repeat(3, 1).requires_grad_()
    # the last row's raw log-variance −6 < −ln 49, where the reference's clamp holds σ at its floor
    log_scale = torch.tensor([[-1.5, -0.5, 0.4, 1.5], [0.1, -1.0, 1.0, -0.2], [-3.0] * 4]).requires_grad_()
    q = CommittedRate(DeltaParams(), 4)(diagonal(loc, log_scale), loc)
    kl = kl_divergence(q.base_dist, Normal(0.0, 1.0)).sum()
    loc_gradient, log_scale_gradient = torch.autograd.grad(kl, [loc, log_scale], retain_graph=True)
    assert log_scale_gradient.abs().max() <= 1e-5
    torch.testing.assert_close(loc_gradient, (loc > 0).float() / 2, rtol=1e-4, atol=1e-5)
    # the variance head still gets gradients from anything read off a sample (the reconstruction), through σ and μ
    torch.manual_seed(0)
    (sample_gradient,) = torch.autograd.grad((q.rsample() ** 2).sum(), [log_scale])
    assert sample_gradient[:2].abs().min() > 0 and torch.all(sample_gradient[2] == 0)


def test_deltavae_refuses_a_posterior_other_than_a_diagonal_gaussian():
    transform = CommittedRate(DeltaParams(), 2)
    assert transform.incompatibility(diagonal(torch.zeros(2, 2), torch.zeros(2, 2))) is None
    full = MultivariateNormal(torch.zeros(2, 2), torch.eye(2).expand(2, 2, 2))
    assert "diagonal Gaussian" in transform.incompatibility(full)


def test_deltavae_accepts_exactly_the_priors_that_are_the_fixed_n_0_i():
    d = 3
    assert standard_normal_gap(StandardPrior(None, d), d) is None
    assert standard_normal_gap(GaussianPrior(GaussianPrior.Params(variance=1.0), d), d) is None
    assert "scales are not all 1" in standard_normal_gap(GaussianPrior(GaussianPrior.Params(variance=2.0), d), d)
    assert standard_normal_gap(MixtureOfGaussians(MixtureOfGaussians.Params(), d), d) == "it is learned"
    vamp = standard_normal_gap(VampPrior(VampPrior.Params(), d), d)
    assert vamp == "it is defined through the model's encoder"


@pytest.mark.parametrize("prior", ["vamp", "mog"])
def test_deltavae_with_another_prior_is_refused_in_one_line_naming_it(capsys, tmp_path, prior):
    code, lines = cli(capsys, *SYNTHETIC, "--transform", "deltavae", "--prior", prior, "--out", str(tmp_path / "r"))
    assert code == 2 and len(lines) == 1 and not (tmp_path / "r" / "checkpoint.pt").exists()
    assert lines[0].startswith("vaezoo: error: transform 'deltavae' commits a KL of delta per latent dim to the ")
    assert f"prior N(0, I), which prior {prior!r} is not" in lines[0] and lines[0].endswith("use prior 'standard'")


# -- real runs -------------------------------------------------------------------------------------------------------


def omniglot_run(capsys, out: Path, data_dir: Path, transform: str, d: int) -> tuple[dict, list[dict]]:
    """30 steps on 512 Omniglot images with small MLPs: results.json's test metrics (256 test images) and the
    lines of metrics.jsonl."""
    code, lines = cli(
        capsys,
        "--data", "omniglot", "--set", "data.limit=512", "--data-dir", str(data_dir),
        "--encoder", "mlp", "--set", "encoder.hidden=[32]", "--decoder", "mlp", "--set", "decoder.hidden=[32]",
        "--latent-dim", str(d), "--transform", transform, "--steps", "30", "--batch-size", "32",
        "--set", "train.eval_every=10", "--set", "eval.iw_samples=1", "--set", "eval.limit=256", "--out", str(out),
    )  # fmt: skip
    assert code == 0, lines
    results = json.loads((out / "results.json").read_text())["metrics"]
    return results, [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_real_runs_keep_their_floors_on_omniglot(registry, data_dir, capsys, tmp_path):
    """δ-VAE's test KL is d·δ plus half the mean of Σ relu(μ_raw), exactly; BN-VAE's training KL is at least d·γ²/2
    in every batch, but its test KL only at least ½Σ_j γ²·v_j/(running_var_j + ε), v_j the test means' variance:
    evaluation normalises by running statistics, which after 30 steps still carry 0.9³⁰ ≈ 4 % of their initial
    variance 1 against the encoder's ~0.02, and on held-out images the means spread less than in training batches."""
    d, delta, gamma = 8, 0.15, 0.6
    results, lines = omniglot_run(capsys, tmp_path / "delta", data_dir, "deltavae", d)
    session = load_trained(tmp_path / "delta", registry, data_dir)
    session.model.eval()
    x = next(session.data.batches("test", 256, limit=256))
    with torch.no_grad():
        raw = session.model.encoder.network(x).base_dist.loc.double()
    assert results["kl"] >= d * delta
    assert results["kl"] == pytest.approx(d * (delta + 5e-7) + raw.relu().sum(1).mean().item() / 2, rel=1e-5)
    assert all(line[split]["kl"] >= d * delta for line in lines for split in ("train", "valid"))

    results, lines = omniglot_run(capsys, tmp_path / "bn", data_dir, "bnvae", d)
    assert all(line["train"]["kl"] >= d * gamma**2 / 2 * (1 - 1e-3) for line in lines)
    session = load_trained(tmp_path / "bn", registry, data_dir)
    session.model.eval()
    x = next(session.data.batches("test", 256, limit=256))
    with torch.no_grad():
        raw = session.model.encoder.network(x).base_dist.loc.double()
    norm = session.model.encoder.transform.norm
    evaluation_floor = 0.5 * (gamma**2 * raw.var(0, unbiased=False) / (norm.running_var.double() + EPS)).sum()
    assert results["kl"] >= evaluation_floor.item()
