"""A PixelCNN decoder for binary images (docs/maths.md section 7) with exact fast and naive ancestral sampling.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``c h w`` image (``c`` also the channels of a
hidden layer), ``o i`` output and input channels of a convolution, ``y x`` kernel rows and columns.

The network is a stack of masked convolutions, each followed by batch norm and ELU, then a 1x1 convolution to one
logit per pixel (Bernoulli pixels). The first convolution has mask type A (a pixel does not see itself), the others
type B (a hidden unit sees its own position), so the logit of pixel i depends on input pixels strictly before i in
raster order only. z enters as extra input channels: a linear map of z to ``z_channels`` maps of size h x w that
are concatenated to the image; the first convolution sees them through its whole (unmasked) kernel, since they do
not depend on x.

Sampling draws pixels in raster order. Two exact paths give the same draws for the same random numbers:

* ``naive``: recompute the whole network on the partial image for every pixel (h * w full passes; the reference).
* ``fast``: cache every layer's activations; for pixel t compute every layer at position t only. In eval mode
  batch norm is a per-channel affine map, so each layer is a function of its input window alone, and every
  position before t is final once pixel t is drawn: a whole sample costs the arithmetic of one forward pass
  (in h * w * depth small steps).

Both paths sample with the normalisation in eval mode (running statistics), whatever the module's mode: train-mode
batch statistics of a partly drawn batch define no sensible distribution and would update the running statistics
at every pixel. The module's mode is restored afterwards.

The autoregressive property is exact in eval mode. In training mode batch norm normalises with statistics pooled
over the batch and every position, so each logit also depends (very weakly) on every pixel of the batch, as in
any PixelCNN trained with batch norm (the paper's setup).
"""

from __future__ import annotations

from typing import Literal

import attrs
import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo import hookimpl
from vaezoo.errors import UsageError
from vaezoo.interfaces import DataSpec, Decoder
from vaezoo.params import param

PAPER_KERNELS = (7, 7, 7, 7, 7, 5, 5, 5, 5, 3, 3, 3, 3)
#: Largest kernel, most layers, and most convolution weights (2**26 floats: 256 MiB, 1 GiB with their gradients and
#: Adam's moments) of the decoder's PixelCNN.
MAX_KERNEL = 63
MAX_LAYERS = 64
MAX_WEIGHTS = 2**26
MaskType = Literal["A", "B"]


def raster_mask(kernel: int, mask_type: MaskType) -> Tensor:
    """Spatial mask ``'y x'`` of a ``kernel`` x ``kernel`` convolution: 1 on the positions before the centre in
    raster order (the rows above, and the left part of the centre row), plus the centre itself for type B."""
    centre = kernel // 2
    mask = torch.zeros(kernel, kernel)
    mask[:centre] = 1
    mask[centre, : centre + (mask_type == "B")] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A same-size, bias-free convolution whose kernel is masked on its first ``masked_in`` input channels.

    The remaining input channels (conditioning maps) see the whole kernel. ``x 'b i h w' -> 'b o h w'``.
    """

    def __init__(self, channels_in: int, channels_out: int, kernel: int, mask_type: MaskType, masked_in: int) -> None:
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2, bias=False)
        mask = torch.ones(channels_out, channels_in, kernel, kernel)
        mask[:, :masked_in] = raster_mask(kernel, mask_type)
        self.register_buffer("mask", mask, persistent=False)
        self.mask_type, self.masked_in = mask_type, masked_in

    def masked_weight(self) -> Tensor:
        """The kernel as applied, ``'o i y x'``."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.masked_weight(), padding=self.padding)


