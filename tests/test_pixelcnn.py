"""The PixelCNN decoder: autoregressive masks (exact dependency patterns), exact fast sampling, densities, noise.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``h w`` image, ``i j`` flattened output and
input pixels in raster order.
"""

from __future__ import annotations

import pytest
import torch

from vaezoo.base.errors import UsageError
from vaezoo.base.params import build_params
from vaezoo.components.interfaces import DataSpec
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.model.assembly import build_model
from vaezoo_plugins.networks.pixelcnn import PAPER_KERNELS, PixelCNN, PixelCNNDecoder, PixelCNNParams

SMALL = PixelCNNParams(kernels=(5, 3, 3), channels=8, z_channels=2)
LATENT = 3


#: Sampling is thousands of small ops: one thread keeps them fast on a busy machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def window_pattern(h: int, w: int, kernel: int, mask_type: str) -> torch.Tensor:
    """``'i j'`` True where one masked layer lets output pixel i see input pixel j, derived from the definition:
    j within the kernel window of i and before i in raster order (or equal to i, for type B)."""
    radius = kernel // 2
    pattern = torch.zeros(h * w, h * w, dtype=torch.bool)
    for i in range(h * w):
        for j in range(h * w):
            (ri, ci), (rj, cj) = divmod(i, w), divmod(j, w)
            near = abs(ri - rj) <= radius and abs(ci - cj) <= radius
            pattern[i, j] = near and (j < i or (j == i and mask_type == "B"))
    return pattern


def stack_pattern(h: int, w: int, kernels: tuple[int, ...], first_mask: str) -> torch.Tensor:
    """``'i j'`` dependency of a whole stack: the boolean product of its layers' patterns."""
    pattern = window_pattern(h, w, kernels[0], first_mask)
    for kernel in kernels[1:]:
        pattern = (window_pattern(h, w, kernel, "B").double() @ pattern.double()) > 0
    return pattern


def dependency(logits_of, h: int, w: int) -> torch.Tensor:
    """``'i j'`` True where d logit_i / d x_j is non-zero, at a random float64 input ``'1 1 h w'``."""
    x = torch.rand(1, 1, h, w, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda v: logits_of(v.view(1, 1, h, w)).flatten(), x.flatten())
    return jacobian != 0


def randomise_norms(module: torch.nn.Module) -> None:
    """Non-trivial batch-norm statistics and affine parameters, so that folding them is exercised."""
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.3, 0.3)


@pytest.mark.parametrize("first_mask", ["A", "B"])
@pytest.mark.parametrize("kernels", [(3,), (5,), (7,), (5, 3, 3), PAPER_KERNELS[::3]])
def test_the_stack_depends_exactly_on_the_pixels_its_masks_allow(kernels, first_mask):
    """Zero gradient for every j after i (and at i, for type A); non-zero wherever the masks allow, so an
    over-masked kernel fails too. h != w catches a swapped axis."""
    torch.manual_seed(0)
    h, w = 6, 7
    net = PixelCNN(kernels, channels=4, first_mask=first_mask).double().eval()
    randomise_norms(net)
    got = dependency(net, h, w)
    later = torch.ones(h * w, h * w, dtype=torch.bool).triu(diagonal=1 if first_mask == "B" else 0)
    assert not (got & later).any(), "an output pixel depends on itself or a later input pixel"
    assert torch.equal(got, stack_pattern(h, w, kernels, first_mask))
    assert got.diagonal().all() == (first_mask == "B")


def test_the_decoder_is_autoregressive_in_x_with_z_channels_present():
    torch.manual_seed(0)
    h, w = 5, 6
    decoder = PixelCNNDecoder(SMALL, DataSpec((1, h, w), "binary"), LATENT).double().eval()
    z = torch.randn(1, LATENT, dtype=torch.float64)
    got = dependency(lambda x: decoder.logits(x, z), h, w)
    assert torch.equal(got, stack_pattern(h, w, SMALL.kernels, "A"))


def calibrate_norms(decoder: PixelCNNDecoder, b: int = 8) -> None:
    """Batch-norm running statistics from one train-mode pass on random images, then random affine parameters.

    Arbitrary statistics (``randomise_norms``) saturate the deep residual he2019 network (logits near +-20, every
    sample all ones); these keep its eval-mode activations at the scale training gives them."""
    norms = [m for m in decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    was_training = decoder.training
    dtype = decoder.z_map.weight.dtype
    x = torch.bernoulli(torch.full((b, 1, decoder.height, decoder.width), 0.3, dtype=dtype))
    with torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: after one pass, that pass's statistics
        decoder.train().logits(x, torch.randn(b, decoder.latent_dim, dtype=dtype))
        for norm in norms:
            norm.momentum = 0.1
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)
    decoder.train(was_training)


