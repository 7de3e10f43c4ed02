"""A PixelCNN decoder for binary images (docs/maths.md section 7) with exact fast and naive ancestral sampling.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``c h w`` image (``c`` also the channels of a
hidden layer), ``o i`` output and input channels of a convolution, ``y x`` kernel rows and columns.

Contract: ``log_prob(x 'b 1 h w', z 'k b d') -> 'k b'`` (float32 nats, also under bf16 autocast) and
``sample(z 'b d') -> x 'b 1 h w'``, Bernoulli pixels autoregressive in raster order. z enters as extra input
channels: a linear map of z to ``cz`` maps of size h x w that are concatenated to the image; the first (type A)
masked convolution sees them through its whole, unmasked kernel, since they do not depend on x. Type A hides the
pixel itself, type B lets a unit see its own position, so the logit of pixel i depends on pixels before i only.

Skip decoder (``skip_pixelcnn``): the Skip-VAE of Dieng et al. (2019) feeds z to every layer of the generative
network and to its output. The ``pixelcnn`` decoder's z reaches the first layer only, so here every masked
convolution and the output 1x1 convolution read ``z_channels`` maps of z of their own as extra, unmasked input
channels, each group made by its own linear map of z, as in their reference code (``models_img_skip.py``, where
each gated layer has its own ``z_linears[i]`` and the output layer one more). Only the ``vaezoo`` arch has a skip
version.

The ``arch`` parameter chooses the network:

* ``vaezoo`` (:class:`PixelCNN`): a masked convolution, batch norm and ELU per entry of ``kernels``, then a 1x1
  convolution to one logit per pixel.
* ``he2019`` (:class:`He2019PixelCNN`): He et al. (2019)'s PixelCNN for Omniglot (their published code's
  PixelCNNDecoderV2 "large"): 4 z maps, a type A block,
  12 residual bottleneck blocks with type B masked convolutions, 11 "direct connect" bottleneck blocks that carry
  the output of block i - 3 to the input of block i, and a 1x1 conv head. 894,400 parameters for 28x28 images and
  d = 32. Its sizes are fixed; unlike theirs it accepts any 1 x h x w binary image (4 h w z maps).

One structure description serves every evaluation: each network's ``run(evaluator, x, condition)`` applies its
layers through an evaluator, :class:`WholeMaps` (the modules themselves on whole maps ``'b c h w'``: training,
``log_prob``, the naive sampler) or :class:`AtPosition` (one position ``(r, c)``, vectors ``'b c'``: the fast
sampler). In eval mode batch norm is a per-channel affine map and 1x1 convolutions, ELU and additions are
position-wise, so at position t every layer is a function of its inputs at t and, for a masked convolution, of
its input window, which :class:`AtPosition` keeps in a cache.

Sampling draws pixels in raster order. Two exact paths give the same draws for the same random numbers:

* ``naive``: recompute the whole network on the partial image for every pixel (h * w full passes; the reference).
* ``fast``: compute every layer at position t only, caching each masked convolution's input; every position
  before t is final once pixel t is drawn, so a whole sample costs about the arithmetic of one forward pass
  (in h * w * depth small steps).

Both paths sample with the normalisation in eval mode (running statistics), whatever the module's mode: train-mode
batch statistics of a partly drawn batch define no sensible distribution and would update the running statistics
at every pixel. The module's mode is restored afterwards.

The autoregressive property is exact in eval mode. In training mode batch norm normalises with statistics pooled
over the batch and every position, so each logit also depends (very weakly) on every pixel of the batch, as in
any PixelCNN trained with batch norm (the paper's setup).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal, Protocol

import attrs
import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.api import DataSpec, Decoder, UsageError, param
from vaezoo_plugins.networks.resnet import ARCHS, channels_last, nhwc, refuse_sizes_fixed_by_arch

PAPER_KERNELS = (7, 7, 7, 7, 7, 5, 5, 5, 5, 3, 3, 3, 3)
#: Hidden channels and z maps of He et al.'s decoder (its kernels are ``PAPER_KERNELS``).
HE2019_CHANNELS = 64
HE2019_Z_CHANNELS = 4
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


class Evaluator(Protocol):
    """How a network's ``run`` applies its convolutions (see the module docstring)."""

    def conv(
        self, conv: nn.Conv2d, h: Tensor, condition: Tensor | None = None, norm: nn.BatchNorm2d | None = None
    ) -> Tensor:
        """A masked or 1x1 convolution of ``h``, then ``norm`` if given. ``condition 'b cz h w'`` (whole maps)
        are extra input channels after those of ``h``, unmasked in a masked convolution."""
        ...


