"""Convolutional networks for images: a residual encoder and a transposed-convolution Bernoulli decoder.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``c h w`` image.
"""

from __future__ import annotations

import itertools
import math

import attrs
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from vaezoo import hookimpl
from vaezoo.distributions import diagonal_normal_from
from vaezoo.errors import UsageError
from vaezoo.interfaces import DataSpec, Decoder, Encoder
from vaezoo.params import param


def _image_shape(spec: DataSpec, who: str) -> tuple[int, int, int]:
    if spec.kind == "tokens" or len(spec.shape) != 3:
        raise UsageError(f"{who} works on images of shape (c, h, w), not {spec.kind} data of shape {spec.shape}")
    return spec.shape  # type: ignore[return-value]


class ResidualBlock(nn.Module):
    """x + f(x) with f = conv-BN-ELU-conv-BN; a strided 1x1 conv matches the shape when it changes."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1),
            nn.BatchNorm2d(channels_out),
            nn.ELU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1),
            nn.BatchNorm2d(channels_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and channels_in == channels_out
            else nn.Conv2d(channels_in, channels_out, 1, stride=stride)
        )

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

    def __attrs_post_init__(self) -> None:
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
    """Residual conv stages to a diagonal Gaussian q(z|x) (the paper's Omniglot encoder)."""

    name = "resnet"
    description = "residual conv blocks to a diagonal Gaussian posterior"
    Params = ResNetParams

    def __init__(self, params: ResNetParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        c, h, w = _image_shape(spec, "resnet encoder")
        layers: list[nn.Module] = []
        channels_in = c
        for stage, channels in enumerate(params.channels):
            for block in range(params.blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(ResidualBlock(channels_in, channels, stride))
                channels_in = channels
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.features(torch.zeros(2, c, h, w)).flatten(1).shape[1]
        self.head = nn.Linear(flat, 2 * latent_dim)

    def forward(self, x: Tensor) -> Distribution:
        return diagonal_normal_from(self.head(self.features(x.float()).flatten(1)))


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

    def logits(self, z: Tensor) -> Tensor:
        """Pixel logits for ``z '... d'``: ``'... c h w'`` (cropped to the data's size)."""
        lead = z.shape[:-1]
        features = self.project(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        c, h, w = self.spec.shape
        out = self.net(features)[..., :h, :w]
        return out.reshape(*lead, c, h, w)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return Independent(Bernoulli(logits=self.logits(z)), 3).log_prob(x.to(z.dtype))

    def sample(self, z: Tensor) -> Tensor:
        return Bernoulli(logits=self.logits(z)).sample()


@hookimpl
def vaezoo_register(register) -> None:
    register(ResNetEncoder)
    register(DeconvDecoder)
