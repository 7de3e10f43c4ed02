"""Noise samplers: the requested variance, samples from the current decoder, no gradients, refusals."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import small_config
from vaezoo import hookimpl
from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Data, DataSource, DataSpec
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.model.assembly import build_model
from vaezoo.plugins.loading import load_plugins
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.noise.samplers import DecoderNoise, DecoderNoiseParams, GaussianNoise, GaussianNoiseParams

REAL = DataSpec((50,), "real")


def test_gaussian_noise_has_the_requested_variance_and_no_gradient():
    torch.manual_seed(0)
    x = torch.randn(4000, 50, requires_grad=True)
    noise = GaussianNoise(GaussianNoiseParams(sigma=0.3), REAL)
    x_noise = noise(x, None, None, None, 0)
    residual = x_noise - x.detach()
    assert residual.std().item() == pytest.approx(0.3, rel=0.01)
    assert abs(residual.mean().item()) < 0.002
    assert not x_noise.requires_grad


def test_gaussian_noise_refuses_token_ids():
    tokens = torch.zeros(4, 7, dtype=torch.long)
    data = Data(DataSpec((7,), "tokens", vocab_size=10), tokens, tokens, tokens)
    reason = GaussianNoise(GaussianNoiseParams(), data.spec).incompatibility(data)
    assert reason is not None and "token ids" in reason


def decoder_noise_model(registry, refresh_every=1, precision="bf16"):
    noise = {"name": "decoder", "refresh_every": refresh_every, "precision": precision}
    config = resolve(merge_raw({"noise": noise, "decoder": {"hidden": [16]}}), registry)
    torch.manual_seed(0)
    return build_model(config, registry, REAL)


@pytest.mark.parametrize("precision", ["bf16", "fp32", "auto"])
def test_decoder_noise_comes_from_the_current_decoder(registry, precision):
    model = decoder_noise_model(registry, precision=precision)
    x = torch.zeros(32, 50)
    torch.manual_seed(1)
    first = model.noise(x, model.decoder, model.prior, None, step=0)
    torch.manual_seed(1)
    z = model.prior().sample((32,))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):  # auto: fp32 but for tokens
        expected = model.decoder.sample(z)
    assert torch.equal(first, expected), "noise must be z ~ p(z), x ~ p(x|z) of the model's own decoder"
    torch.manual_seed(1)
    in_float32 = model.decoder.sample(model.prior().sample((32,)))
    assert torch.equal(first, in_float32) == (precision != "bf16"), "bf16 draws must round the decoder's outputs"
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 run changes no draw: fp32 and auto stay float32
        torch.manual_seed(1)
        assert torch.equal(model.noise(x, model.decoder, model.prior, None, step=1), first)
    assert not first.requires_grad
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.5)
    torch.manual_seed(1)
    changed = model.noise(x, model.decoder, model.prior, None, step=2)
    assert not torch.allclose(first, changed), "a changed decoder must give changed noise"


def test_decoder_noise_pool_is_refreshed_every_n_steps_and_survives_a_checkpoint(registry):
    model = decoder_noise_model(registry, refresh_every=3)
    x = torch.zeros(8, 50)
    pools = [model.noise(x, model.decoder, model.prior, None, step=s).clone() for s in range(4)]
    assert torch.equal(pools[0], pools[1]) and torch.equal(pools[1], pools[2])
    assert not torch.equal(pools[2], pools[3])
    state = model.state_dict()
    fresh = decoder_noise_model(registry, refresh_every=3)
    fresh.load_state_dict(state)
    resumed = fresh.noise(x, fresh.decoder, fresh.prior, None, step=4)
    assert torch.equal(resumed, pools[3]), "a resumed run must reuse the saved pool"
    assert isinstance(model.noise, DecoderNoise) and DecoderNoiseParams().refresh_every == 1


class NoNoiseData(DataSource):
    name = "plain"
    needs_data_dir = False

    def load(self, data_dir, seed):
        x = torch.randn(64, 5)
        return Data(DataSpec((5,), "real"), x, x, x)


class PlainDataPlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(NoNoiseData)


def test_a_regulariser_that_needs_noise_without_a_sampler_fails_before_training():
    registry = load_plugins(extra=(PlainDataPlugin(),)).registry
    with pytest.raises(
        UsageError, match=r"regularizer 'ncvae' needs contrastive noise: choose --noise from .*gaussian"
    ):
        resolve(merge_raw({"data": {"name": "plain"}, "regularizer": {"name": "ncvae"}}), registry)
    # the synthetic task brings its own noise distribution, used when none is chosen
    config = resolve(merge_raw({"regularizer": {"name": "ncvae"}}), registry)
    assert config.noise.name == "dataset"


@pytest.mark.slow
def test_dataset_noise_is_refused_for_data_without_noise(tmp_path):
    registry = load_plugins(extra=(PlainDataPlugin(),)).registry
    config = resolve(
        merge_raw({"data": {"name": "plain"}, "regularizer": {"name": "ncvae"}, "noise": {"name": "dataset"}}), registry
    )
    with pytest.raises(UsageError, match="noise 'dataset' cannot be used with data 'plain'"):
        Trainer(config, registry, tmp_path, None)


@pytest.mark.slow
def test_ncvae_trains_and_resumes_with_decoder_noise(registry, tmp_path):
    """Resume equality holds with a decoder-noise pool refreshed every 3 steps (the pool is checkpointed)."""
    sections = {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder", "refresh_every": 3}}
    straight = Trainer(small_config(registry, **sections), registry, tmp_path / "a", None).run()
    Trainer(
        small_config(registry, train={"steps": 25, "eval_every": 5}, **sections), registry, tmp_path / "b", None
    ).run()
    resumed = Trainer(small_config(registry, **sections), registry, tmp_path / "b", None).run(resume=True)
    assert resumed["metrics"] == straight["metrics"]
