"""The mixture priors ``mog`` and ``vamp``: their densities by hand, their gradients and state, and real runs.

Axis legend: ``b`` points, ``k`` mixture components, ``d`` latent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import einops
import pytest
import torch

from tests.conftest import run_cli, small_raw
from vaezoo.base.errors import UsageError
from vaezoo.components.distributions import kl_or_estimate
from vaezoo.components.interfaces import DataSpec
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.model.assembly import build_model
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.runs.session import open_session

SPECS = {"real": DataSpec((12,), "real"), "binary": DataSpec((1, 4, 5), "binary")}
TOKENS = DataSpec((9,), "tokens", vocab_size=30, pad_id=0, bos_id=1, eos_id=2)
LATENT = 3
PRIOR_PARAMETERS = {"mog": ["means", "log_scales", "logits"], "vamp": ["pseudo_inputs"]}


def example_batch(spec: DataSpec, b: int = 8) -> torch.Tensor:
    if spec.kind == "binary":
        return torch.bernoulli(torch.full((b, *spec.shape), 0.4))
    return torch.randn(b, *spec.shape)


def model_with(registry, prior: dict, spec: DataSpec, seed: int = 0, **sections):
    """A model of the small test networks with ``prior`` for data of ``spec``; ``sections`` replace whole sections."""
    raw = {**small_raw(prior=prior, model={"latent_dim": LATENT}), **sections}
    torch.manual_seed(seed)
    return build_model(resolve(merge_raw(raw), registry), registry, spec)


def test_mog_log_prob_is_the_log_sum_exp_of_its_weighted_components(registry):
    model = model_with(registry, {"name": "mog", "components": 3}, SPECS["real"])
    prior = model.prior
    with torch.no_grad():  # away from the initial equal weights and unit scales
        prior.log_scales.copy_(0.5 * torch.randn(3, LATENT))
        prior.logits.copy_(torch.randn(3))
    z = einops.rearrange(torch.randn(5, LATENT), "b d -> b 1 d")
    means, scales = prior.means.detach(), prior.log_scales.detach().exp()
    log_normal = (-0.5 * ((z - means) / scales) ** 2 - scales.log() - 0.5 * math.log(2 * math.pi)).sum(-1)  # 'b k'
    log_weights = prior.logits.detach() - torch.logsumexp(prior.logits.detach(), 0)
    expected = torch.logsumexp(log_weights + log_normal, dim=-1)
    actual = prior().log_prob(einops.rearrange(z, "b 1 d -> b d"))
    torch.testing.assert_close(actual, expected)


def test_mog_components_start_apart_with_equal_weights_and_unit_scales(registry):
    prior = model_with(registry, {"name": "mog", "components": 4, "init_scale": 2.0}, SPECS["real"]).prior
    assert torch.equal(prior.logits, torch.zeros(4)) and torch.equal(prior.log_scales, torch.zeros(4, LATENT))
    assert torch.cdist(prior.means, prior.means)[~torch.eye(4, dtype=torch.bool)].min() > 0.1


@pytest.mark.parametrize("kind", SPECS)
def test_vamp_log_prob_is_the_log_mean_of_the_encoder_posteriors_at_the_pseudo_inputs(registry, kind):
    spec = SPECS[kind]
    model = model_with(registry, {"name": "vamp", "components": 4}, spec)
    prior = model.prior
    assert prior.pseudo_inputs.shape == (4, *spec.shape)
    if kind == "binary":  # some pseudo-inputs out of range: the encoder must see them clamped into [0, 1]
        with torch.no_grad():
            prior.pseudo_inputs[0].fill_(-0.5)
            prior.pseudo_inputs[1].fill_(1.5)
    inputs = prior.pseudo_inputs.detach()
    inputs = inputs.clamp(0, 1) if kind == "binary" else inputs
    z = torch.randn(5, LATENT)
    with torch.no_grad():
        one_by_one = [model.encoder(inputs[k : k + 1]) for k in range(4)]  # q(z | u_k), batch shape (1,)
        per_component = torch.stack([q.log_prob(einops.rearrange(z, "b d -> b 1 d"))[:, 0] for q in one_by_one])
        expected = torch.logsumexp(per_component, dim=0) - math.log(4)
        torch.testing.assert_close(prior().log_prob(z), expected)
    distribution = prior()
    assert distribution.event_shape == (LATENT,) and distribution.batch_shape == ()
    assert distribution.sample((6,)).shape == (6, LATENT)


def test_vamp_pseudo_inputs_start_in_the_data_range(registry):
    binary = model_with(registry, {"name": "vamp", "components": 200}, SPECS["binary"]).prior
    assert binary.inputs().min() > 0 and binary.inputs().max() < 1
    assert binary.pseudo_inputs.mean().item() == pytest.approx(0.05, abs=0.005)
    real = model_with(registry, {"name": "vamp", "components": 200}, SPECS["real"]).prior
    assert real.pseudo_inputs.std().item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", PRIOR_PARAMETERS)
def test_gradients_of_the_kl_estimate_reach_the_prior(registry, name):
    spec = SPECS["binary"]
    model = model_with(registry, {"name": name}, spec)
    record = model.forward_step(example_batch(spec), step=0)
    kl = kl_or_estimate(record.posterior, record.prior, record.z)  # no closed form: the Monte Carlo estimate
    assert kl.shape == (8,) and torch.isfinite(kl).all()
    kl.mean().backward()
    for parameter in PRIOR_PARAMETERS[name]:
        grad = getattr(model.prior, parameter).grad
        assert grad is not None and grad.abs().sum() > 0, parameter


def test_vamp_state_dict_holds_the_pseudo_inputs_once_and_the_encoder_only_under_encoder(registry):
    spec = SPECS["binary"]
    model = model_with(registry, {"name": "vamp", "components": 7}, spec)
    state = model.state_dict()
    assert [key for key in state if key.startswith("prior.")] == ["prior.pseudo_inputs"]
    assert state["prior.pseudo_inputs"].shape == (7, *spec.shape)
    encoder_storage = {p.data_ptr() for p in model.encoder.state_dict().values()}
    holders = [key for key, value in state.items() if value.data_ptr() in encoder_storage]
    assert holders and all(key.startswith("encoder.") for key in holders)
    assert len({id(p) for p in model.parameters()}) == len(list(model.named_parameters()))

    other = model_with(registry, {"name": "vamp", "components": 7}, spec, seed=1)
    z = torch.randn(5, LATENT)
    assert not torch.allclose(other.prior().log_prob(z), model.prior().log_prob(z))
    other.load_state_dict(state)
    torch.testing.assert_close(other.prior().log_prob(z), model.prior().log_prob(z))


def test_vamp_on_token_data_is_refused_naming_the_prior_and_the_data_kind(registry):
    small_lstm = {"name": "lstm", "embed_dim": 8, "hidden": 8}
    with pytest.raises(UsageError, match=r"prior 'vamp'.*tokens data"):
        model_with(registry, {"name": "vamp"}, TOKENS, encoder=small_lstm, decoder=small_lstm)


def test_vamp_unattached_says_what_it_needs(registry):
    cls = registry.get("prior", "vamp").cls
    with pytest.raises(RuntimeError, match="attach"):
        cls(cls.Params(), LATENT)()


def test_vamp_with_batch_norm_keeps_the_running_statistics_of_the_data_and_works_in_eval_mode(registry):
    spec = DataSpec((1, 8, 8), "binary")
    resnet = {"name": "resnet", "channels": [4, 4], "blocks_per_stage": 1}
    model = model_with(registry, {"name": "vamp", "components": 5}, spec, encoder=resnet)
    model.train()

    def running_statistics():
        return {name: b.clone() for name, b in model.encoder.named_buffers()}

    before = running_statistics()
    z = torch.randn(6, LATENT)
    model.prior().log_prob(z).sum().backward()
    assert model.prior.pseudo_inputs.grad.abs().sum() > 0
    after = running_statistics()
    assert all(torch.equal(before[name], after[name]) for name in before), "pseudo-inputs leaked into running stats"
    model.encoder(example_batch(spec))
    updated = [not torch.equal(after[name], b) for name, b in model.encoder.named_buffers()]
    assert any(updated), "a data batch updates them (else this test shows nothing)"

    model.eval()
    with torch.no_grad():
        distribution = model.prior()
        samples = distribution.sample((7,))
        assert samples.shape == (7, LATENT) and torch.isfinite(distribution.log_prob(samples)).all()
        single = registry.get("prior", "vamp").cls(registry.get("prior", "vamp").cls.Params(components=1), LATENT)
        single.attach(model.encoder)
        assert torch.isfinite(single().log_prob(z)).all()


def test_mog_follows_the_model_to_another_dtype(registry):
    model = model_with(registry, {"name": "mog"}, SPECS["real"]).to(torch.float64)
    assert model.prior().log_prob(torch.randn(4, LATENT, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", PRIOR_PARAMETERS)
def test_priors_follow_the_model_to_the_gpu(registry, name):
    spec = SPECS["binary"]
    model = model_with(registry, {"name": name}, spec).to("cuda")
    record = model.forward_step(example_batch(spec).cuda(), step=0)
    assert record.kl().is_cuda and torch.isfinite(record.kl()).all()
    assert record.prior.sample((3,)).is_cuda


# -- real runs ---------------------------------------------------------------------------------------------------

SMALL_RUN = [
    "--set", "data.limit=256", "--set", "eval.limit=64", "--set", "eval.iw_samples=10", "--batch-size", "32",
    "--set", "train.eval_every=30", "--set", "train.threads=1", "--set", "decoder.likelihood=bernoulli",
    "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """The run directory of ``vaezoo run --prior PRIOR --data DATA`` for 60 small steps, each run made once."""
    runs: dict[tuple[str, str], Path] = {}

    def run(prior: str, data: str) -> Path:
        if (prior, data) not in runs:
            out = tmp_path_factory.mktemp(f"{prior}-{data}")
            flags = ["--data", data, "--prior", prior, "--steps", "60", *SMALL_RUN, "--out", str(out), "--overwrite"]
            result = run_cli("run", *flags)
            assert result.returncode == 0, result.stderr
            runs[prior, data] = out
        return runs[prior, data]

    return run


def metric_lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("data", ["mnist", "omniglot"])
@pytest.mark.parametrize("prior", PRIOR_PARAMETERS)
def test_prior_trains_and_evaluates_on_binary_images(image_run, prior, data):
    run_dir = image_run(prior, data)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["prior"]["name"] == prior and results["steps"] == 60
    metrics = results["metrics"]
    assert {"neg_elbo", "kl", "iw_nll"} <= set(metrics)
    assert all(math.isfinite(value) for value in metrics.values()), metrics
    assert [line["step"] for line in metric_lines(run_dir)] == [30, 60]
    assert all(math.isfinite(line["train"]["kl"]) for line in metric_lines(run_dir))


@pytest.mark.slow
@pytest.mark.parametrize("prior", PRIOR_PARAMETERS)
def test_training_moves_the_prior_and_lowers_the_validation_loss(registry, data_dir, image_run, prior):
    run_dir = image_run(prior, "mnist")
    config = resolve(merge_raw(json.loads((run_dir / "config.json").read_text())), registry)
    initial = open_session(config, registry, data_dir).model.state_dict()  # the run's own seeded initialisation
    trained = load_checkpoint(run_dir / CHECKPOINT_NAME)["model"]
    for parameter in PRIOR_PARAMETERS[prior]:
        key = f"prior.{parameter}"
        assert trained[key].shape == initial[key].shape
        assert (trained[key] - initial[key]).abs().max() > 1e-3, f"{key} did not move"
    lines = metric_lines(run_dir)
    assert lines[-1]["valid"]["neg_elbo"] < lines[0]["valid"]["neg_elbo"]


@pytest.mark.slow
def test_a_resumed_vamp_run_reproduces_the_uninterrupted_one(image_run, tmp_path):
    straight = image_run("vamp", "mnist")
    half = run_cli("run", "--data", "mnist", "--prior", "vamp", "--steps", "30", *SMALL_RUN, "--out", str(tmp_path))
    assert half.returncode == 0, half.stderr
    resumed = run_cli("run", "--resume", str(tmp_path), "--steps", "60", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(straight / CHECKPOINT_NAME)["model"]
    b = load_checkpoint(tmp_path / CHECKPOINT_NAME)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert metric_lines(tmp_path) == metric_lines(straight)