def fast_and_naive(decoder: PixelCNNDecoder, b: int, pixels: int | None = None) -> None:
    """Both samplers draw the same pixels from the same seed, with the same probabilities."""
    z = torch.randn(b, decoder.latent_dim)
    torch.manual_seed(7)
    x_fast, p_fast = decoder.sample_with_probabilities(z, "fast", pixels)
    torch.manual_seed(7)
    x_naive, p_naive = decoder.sample_with_probabilities(z, "naive", pixels)
    assert torch.equal(x_fast, x_naive)
    torch.testing.assert_close(p_fast, p_naive, atol=1e-5, rtol=0)
    assert 0 < x_fast.mean() < 1


@pytest.mark.parametrize(
    ("params", "shape", "b", "pixels"),
    [
        (SMALL, (1, 28, 28), 5, None),
        (PixelCNNParams(), (1, 9, 10), 3, None),  # the paper's 13 layers; the receptive field covers the image
        (PixelCNNParams(), (1, 28, 28), 2, 32),  # the paper's decoder at full size, over the first 32 pixels
        (PixelCNNParams(arch="he2019"), (1, 7, 8), 3, None),  # residual and direct connections, whole images
    ],
)
def test_fast_and_naive_sampling_agree_for_the_same_random_draws(params, shape, b, pixels):
    torch.manual_seed(0)
    decoder = PixelCNNDecoder(params, DataSpec(shape, "binary"), LATENT).eval()
    calibrate_norms(decoder)
    fast_and_naive(decoder, b, pixels)


@pytest.mark.parametrize("params", [SMALL, PixelCNNParams(arch="he2019")])
def test_sampling_uses_running_statistics_and_restores_the_training_mode(params):
    torch.manual_seed(0)
    decoder = PixelCNNDecoder(params, DataSpec((1, 6, 5), "binary"), LATENT)
    calibrate_norms(decoder)
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    fast_and_naive(decoder, 4)
    assert decoder.training
    assert all(torch.equal(before[k], v) for k, v in decoder.state_dict().items())


@pytest.mark.parametrize("params", [SMALL, PixelCNNParams(arch="he2019")])
def test_log_prob_folds_k_and_matches_the_sampling_probabilities(params):
    torch.manual_seed(0)
    decoder = PixelCNNDecoder(params, DataSpec((1, 6, 5), "binary"), LATENT).eval()
    calibrate_norms(decoder)
    z = torch.randn(3, 4, LATENT)
    x, p = decoder.sample_with_probabilities(z[1])
    log_px = decoder.log_prob(x, z)
    assert log_px.shape == (3, 4) and (log_px < 0).all()
    torch.testing.assert_close(log_px[2], decoder.log_prob(x, z[2:3])[0])
    by_pixel = torch.where(x.bool(), p.log(), (1 - p).log()).sum(dim=(1, 2, 3))
    torch.testing.assert_close(log_px[1], by_pixel, atol=1e-4, rtol=1e-5)


def test_log_prob_is_sensitive_to_z():
    torch.manual_seed(0)
    decoder = PixelCNNDecoder(SMALL, DataSpec((1, 6, 5), "binary"), LATENT).eval()
    x = torch.bernoulli(torch.full((4, 1, 6, 5), 0.5))
    z = torch.randn(1, 4, LATENT)
    assert (decoder.log_prob(x, z) - decoder.log_prob(x, z + 1.0)).abs().min() > 1e-3


def test_decoder_noise_draws_binary_samples_with_the_fast_sampler(registry, monkeypatch):
    def refuse(*args):
        raise AssertionError("the decoder noise must use the fast sampler")

    monkeypatch.setattr(PixelCNNDecoder, "_sample_naive", refuse)
    raw = {
        "noise": {"name": "decoder"},
        "decoder": {"name": "pixelcnn", "kernels": [5, 3], "channels": 8},
        "model": {"latent_dim": LATENT},
    }
    torch.manual_seed(0)
    model = build_model(resolve(merge_raw(raw), registry), registry, DataSpec((1, 7, 6), "binary"))
    x = torch.bernoulli(torch.full((5, 1, 7, 6), 0.3)).requires_grad_()
    x_noise = model.noise(x, model.decoder, model.prior, None, 0)
    assert x_noise.shape == x.shape and not x_noise.requires_grad
    assert set(x_noise.unique().tolist()) <= {0.0, 1.0}
    assert model.decoder.training


def test_bad_kernels_and_data_are_refused():
    for kernels in ("7,4", "1", ""):
        with pytest.raises(UsageError, match="kernels"):
            build_params(PixelCNNParams, {"kernels": kernels}, "decoder")
    assert build_params(PixelCNNParams, {"kernels": "7,5,3"}, "decoder").kernels == (7, 5, 3)
    for spec in (DataSpec((1, 4, 4), "real"), DataSpec((3, 4, 4), "binary"), DataSpec((16,), "binary")):
        with pytest.raises(UsageError, match="pixelcnn"):
            PixelCNNDecoder(PixelCNNParams(), spec, LATENT)