class PixelCNN(nn.Module):
    """Masked conv + batch norm + ELU per entry of ``kernels``, then a 1x1 conv to one logit per pixel.

    ``forward(x 'b c h w', condition 'b cz h w' or None) -> logits 'b c h w'``, where ``c = channels_in`` is
    the image's channel count (1 here) and ``cz = condition_channels``. With ``first_mask="A"`` the logit of
    pixel i depends on image pixels strictly before i in raster order; with ``"B"`` on those up to and including i.
    """

    def __init__(
        self,
        kernels: tuple[int, ...],
        channels: int,
        channels_in: int = 1,
        condition_channels: int = 0,
        first_mask: MaskType = "A",
    ) -> None:
        super().__init__()
        if channels_in != 1:
            raise ValueError("the raster masks here are for one image channel")
        self.kernels, self.condition_channels = kernels, condition_channels
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        fan_in = channels_in + condition_channels
        for layer, kernel in enumerate(kernels):
            mask_type: MaskType = first_mask if layer == 0 else "B"
            masked_in = channels_in if layer == 0 else channels
            self.convs.append(MaskedConv2d(fan_in, channels, kernel, mask_type, masked_in))
            self.norms.append(nn.BatchNorm2d(channels))
            fan_in = channels
        self.out = nn.Conv2d(channels, channels_in, 1)

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        h = x if condition is None else torch.cat([x, condition], dim=1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = F.elu(norm(conv(h)))
        return self.out(h)


@attrs.frozen
class PixelCNNParams:
    kernels: tuple[int, ...] = param(
        PAPER_KERNELS,
        ge=3,
        le=MAX_KERNEL,
        help=f"kernel size of each masked conv layer, odd (its length is the depth, at most {MAX_LAYERS}; the first is "
        "type A); at most 2**26 weights with channels",
    )
    channels: int = param(64, ge=1, le=512, help="channels of every hidden layer (the width)")
    z_channels: int = param(1, ge=1, le=64, help="h x w maps that a linear layer makes of z, concatenated to the input")
    sampling: str = param(
        "fast", choices=("fast", "naive"), help="fast: cached one-position-per-layer updates; naive: full recompute"
    )

    def __attrs_post_init__(self) -> None:
        if not 1 <= len(self.kernels) <= MAX_LAYERS:
            raise ValueError(f"'kernels' must list from 1 to {MAX_LAYERS} layers, got {len(self.kernels)}")
        even = [k for k in self.kernels if k % 2 == 0]
        if even:
            raise ValueError(f"'kernels' must be odd, got {even[0]} in {self.kernels}")
        fan_in = [1 + self.z_channels] + [self.channels] * (len(self.kernels) - 1)
        weights = sum(i * self.channels * k * k for i, k in zip(fan_in, self.kernels, strict=True))
        if weights > MAX_WEIGHTS:
            raise ValueError(
                f"'channels' and 'kernels' must make at most {MAX_WEIGHTS} convolution weights (channels^2 * "
                f"kernel^2 per layer), got {weights} for channels={self.channels}, kernels={self.kernels}"
            )


@attrs.frozen
class _Layer:
    """One masked conv with its batch norm folded in (eval mode), restricted to the kernel rows up to the centre.

    ``weight '(y x i) o'`` over the flattened input window ``'b y x i'`` with y = centre + 1 rows; ``bias 'o'``.
    """

    weight: Tensor
    bias: Tensor
    kernel: int


class PixelCNNDecoder(Decoder):
    """p(x|z) over binary images ``'b 1 h w'``: a PixelCNN with z as extra input channels, Bernoulli pixels.

    ``log_prob`` uses the module's mode (batch statistics in training); ``sample`` always samples with
    eval-mode normalisation and is exact on both paths (see the module docstring).
    """

    name = "pixelcnn"
    description = "PixelCNN (masked convs, BN, ELU) with z as input channels; Bernoulli pixels"
    Params = PixelCNNParams

    def __init__(self, params: PixelCNNParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        if spec.kind != "binary" or len(spec.shape) != 3 or spec.shape[0] != 1:
            raise UsageError(
                f"pixelcnn decoder models binary images of shape (1, h, w), not {spec.kind} data of shape {spec.shape}"
            )
        _, self.height, self.width = spec.shape
        self.z_map = nn.Linear(latent_dim, params.z_channels * self.height * self.width)
        self.net = PixelCNN(params.kernels, params.channels, condition_channels=params.z_channels)

    def condition(self, z: Tensor) -> Tensor:
        """The conditioning maps of ``z 'b d'``, ``'b cz h w'``."""
        return einops.rearrange(self.z_map(z), "b (cz h w) -> b cz h w", h=self.height, w=self.width)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Bernoulli logits ``'b 1 h w'`` of each pixel given the pixels before it; ``x 'b 1 h w'``, ``z 'b d'``."""
        return self.net(x.to(z.dtype), self.condition(z))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        k = z.shape[0]
        xs = einops.repeat(x.to(z.dtype), "b c h w -> (k b) c h w", k=k)
        logits = self.logits(xs, einops.rearrange(z, "k b d -> (k b) d"))
        nll = F.binary_cross_entropy_with_logits(logits, xs, reduction="none")
        return -einops.reduce(nll, "(k b) c h w -> k b", "sum", k=k)

    def sample(self, z: Tensor) -> Tensor:
        """``x 'b 1 h w'`` for ``z 'b d'`` by the ``sampling`` parameter's path (fast by default), eval-mode BN."""
        return self.sample_with_probabilities(z)[0]

    @torch.no_grad()
    def sample_with_probabilities(
        self, z: Tensor, method: str | None = None, pixels: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """Ancestral samples ``x 'b 1 h w'`` for ``z 'b d'`` and the probability each pixel was drawn with.

        ``method`` is ``fast`` or ``naive`` (default: the ``sampling`` parameter). One uniform per pixel is drawn
        up front with ``torch.rand`` (global generator) and pixel t is ``u_t < p_t``, so both methods turn the
        same seed into the same samples. ``pixels`` stops after that many pixels in raster order (the rest stay
        0, with probability 0), for timings and tests. Normalisation runs in eval mode; the module's mode is
        restored.
        """
        method = method or self.params.sampling
        draw = {"fast": self._sample_fast, "naive": self._sample_naive}[method]
        count = self.height * self.width if pixels is None else min(pixels, self.height * self.width)
        was_training = self.training
        self.eval()
        try:
            u = torch.rand(z.shape[0], self.height, self.width, device=z.device, dtype=z.dtype)
            return draw(z, u, count)
        finally:
            self.train(was_training)

    def _sample_naive(self, z: Tensor, u: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """Reference sampler: a full forward pass for each of the first ``count`` pixels. ``z 'b d'``, ``u 'b h w'``."""
        x = z.new_zeros(z.shape[0], 1, self.height, self.width)
        probabilities = torch.zeros_like(x)
        for r, c in self._raster(count):
            p = torch.sigmoid(self.logits(x, z)[:, 0, r, c])
            probabilities[:, 0, r, c] = p
            x[:, 0, r, c] = (u[:, r, c] < p).to(x.dtype)
        return x, probabilities

    def _raster(self, count: int) -> list[tuple[int, int]]:
        """The first ``count`` positions (row, column) in raster order."""
        return [divmod(t, self.width) for t in range(count)]

    def _folded_layers(self) -> list[_Layer]:
        """Every masked conv with its eval-mode batch norm folded in, the image channel part only for the first.

        Only kernel rows up to the centre are kept: the rows below are masked out on every masked channel.
        """
        layers = []
        for layer, (conv, norm) in enumerate(zip(self.net.convs, self.net.norms, strict=True)):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            weight = conv.masked_weight() * einops.rearrange(scale, "o -> o 1 1 1")
            if layer == 0:
                weight = weight[:, : conv.masked_in]
            kernel = conv.kernel_size[0]
            rows = weight[:, :, : kernel // 2 + 1]
            flat = einops.rearrange(rows, "o i y x -> (y x i) o").contiguous()
            layers.append(_Layer(flat, norm.bias - norm.running_mean * scale, kernel))
        return layers

    def _first_layer_condition(self, z: Tensor, first: _Layer) -> Tensor:
        """The first layer's folded pre-activation minus its image part, at every position: ``'b h w o'``.

        That is the z maps' contribution plus the folded bias; it does not depend on x, so it is computed once.
        """
        conv, norm = self.net.convs[0], self.net.norms[0]
        scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        weight = conv.masked_weight()[:, conv.masked_in :] * einops.rearrange(scale, "o -> o 1 1 1")
        from_z = F.conv2d(self.condition(z), weight, padding=conv.padding)
        return einops.rearrange(from_z, "b o h w -> b h w o") + first.bias

    def _sample_fast(self, z: Tensor, u: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """Cached sampler: for pixel t (of the first ``count``), every layer is computed at position t alone.

        ``caches[l] 'b (h + 2 pad_l) (w + 2 pad_l) i'`` (channels last, so a window row is contiguous) holds
        layer l's input (the image for l = 0), zero-padded by layer l's kernel radius; positions not computed yet
        stay zero and meet masked-out weights only. ``z 'b d'``, ``u 'b h w'``.
        """
        b = z.shape[0]
        layers = self._folded_layers()
        first_bias = self._first_layer_condition(z, layers[0])
        out_weight = einops.rearrange(self.net.out.weight, "o i 1 1 -> i o")
        widths = [self.net.convs[0].masked_in] + [layer.weight.shape[1] for layer in layers[:-1]]
        caches = [
            z.new_zeros(b, self.height + 2 * (layer.kernel // 2), self.width + 2 * (layer.kernel // 2), i)
            for i, layer in zip(widths, layers, strict=True)
        ]
        pad = layers[0].kernel // 2
        probabilities = z.new_zeros(b, 1, self.height, self.width)
        for r, c in self._raster(count):
            h = self._position(layers, caches, first_bias[:, r, c], r, c)
            p = torch.sigmoid(torch.addmm(self.net.out.bias, h, out_weight))[:, 0]
            probabilities[:, 0, r, c] = p
            caches[0][:, r + pad, c + pad, 0] = (u[:, r, c] < p).to(z.dtype)
        image = caches[0][:, pad : pad + self.height, pad : pad + self.width]
        return einops.rearrange(image, "b h w 1 -> b 1 h w").clone(), probabilities

    @staticmethod
    def _position(layers: list[_Layer], caches: list[Tensor], first_bias: Tensor, r: int, c: int) -> Tensor:
        """Every layer's activation at position (r, c), ``'b o'`` of the last; writes each into the next cache.

        The window of layer l in padded coordinates spans rows r .. r + radius (the centre row) and columns
        c .. c + 2 radius; ``first_bias 'b o'`` replaces the first layer's bias (it carries z's part).
        """
        h = first_bias
        for index, layer in enumerate(layers):
            radius = layer.kernel // 2
            window = caches[index][:, r : r + radius + 1, c : c + layer.kernel]
            flat = einops.rearrange(window, "b y x i -> b (y x i)")
            h = F.elu(torch.addmm(first_bias if index == 0 else layer.bias, flat, layer.weight))
            if index + 1 < len(layers):
                pad = layers[index + 1].kernel // 2
                caches[index + 1][:, r + pad, c + pad] = h
        return h


@hookimpl
def vaezoo_register(register) -> None:
    register(PixelCNNDecoder)