class WholeMaps:
    """Evaluates on whole maps ``h 'b c h w'`` with the modules themselves, in their own mode."""

    def conv(
        self, conv: nn.Conv2d, h: Tensor, condition: Tensor | None = None, norm: nn.BatchNorm2d | None = None
    ) -> Tensor:
        if condition is not None:
            h = torch.cat([h.to(condition.dtype), condition], dim=1)
        out = conv(h)
        return out if norm is None else norm(out)


WHOLE_MAPS = WholeMaps()


@attrs.frozen
class _Folded:
    """A convolution as :class:`AtPosition` applies it, with its eval-mode batch norm folded in.

    ``weight '(y x i) o'`` over the flattened input window ``'b y x i'``: for a masked convolution of radius p its
    rows up to the centre (the rows below are masked out on every masked channel), on the masked input channels;
    for a 1x1 convolution ``'i o'``. ``bias``: ``'o'``, or ``'b h w o'`` when it carries the unmasked
    (conditioning) channels' part at every position, or None. ``inputs 'b (h + 2 p) (w + 2 p) i'`` (masked
    convolutions only): the cache of the masked input channels, zero-padded, channels last so that a window row
    is contiguous.
    """

    weight: Tensor
    bias: Tensor | None
    inputs: Tensor | None
    radius: int


class AtPosition:
    """Evaluates at one position ``(r, c)`` (set by :meth:`move_to`) on vectors ``h 'b c'``, eval-mode batch norm.

    A masked convolution writes its input ``h`` into its cache at (r, c) and applies its kernel to the window
    there; positions not computed yet are zero and meet masked-out weights only. Positions must be visited in
    raster order, each once. Each convolution is prepared at its first call (the conditioning channels' part of
    the output, of a masked or a 1x1 convolution, is computed there for every position: it does not depend on x).
    """

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.r = self.c = 0
        self._folded: dict[nn.Conv2d, _Folded] = {}

    def move_to(self, r: int, c: int) -> None:
        self.r, self.c = r, c

    def conv(
        self, conv: nn.Conv2d, h: Tensor, condition: Tensor | None = None, norm: nn.BatchNorm2d | None = None
    ) -> Tensor:
        folded = self._folded.get(conv)
        if folded is None:
            folded = self._folded[conv] = self._fold(conv, h, condition, norm)
        if folded.inputs is not None:
            self.write(conv, h)
            window = folded.inputs[:, self.r : self.r + folded.radius + 1, self.c : self.c + 2 * folded.radius + 1]
            h = window.reshape(window.shape[0], -1)
        bias = folded.bias
        if bias is None:
            return h @ folded.weight
        return torch.addmm(bias if bias.dim() == 1 else bias[:, self.r, self.c], h, folded.weight)

    def write(self, conv: nn.Conv2d, h: Tensor) -> None:
        """Set the masked input ``h 'b i'`` of ``conv`` at the current position (for the sampler: a drawn pixel)."""
        folded = self._folded[conv]
        folded.inputs[:, self.r + folded.radius, self.c + folded.radius] = h

    def _fold(self, conv: nn.Conv2d, h: Tensor, condition: Tensor | None, norm: nn.BatchNorm2d | None) -> _Folded:
        masked = isinstance(conv, MaskedConv2d)
        if not masked and conv.kernel_size != (1, 1):
            raise TypeError(f"only masked and 1x1 convolutions can be evaluated at one position, not {conv}")
        weight = conv.masked_weight() if masked else conv.weight
        bias = conv.bias
        if norm is not None:
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            weight = weight * einops.rearrange(scale, "o -> o 1 1 1")
            bias = norm.bias - norm.running_mean * scale + (0 if bias is None else bias * scale)
        own = conv.masked_in if masked else h.shape[1]  # input channels of h; the conditioning channels follow
        radius = conv.kernel_size[0] // 2
        if condition is not None:
            maps = F.conv2d(condition, weight[:, own:], padding=radius)
            bias = einops.rearrange(maps, "b o h w -> b h w o") + (0 if bias is None else bias)
        if not masked:
            return _Folded(einops.rearrange(weight[:, :own], "o i 1 1 -> i o").contiguous(), bias, None, 0)
        rows = weight[:, :own, : radius + 1]
        inputs = h.new_zeros(h.shape[0], self.height + 2 * radius, self.width + 2 * radius, conv.masked_in)
        return _Folded(einops.rearrange(rows, "o i y x -> (y x i) o").contiguous(), bias, inputs, radius)


