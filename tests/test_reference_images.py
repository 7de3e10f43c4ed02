"""He et al. (2019)'s Omniglot networks, ``arch=he2019`` of the ``resnet`` encoder and the ``pixelcnn`` decoder:
sizes through the real config path, initialisation, the autoregressive property, exact fast sampling, refused
settings, bf16 autocast, and short training runs.

Axis legend: ``b`` batch, ``d`` latent, ``h w`` image, ``i j`` flattened output and input pixels in raster order.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import run_cli
from tests.test_pixelcnn import calibrate_norms, dependency, fast_and_naive, window_pattern
from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import DataSpec
from vaezoo.config.run_config import RunConfig, merge_raw, parse_override, resolve
from vaezoo.model.assembly import VAE, build_model
from vaezoo.runs.session import open_session
from vaezoo_plugins.networks.pixelcnn import PAPER_KERNELS, Bottleneck, He2019PixelCNN, PixelCNNDecoder, PixelCNNParams

#: ``--set`` settings of an Omniglot run with the ResNet encoder and PixelCNN decoder, 32-d z, and He et al.'s archs.
OMNIGLOT = ["data.name=omniglot", "encoder.name=resnet", "decoder.name=pixelcnn", "model.latent_dim=32"]
HE2019 = ["encoder.arch=he2019", "decoder.arch=he2019"]


#: Sampling is thousands of small ops: one thread keeps them fast on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(registry, *settings: str) -> RunConfig:
    """The run config that ``--set`` flags ``settings`` give."""
    raw: dict[str, dict] = {}
    for text in settings:
        section, key, value = parse_override(text)
        raw.setdefault(section, {})[key] = value
    return resolve(merge_raw(raw), registry)


def he2019_model(registry, data_dir) -> VAE:
    """He et al.'s model built by a session on the real Omniglot data (seeded, training mode)."""
    return open_session(config(registry, *OMNIGLOT, *HE2019, "train.threads=1"), registry, data_dir).model


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_reference_implementation(registry, data_dir):
    model = he2019_model(registry, data_dir)
    assert count(model.encoder) == 752_448
    assert count(model.decoder) == 894_400
    assert count(model.decoder.z_map) == 103_488
    assert count(model) == 1_646_848


def test_initialisation_follows_the_reference(registry, data_dir):
    torch.manual_seed(0)
    model = he2019_model(registry, data_dir)
    encoder, decoder = model.encoder, model.decoder
    conv = encoder.features[3]  # 4x4, 64 -> 512
    assert conv.kernel_size == (4, 4) and conv.bias is None
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (4 * 4 * 512)), rel=0.02)
    masked = decoder.net.blocks[0].masked  # 7x7, 32 -> 32
    assert masked.weight.std().item() == pytest.approx(math.sqrt(2 / (7 * 7 * 32)), rel=0.05)
    for linear in (encoder.head, decoder.z_map):
        assert torch.equal(linear.bias, torch.zeros_like(linear.bias))
        bound = math.sqrt(6 / sum(linear.weight.shape))  # Xavier-uniform
        assert linear.weight.abs().max() <= bound and linear.weight.abs().max() > 0.95 * bound
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all((n.weight == 1).all() and (n.bias == 0).all() for n in norms)


def he2019_pattern(h: int, w: int) -> torch.Tensor:
    """``'i j'`` dependency of He et al.'s decoder derived from its description: a bottleneck block passes its
    input's dependencies on (the residual) and spreads them through its type B masked conv; direct blocks add
    the output of block i - 3 to the input of block i, and of block 10 after block 12."""

    def block(pattern: torch.Tensor, kernel: int) -> torch.Tensor:
        return pattern | ((window_pattern(h, w, kernel, "B").double() @ pattern.double()) > 0)

    direct_kernels = PAPER_KERNELS[1:-1]
    outputs = [window_pattern(h, w, PAPER_KERNELS[0], "A")]
    for i, kernel in enumerate(PAPER_KERNELS[1:], start=1):
        into = outputs[-1]
        if i >= 3:
            into = into | block(outputs[i - 3], direct_kernels[i - 3])
        outputs.append(block(into, kernel))
    return outputs[-1] | block(outputs[-3], direct_kernels[-1])


