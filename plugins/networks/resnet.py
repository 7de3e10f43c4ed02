"""Convolutional networks for images: a residual encoder and a transposed-convolution Bernoulli decoder.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``c h w`` image.

The ``resnet`` encoder maps ``x 'b c h w'`` to a diagonal Gaussian q(z|x) (batch shape ``(b,)``, event shape
``(d,)``). Its ``arch`` parameter chooses the network: ``vaezoo`` (residual stages sized by ``channels`` and
``blocks_per_stage``) or ``he2019``, He et al. (2019)'s ResNetEncoderV2 for 1x28x28 Omniglot, whose sizes are
fixed, as in their published code.
:func:`refuse_sizes_fixed_by_arch` is how this encoder and the ``pixelcnn`` decoder refuse a size parameter that
a fixed ``arch`` would ignore.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import attrs
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from vaezoo.api import UNCHECKED, DataSpec, Decoder, Encoder, UsageError, diagonal_normal_from, param

#: Values of the ``arch`` parameter: ``vaezoo`` (sizes from the other parameters) or He et al. (2019)'s network.
ARCHS = ("vaezoo", "he2019")
HE2019_SHAPE = (1, 28, 28)


def _image_shape(spec: DataSpec, who: str) -> tuple[int, int, int]:
    if spec.kind == "tokens" or len(spec.shape) != 3:
        raise UsageError(f"{who} works on images of shape (c, h, w), not {spec.kind} data of shape {spec.shape}")
    return spec.shape  # type: ignore[return-value]


def channels_last(module: nn.Module) -> None:
    """Store ``module``'s 4-d weights and buffers channels-last (NHWC); its forward pass takes :func:`nhwc` input.

    On the CPU oneDNN convolves NHWC tensors natively and reorders NCHW ones at every convolution: a training step
    of He et al.'s encoder and PixelCNN on 50 images took 1.97 s NHWC against 2.40 s NCHW (one thread; 1.05 s and
    1.37 s in bf16)."""
    module.to(memory_format=torch.channels_last)


def nhwc(x: Tensor) -> Tensor:
    """``x 'b c h w'`` laid out channels-last (the same tensor when it already is)."""
    return x.contiguous(memory_format=torch.channels_last)


def refuse_sizes_fixed_by_arch(params: Any, names: tuple[str, ...]) -> None:
    """ValueError naming the first of the fields ``names`` set away from its default when ``params.arch`` is not
    ``vaezoo``: such an arch fixes the network's sizes, so the parameter would be silently ignored. (A value equal
    to the default cannot be told apart from an unset one, and is ignored.)"""
    if params.arch == "vaezoo":
        return
    for field in attrs.fields(type(params)):
        if field.name in names and getattr(params, field.name) != field.default:
            raise ValueError(
                f"'{field.name}' does not apply to arch={params.arch} (its sizes are fixed): leave it at its default "
                f"{field.default!r}, got {getattr(params, field.name)!r}"
            )


class ResidualBlock(nn.Module):
    """ELU(skip(x) + f(x)) with f = conv3x3-BN-ELU-conv3x3-BN; a strided 1x1 conv matches the shape when it changes.

    ``he2019=True`` is He et al.'s block: convolutions without bias and batch norm after the 1x1 skip conv.
    """

    def __init__(self, channels_in: int, channels_out: int, stride: int, he2019: bool = False) -> None:
        super().__init__()
        bias = not he2019
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=bias),
            nn.BatchNorm2d(channels_out),
            nn.ELU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=bias),
            nn.BatchNorm2d(channels_out),
        )
        self.skip: nn.Module
        if stride == 1 and channels_in == channels_out:
            self.skip = nn.Identity()
        elif he2019:
            self.skip = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False), nn.BatchNorm2d(channels_out)
            )
        else:
            self.skip = nn.Conv2d(channels_in, channels_out, 1, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.elu(self.skip(x) + self.body(x))


#: Most residual stages (after four halvings a 28x28 image is 2x2: batch norm still sees several values with a
#: batch of one), and most convolution weights (2**26 floats: 256 MiB, 1 GiB with their gradients and Adam's moments).
MAX_STAGES = 5
MAX_WEIGHTS = 2**26


@attrs.frozen
class ResNetParams:
    channels: tuple[int, ...] = param(
        (32, 64, 64),
        ge=1,
        le=512,
        help=f"channels of each residual stage (at most {MAX_STAGES} stages; each after the first halves h and w); at "
        "most 2**26 weights with blocks_per_stage",
    )
    blocks_per_stage: int = param(2, ge=1, le=16, help="residual blocks in each stage")
    arch: str = param(
        "vaezoo",
        choices=ARCHS,
        help="vaezoo: residual stages sized by channels and blocks_per_stage; he2019: He et al. (2019)'s Omniglot "
        "ResNetEncoderV2 (1x28x28 images, three 64-channel stride-2 blocks, 4x4 conv to 512, linear to mean and log "
        "variance; channels and blocks_per_stage do not apply)",
    )

    def __attrs_post_init__(self) -> None:
        refuse_sizes_fixed_by_arch(self, ("channels", "blocks_per_stage"))
        if len(self.channels) > MAX_STAGES:
            raise ValueError(f"'channels' must list at most {MAX_STAGES} stages, got {len(self.channels)}")
        widths = [1, *self.channels]  # one image channel in; more only add to the first convolution
        weights = sum(
            9 * c_in * c + 9 * (2 * self.blocks_per_stage - 1) * c * c for c_in, c in itertools.pairwise(widths)
        )
        if weights > MAX_WEIGHTS:
            raise ValueError(
                f"'channels' and 'blocks_per_stage' must make at most {MAX_WEIGHTS} convolution weights, got "
                f"{weights} for channels={self.channels}, blocks_per_stage={self.blocks_per_stage}"
            )


class ResNetEncoder(Encoder):
    """Residual conv stages to a diagonal Gaussian q(z|x): ``x 'b c h w' -> q(z|x)``.

    ``arch=vaezoo``: ``len(channels)`` stages of ``blocks_per_stage`` residual blocks (every stage after the first
    starts with a stride-2 block), flatten, and a linear map to (loc, log scale).

    ``arch=he2019``: He et al.'s ResNetEncoderV2 for ``x 'b 1 28 28'``: three bias-free residual blocks of stride 2
    with a batch-normed 1x1 skip conv, 1 -> 64 -> 64 -> 64 channels and 28 -> 14 -> 7 -> 4 pixels, then a 4x4
    valid conv (64 -> 512, no bias), BN, ELU, and a linear map 512 -> 2d read as (mean, log variance), as theirs
    is. Initialisation as theirs: convs normal with standard deviation sqrt(2 / (k * k * out)), batch norm weight 1
    and bias 0, the final linear map Xavier-uniform with bias 0. 752,448 parameters for d = 32.
    """

    name = "resnet"
    description = "residual conv blocks to a diagonal Gaussian posterior"
    Params = ResNetParams

    def __init__(self, params: ResNetParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        shape = _image_shape(spec, "resnet encoder")
        build = _he2019_network if params.arch == "he2019" else _residual_stages
        self.features, self.head = build(params, shape, latent_dim)
        channels_last(self.features)
        self.log_variance = params.arch == "he2019"

    def forward(self, x: Tensor) -> Distribution:
        features = self.head(self.features(nhwc(x.float())).flatten(1))
        return diagonal_normal_from(features, log_variance=self.log_variance)


def _residual_stages(
    params: ResNetParams, shape: tuple[int, int, int], latent_dim: int
) -> tuple[nn.Sequential, nn.Linear]:
    """The ``vaezoo`` encoder's features ``'b c h w' -> 'b c2 h2 w2'`` and head ``'b (c2 h2 w2)' -> 'b (2 d)'``."""
    c, h, w = shape
    layers: list[nn.Module] = []
    channels_in = c
    for stage, channels in enumerate(params.channels):
        for block in range(params.blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(ResidualBlock(channels_in, channels, stride))
            channels_in = channels
    features = nn.Sequential(*layers)
    with torch.no_grad():
        flat = features(torch.zeros(2, c, h, w)).flatten(1).shape[1]
    return features, nn.Linear(flat, 2 * latent_dim)


def _he2019_network(
    params: ResNetParams, shape: tuple[int, int, int], latent_dim: int
) -> tuple[nn.Sequential, nn.Linear]:
    """He et al.'s ResNetEncoderV2: features ``'b 1 28 28' -> 'b 512 1 1'`` and head ``'b 512' -> 'b (2 d)'``."""
    if shape != HE2019_SHAPE:
        raise UsageError(
            f"resnet encoder with arch=he2019 works on images of shape {HE2019_SHAPE} (He et al.'s Omniglot "
            f"network), not {shape}"
        )
    hidden = 512
    features = nn.Sequential(
        *(ResidualBlock(c_in, 64, stride=2, he2019=True) for c_in in (1, 64, 64)),
        nn.Conv2d(64, hidden, 4, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ELU(),
    )
    head = nn.Linear(hidden, 2 * latent_dim)
    for module in features.modules():
        if isinstance(module, nn.Conv2d):  # std sqrt(2 / (k * k * out)); batch norm starts at weight 1, bias 0
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    nn.init.xavier_uniform_(head.weight)
    nn.init.zeros_(head.bias)
    return features, head


@attrs.frozen
class DeconvParams:
    channels: int = param(64, ge=1, le=512, help="channels of the first feature map (halved at each upsampling)")
    upsamplings: int = param(
        2, ge=0, le=5, help="stride-2 transposed convolutions (each doubles h and w; 5 start 28x28 images at 1x1)"
    )


class DeconvDecoder(Decoder):
    """z -> Bernoulli pixels through transposed convolutions: the weak, non-autoregressive baseline."""

    name = "deconv"
    description = "transposed convolutions to independent Bernoulli pixels (non-autoregressive)"
    Params = DeconvParams

    def __init__(self, params: DeconvParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        c, h, w = _image_shape(spec, "deconv decoder")
        if spec.kind != "binary":
            raise UsageError(f"deconv decoder models binary pixels, not {spec.kind} data")
        scale = 2**params.upsamplings
        self.start = (params.channels, math.ceil(h / scale), math.ceil(w / scale))
        self.project = nn.Linear(latent_dim, math.prod(self.start))
        layers: list[nn.Module] = []
        channels = params.channels
        for _ in range(params.upsamplings):
            layers += [nn.ELU(), nn.ConvTranspose2d(channels, max(channels // 2, 1), 4, stride=2, padding=1)]
            channels = max(channels // 2, 1)
        layers += [nn.ELU(), nn.Conv2d(channels, c, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        channels_last(self.net)

    def logits(self, z: Tensor) -> Tensor:
        """Pixel logits for ``z '... d'``: ``'... c h w'`` (cropped to the data's size)."""
        lead = z.shape[:-1]
        features = self.project(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        c, h, w = self.spec.shape
        out = self.net(nhwc(features))[..., :h, :w]
        return out.reshape(*lead, c, h, w)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        logits = self.logits(z).float()  # summed over pixels: float32 under bf16 autocast too
        return Independent(Bernoulli(logits=logits, **UNCHECKED), 3, **UNCHECKED).log_prob(x.to(logits.dtype))

    def sample(self, z: Tensor) -> Tensor:
        return Bernoulli(logits=self.logits(z)).sample()