class Network(nn.Module, ABC):
    """A PixelCNN given by ``run``: ``forward(x 'b 1 h w', condition 'b cz h w' or None) -> logits 'b 1 h w'``."""

    @property
    @abstractmethod
    def image_conv(self) -> MaskedConv2d:
        """The masked convolution that reads the image (its first ``masked_in`` input channels)."""

    @abstractmethod
    def run(self, ev: Evaluator, x: Tensor, condition: Tensor | None) -> Tensor:
        """The logits of ``x``, applying every convolution and batch norm through ``ev``."""

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        return self.run(WHOLE_MAPS, x, condition)


class PixelCNN(Network):
    """Masked conv + batch norm + ELU per entry of ``kernels``, then a 1x1 conv to one logit per pixel.

    ``forward(x 'b c h w', condition 'b cz h w' or None) -> logits 'b c h w'``, where ``c = channels_in`` is
    the image's channel count (1 here) and ``cz`` is ``condition_channels``, all read by the first layer; with
    ``skip`` (Skip-VAE) ``cz`` is ``(n condition_channels)``: n = layers + 1 groups of ``condition_channels``
    maps, one read by each masked layer, in order, and the last by the output conv. With ``first_mask="A"`` the
    logit of pixel i depends on image pixels strictly before i in raster order; with ``"B"`` on those up to and
    including i.
    """

    def __init__(
        self,
        kernels: tuple[int, ...],
        channels: int,
        channels_in: int = 1,
        condition_channels: int = 0,
        first_mask: MaskType = "A",
        skip: bool = False,
    ) -> None:
        super().__init__()
        if channels_in != 1:
            raise ValueError("the raster masks here are for one image channel")
        self.kernels, self.condition_channels, self.skip = kernels, condition_channels, skip
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        later = condition_channels if skip else 0  # conditioning channels of every layer after the first
        fan_in = channels_in + condition_channels
        for layer, kernel in enumerate(kernels):
            mask_type: MaskType = first_mask if layer == 0 else "B"
            masked_in = channels_in if layer == 0 else channels
            self.convs.append(MaskedConv2d(fan_in, channels, kernel, mask_type, masked_in))
            self.norms.append(nn.BatchNorm2d(channels))
            fan_in = channels + later
        self.out = nn.Conv2d(fan_in, channels_in, 1)

    @property
    def image_conv(self) -> MaskedConv2d:
        return self.convs[0]

    def run(self, ev: Evaluator, x: Tensor, condition: Tensor | None) -> Tensor:
        *layer_conditions, out_condition = self.conditions(condition)
        h = x
        for conv, norm, own in zip(self.convs, self.norms, layer_conditions, strict=True):
            h = F.elu(ev.conv(conv, h, own, norm))
        return ev.conv(self.out, h, out_condition)

    def conditions(self, condition: Tensor | None) -> list[Tensor | None]:
        """The conditioning maps of each masked layer, then of the output conv: all of ``condition`` to the first
        layer and none to the others, or with ``skip`` one group of ``condition_channels`` maps to each."""
        if condition is None or not self.skip:
            return [condition] + [None] * len(self.convs)
        return list(condition.split(self.condition_channels, dim=1))