def test_the_he2019_decoder_depends_exactly_on_the_pixels_its_masks_allow():
    """On a small image, where the dependency pattern is fully checkable: zero gradient at and after i, non-zero
    wherever the masks and connections allow (an over-masked kernel or a missing connection fails too)."""
    torch.manual_seed(0)
    h, w = 6, 7
    decoder = PixelCNNDecoder(PixelCNNParams(arch="he2019"), DataSpec((1, h, w), "binary"), 3).double()
    calibrate_norms(decoder)
    decoder.eval()
    z = torch.randn(1, 3, dtype=torch.float64)
    got = dependency(lambda x: decoder.logits(x, z), h, w)
    assert not (got & torch.ones(h * w, h * w, dtype=torch.bool).triu()).any()
    assert torch.equal(got, he2019_pattern(h, w))
    assert got[1:].any(dim=1).all(), "every pixel but the first depends on some earlier pixel"


def reference_logits(net: He2019PixelCNN, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
    """He et al.'s forward pass in the form of their implementation (a queue of the last three block outputs), on
    the modules of ``net``: an independent check of its wiring. ``x 'b 1 h w'``, ``condition 'b 4 h w'``."""

    def bottleneck(block: Bottleneck, h: torch.Tensor) -> torch.Tensor:
        inner = F.elu(block.reduce_norm(block.reduce(h)))
        inner = F.elu(block.masked_norm(block.masked(inner)))
        return F.elu(h + block.expand_norm(block.expand(inner)))

    h = F.elu(net.first_norm(net.first(torch.cat([x, condition], dim=1))))
    queue = [h]
    for i, block in enumerate(net.blocks, start=1):
        if i > 2:
            h = h + bottleneck(net.direct[i - 3], queue.pop(0))
        h = bottleneck(block, h)
        queue.append(h)
    assert len(queue) == 3
    h = h + bottleneck(net.direct[-1], queue.pop(0))
    return net.out(F.elu(net.head_norm(net.head(h))))


@pytest.mark.parametrize("training", [True, False])
def test_the_he2019_decoder_is_wired_as_the_reference(training):
    torch.manual_seed(0)
    decoder = PixelCNNDecoder(PixelCNNParams(arch="he2019"), DataSpec((1, 9, 10), "binary"), 3)
    calibrate_norms(decoder)
    net = decoder.net
    assert [block.masked.kernel_size[0] for block in net.blocks] == list(PAPER_KERNELS[1:])
    assert [block.masked.kernel_size[0] for block in net.direct] == list(PAPER_KERNELS[1:-1])
    assert net.first.kernel_size == (7, 7) and net.first.masked_in == 1 and net.first.in_channels == 5
    x, z = torch.bernoulli(torch.full((4, 1, 9, 10), 0.3)), torch.randn(4, 3)
    decoder.train(training)
    with torch.no_grad():
        torch.testing.assert_close(decoder.logits(x, z), reference_logits(net, x, decoder.condition(z)))


def test_the_full_size_he2019_decoder_is_autoregressive(registry, data_dir):
    """28x28, the model as built for training, in eval mode: logit i against every pixel, for a few i."""
    torch.manual_seed(0)
    decoder = he2019_model(registry, data_dir).decoder.eval()
    calibrate_norms(decoder)
    x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5)).requires_grad_()
    logits = decoder.logits(x, torch.randn(1, 32)).flatten()
    for i in (0, 1, 28, 29, 400, 783):
        (gradient,) = torch.autograd.grad(logits[i], x, retain_graph=True)
        seen = gradient.flatten() != 0
        assert not seen[i:].any(), f"logit {i} depends on pixel {i} or a later one"
        assert seen[:i].any() == (i > 0)


def test_fast_and_naive_sampling_agree_for_the_full_size_he2019_decoder(registry, data_dir):
    """The first row and a bit of 28x28 images (the naive sampler's full passes are slow); the plain stack and
    whole small images are covered in test_pixelcnn."""
    torch.manual_seed(0)
    decoder = he2019_model(registry, data_dir).decoder
    calibrate_norms(decoder)
    fast_and_naive(decoder, 2, 32)


@pytest.mark.parametrize(
    ("setting", "name"),
    [
        ("encoder.channels=8,16", "channels"),
        ("encoder.blocks_per_stage=1", "blocks_per_stage"),
        ("decoder.kernels=7,5,3", "kernels"),
        ("decoder.channels=32", "channels"),
        ("decoder.z_channels=4", "z_channels"),
    ],
)
def test_size_parameters_are_refused_with_he2019(registry, setting, name):
    section = setting.partition(".")[0]
    with pytest.raises(UsageError, match=f"{section} .*'{name}' does not apply to arch=he2019"):
        config(registry, *OMNIGLOT, *HE2019, setting)
    config(registry, *OMNIGLOT, setting)  # valid with the default arch


def test_settings_that_apply_to_he2019_are_accepted(registry):
    defaults = ["encoder.channels=32,64,64", "decoder.kernels=" + ",".join(map(str, PAPER_KERNELS))]
    resolved = config(registry, *OMNIGLOT, *HE2019, *defaults, "decoder.sampling=naive")
    assert resolved.decoder.params.arch == "he2019" and resolved.decoder.params.sampling == "naive"
    with pytest.raises(UsageError, match="arch"):
        config(registry, *OMNIGLOT, "encoder.arch=he2020")


def test_the_he2019_encoder_refuses_other_image_shapes(registry):
    resolved = config(registry, *OMNIGLOT, "encoder.arch=he2019")
    for shape in ((1, 14, 14), (3, 28, 28)):
        with pytest.raises(UsageError, match=f"arch=he2019 .*{re.escape(str(shape))}"):
            build_model(resolved, registry, DataSpec(shape, "binary"))


@pytest.mark.parametrize("arch", ["vaezoo", "he2019"])
def test_a_training_step_runs_under_bf16_autocast(registry, data_dir, arch):
    """Forward and backward in bfloat16 through the model's own step; log p(x|z) stays float32."""
    settings = [*OMNIGLOT, f"encoder.arch={arch}", f"decoder.arch={arch}", "train.threads=1"]
    session = open_session(config(registry, *settings), registry, data_dir)
    x = next(iter(session.batches("train")))[:8]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        step = session.model.forward_step(x, 0)
        loss, _ = session.model.loss(step)
    assert step.log_px.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    gradients = [p.grad for p in session.model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)


def finite_numbers(value) -> bool:
    """Whether every number in a JSON value is finite."""
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_numbers(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_short_he2019_run_trains_evaluates_and_samples(data_dir, tmp_path, precision):
    out = tmp_path / "run"
    flags = [f"--set={setting}" for setting in (*OMNIGLOT, *HE2019)]
    result = run_cli(
        "run", *flags, "--steps", "4", "--batch-size", "8", "--set", "data.limit=64", "--set", "eval.limit=16",
        "--set", "eval.iw_samples=4", "--set", "train.eval_every=2", "--set", "train.threads=1",
        "--set", f"train.precision={precision}", "--no-progress", "--data-dir", str(data_dir), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert all(finite_numbers(line) for line in lines)
    assert lines[-1]["valid"]["neg_elbo"] > 0
    results = json.loads((out / "results.json").read_text())
    assert finite_numbers(results["metrics"]) and results["metrics"]["iw_nll"] > 0

    sampled = run_cli("sample", str(out), "--count", "4", "--data-dir", str(data_dir))
    assert sampled.returncode == 0, sampled.stderr
    assert (out / "samples_prior.png").is_file()