class Bottleneck(nn.Module):
    """He et al.'s residual block, ``h 'b c h w' -> 'b c h w'``: ELU(h + BN(conv1x1(ELU(BN(masked conv type B
    (ELU(BN(conv1x1(h))))))))), the inner convolutions at half the channels, every convolution without bias."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        half = channels // 2
        self.reduce, self.reduce_norm = nn.Conv2d(channels, half, 1, bias=False), nn.BatchNorm2d(half)
        self.masked, self.masked_norm = MaskedConv2d(half, half, kernel, "B", half), nn.BatchNorm2d(half)
        self.expand, self.expand_norm = nn.Conv2d(half, channels, 1, bias=False), nn.BatchNorm2d(channels)

    def run(self, ev: Evaluator, h: Tensor) -> Tensor:
        inner = F.elu(ev.conv(self.reduce, h, norm=self.reduce_norm))
        inner = F.elu(ev.conv(self.masked, inner, norm=self.masked_norm))
        return F.elu(h + ev.conv(self.expand, inner, norm=self.expand_norm))


class He2019PixelCNN(Network):
    """He et al. (2019)'s PixelCNN "large" (see the module docstring), on the image and ``condition_channels`` maps.

    Block 0: masked conv type A (k 7, image channel masked, condition channels not) -> BN -> ELU. Blocks 1-12:
    :class:`Bottleneck` with the kernels ``PAPER_KERNELS[1:]``. Before block i >= 3 the output of block i - 3
    through direct block i - 3 is added to its input; after block 12, the output of block 10 through the last
    direct block (kernels ``PAPER_KERNELS[1:-1]``). Head: conv1x1 -> BN -> ELU -> conv1x1 to one logit, no biases.
    Initialisation as theirs: masked and bottleneck convolutions normal with standard deviation
    sqrt(2 / (k * k * out)), the head's convolutions torch's default, batch norm weight 1 and bias 0.
    """

    #: Main blocks between the input of block i and the direct connection into it.
    SKIP = 3

    def __init__(self, condition_channels: int) -> None:
        super().__init__()
        channels, kernels = HE2019_CHANNELS, PAPER_KERNELS
        self.first = MaskedConv2d(1 + condition_channels, channels, kernels[0], "A", masked_in=1)
        self.first_norm = nn.BatchNorm2d(channels)
        self.blocks = nn.ModuleList(Bottleneck(channels, kernel) for kernel in kernels[1:])
        self.direct = nn.ModuleList(Bottleneck(channels, kernel) for kernel in kernels[1:-1])
        self.head, self.head_norm = nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        self.out = nn.Conv2d(channels, 1, 1, bias=False)
        for module in [self.first, *self.blocks.modules(), *self.direct.modules()]:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @property
    def image_conv(self) -> MaskedConv2d:
        return self.first

    def run(self, ev: Evaluator, x: Tensor, condition: Tensor | None) -> Tensor:
        h = F.elu(ev.conv(self.first, x, condition, self.first_norm))
        outputs = [h]
        for i, block in enumerate(self.blocks, start=1):
            if i >= self.SKIP:
                h = h + self.direct[i - self.SKIP].run(ev, outputs[i - self.SKIP])
            h = block.run(ev, h)
            outputs.append(h)
        h = h + self.direct[-1].run(ev, outputs[-self.SKIP])
        return ev.conv(self.out, F.elu(ev.conv(self.head, h, norm=self.head_norm)))


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
    arch: str = param(
        "vaezoo",
        choices=ARCHS,
        help="vaezoo: the masked-conv stack sized by kernels, channels and z_channels; he2019: He et al. (2019)'s "
        "Omniglot PixelCNNDecoderV2 'large' (4 z maps, 13 blocks of 64 channels with residual bottlenecks and direct "
        "connections; kernels, channels and z_channels do not apply)",
    )

    def __attrs_post_init__(self) -> None:
        refuse_sizes_fixed_by_arch(self, ("kernels", "channels", "z_channels"))
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


class PixelCNNDecoder(Decoder):
    """p(x|z) over binary images ``'b 1 h w'``: a PixelCNN with z as extra input channels, Bernoulli pixels.

    ``log_prob`` uses the module's mode (batch statistics in training); ``sample`` always samples with
    eval-mode normalisation and is exact on both paths (see the module docstring). The log-likelihood is
    BCE-with-logits of float32 logits; He et al. compute it from sigmoid probabilities with eps 1e-12, the one
    deliberate difference of ``arch=he2019`` from their decoder (theirs loses precision for confident pixels).
    """

    name = "pixelcnn"
    description = "PixelCNN (masked convs, BN, ELU) with z as input channels; Bernoulli pixels"
    Params = PixelCNNParams
    #: Skip-VAE: z conditions every layer and the output (:class:`SkipPixelCNNDecoder`), not the first layer only.
    skip: ClassVar[bool] = False

    def __init__(self, params: PixelCNNParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        if spec.kind != "binary" or len(spec.shape) != 3 or spec.shape[0] != 1:
            raise UsageError(
                f"{self.name} decoder models binary images of shape (1, h, w), not {spec.kind} data of shape "
                f"{spec.shape}"
            )
        _, self.height, self.width = spec.shape
        self.net: Network
        if params.arch == "he2019":
            if self.skip:
                raise UsageError(f"{self.name} has no he2019 arch: z conditions every layer of the vaezoo arch only")
            self.z_map = nn.Linear(latent_dim, HE2019_Z_CHANNELS * self.height * self.width)
            nn.init.xavier_uniform_(self.z_map.weight)
            nn.init.zeros_(self.z_map.bias)
            self.net = He2019PixelCNN(condition_channels=HE2019_Z_CHANNELS)
        else:
            self.z_map = nn.Linear(latent_dim, self.z_maps(params, latent_dim) * self.height * self.width)
            self.net = PixelCNN(params.kernels, params.channels, condition_channels=params.z_channels, skip=self.skip)
        channels_last(self.net)

    def z_maps(self, params: PixelCNNParams, latent_dim: int) -> int:
        """How many h x w maps ``z_map`` makes of z in the vaezoo arch: ``z_channels``, or with ``skip`` that many
        for each masked layer and for the output conv, each group its own linear map of z (as Dieng et al.'s
        code has it); a UsageError when these maps' weights exceed ``MAX_WEIGHTS``."""
        if not self.skip:
            return params.z_channels
        maps = params.z_channels * (len(params.kernels) + 1)
        if maps * self.height * self.width * latent_dim > MAX_WEIGHTS:
            raise UsageError(
                f"{self.name}'s maps of z must have at most {MAX_WEIGHTS} weights ((layers + 1) * z_channels * h * w * "
                f"latent_dim), got {maps * self.height * self.width * latent_dim} for {len(params.kernels)} layers, "
                f"z_channels={params.z_channels}, {self.height} x {self.width} images and latent_dim={latent_dim}"
            )
        return maps

    def condition(self, z: Tensor) -> Tensor:
        """The conditioning maps of ``z 'b d'``, ``'b cz h w'`` (with ``skip``, ``cz`` is ``(n z_channels)``: the
        groups of :meth:`PixelCNN.conditions`)."""
        return einops.rearrange(self.z_map(z), "b (cz h w) -> b cz h w", h=self.height, w=self.width)

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Bernoulli logits ``'b 1 h w'`` of each pixel given the pixels before it; ``x 'b 1 h w'``, ``z 'b d'``."""
        return self.net(nhwc(x), nhwc(self.condition(z)))

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        k = z.shape[0]
        xs = einops.repeat(x, "b c h w -> (k b) c h w", k=k)
        logits = self.logits(xs, einops.rearrange(z, "k b d -> (k b) d"))
        # at least float32 (bf16 under autocast): the sum over pixels must not be rounded to a few digits
        dtype = torch.promote_types(logits.dtype, torch.float32)
        logits, xs = logits.to(dtype), xs.to(dtype)
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

    def _sample_fast(self, z: Tensor, u: Tensor, count: int) -> tuple[Tensor, Tensor]:
        """Cached sampler: for pixel t (of the first ``count``), the network is run at position t alone through
        :class:`AtPosition`. ``z 'b d'``, ``u 'b h w'``."""
        condition = self.condition(z)
        at = AtPosition(self.height, self.width)
        x = z.new_zeros(z.shape[0], 1, self.height, self.width)
        probabilities = torch.zeros_like(x)
        # the image's own pixel t is not drawn yet when its logit is computed; type A masks it out
        undrawn = z.new_zeros(z.shape[0], 1)
        for r, c in self._raster(count):
            at.move_to(r, c)
            p = torch.sigmoid(self.net.run(at, undrawn, condition)[:, 0])
            probabilities[:, 0, r, c] = p
            x[:, 0, r, c] = (u[:, r, c] < p).to(x.dtype)
            at.write(self.net.image_conv, x[:, :, r, c])
        return x, probabilities

    def _raster(self, count: int) -> list[tuple[int, int]]:
        """The first ``count`` positions (row, column) in raster order."""
        return [divmod(t, self.width) for t in range(count)]


class SkipPixelCNNDecoder(PixelCNNDecoder):
    """Skip-VAE's PixelCNN decoder: the ``pixelcnn`` decoder (vaezoo arch) with maps of z concatenated to the input
    of every masked layer and of the output conv, each from its own linear map of z (see the module docstring)."""

    name = "skip_pixelcnn"
    description = "Skip-VAE: the pixelcnn decoder with z maps fed to every layer and to the output conv"
    skip = True
