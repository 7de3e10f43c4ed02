"""Multi-layer perceptrons: a diagonal-Gaussian encoder and a Gaussian or Bernoulli decoder.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``f`` flattened data features.
"""

from __future__ import annotations

import itertools
import math

import attrs
import einops
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from vaezoo.api import UNCHECKED, DataSpec, Decoder, Encoder, UsageError, diagonal_normal_from, param


def perceptron(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(nn.ELU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def _features(spec: DataSpec, who: str) -> int:
    if spec.kind == "tokens":
        raise UsageError(f"{who} works on real or binary vectors, not token ids; use a sequence network")
    return math.prod(spec.shape)


#: Widest hidden layer, most hidden layers, and most weights between hidden layers (2**26 floats: 256 MiB, 1 GiB
#: with their gradients and Adam's moments) of a perceptron. A decoder's layers are narrower: IW-NLL runs it on
#: eval.batch_size x eval.iw_chunk rows at once (50,000 by default; 3.6 GB at its peak for a width of 8192).
MAX_WIDTH = 65536
MAX_DECODER_WIDTH = 16384
MAX_LAYERS = 64
MAX_HIDDEN_WEIGHTS = 2**26
WIDTHS_NOTE = f"; at most {MAX_LAYERS} layers and 2**26 weights between them"


def check_widths(name: str, widths: tuple[int, ...]) -> None:
    """ValueError naming the parameter ``name`` unless the hidden ``widths`` fit: at most ``MAX_LAYERS`` layers
    with at most ``MAX_HIDDEN_WEIGHTS`` weights between consecutive ones (each width is bounded by its field)."""
    if len(widths) > MAX_LAYERS:
        raise ValueError(f"'{name}' must list at most {MAX_LAYERS} layers, got {len(widths)}")
    weights = sum(a * b for a, b in itertools.pairwise(widths))
    if weights > MAX_HIDDEN_WEIGHTS:
        raise ValueError(
            f"'{name}' must hold at most {MAX_HIDDEN_WEIGHTS} weights between its layers (the sum of the products "
            f"of consecutive widths), got {weights} for {widths!r}"
        )


@attrs.frozen
class MLPParams:
    hidden: tuple[int, ...] = param(
        (256, 256), ge=1, le=MAX_WIDTH, help=f"hidden layer widths, e.g. 256,256 (empty: linear){WIDTHS_NOTE}"
    )

    def __attrs_post_init__(self) -> None:
        check_widths("hidden", self.hidden)


class MLPEncoder(Encoder):
    """x -> N(mu(x), diag sigma(x)^2) through an MLP on the flattened input."""

    name = "mlp"
    description = "MLP to a diagonal Gaussian posterior"
    Params = MLPParams

    def __init__(self, params: MLPParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        self.net = perceptron([_features(spec, "mlp encoder"), *params.hidden, 2 * latent_dim])

    def forward(self, x: Tensor) -> Distribution:
        return diagonal_normal_from(self.net(einops.rearrange(x, "b ... -> b (...)").float()))


@attrs.frozen
class MLPDecoderParams:
    hidden: tuple[int, ...] = param(
        (256, 256), ge=1, le=MAX_DECODER_WIDTH, help=f"hidden layer widths, e.g. 256,256 (empty: linear){WIDTHS_NOTE}"
    )
    likelihood: str = param(
        "auto",
        choices=("auto", "gaussian", "bernoulli"),
        help="auto: bernoulli for binary data, else gaussian",
    )

    def __attrs_post_init__(self) -> None:
        check_widths("hidden", self.hidden)


class MLPDecoder(Decoder):
    """z -> p(x|z), a factorised Gaussian (learned per-feature variance) or Bernoulli over the features."""

    name = "mlp"
    description = "MLP to a factorised Gaussian or Bernoulli likelihood"
    Params = MLPDecoderParams

    def __init__(self, params: MLPDecoderParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        features = _features(spec, "mlp decoder")
        self.likelihood = params.likelihood
        if self.likelihood == "auto":
            self.likelihood = "bernoulli" if spec.kind == "binary" else "gaussian"
        if self.likelihood == "bernoulli" and spec.kind != "binary":
            raise UsageError(f"decoder {self.name!r}: likelihood 'bernoulli' needs binary data, not {spec.kind} data")
        self.net = perceptron([latent_dim, *params.hidden, features])
        if self.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(features))

    def distribution(self, z: Tensor) -> Distribution:
        """p(x|z) over flattened features, batch shape ``z.shape[:-1]``."""
        out = self.net(z).float()  # summed over features: float32 under bf16 autocast too
        if self.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=out, **UNCHECKED), 1, **UNCHECKED)
        return Independent(Normal(out, self.log_scale.exp(), **UNCHECKED), 1, **UNCHECKED)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        flat = einops.rearrange(x, "b ... -> b (...)").to(z.dtype)
        return self.distribution(z).log_prob(flat)  # 'k b f' against 'b f' broadcasts to 'k b'

    def sample(self, z: Tensor) -> Tensor:
        flat = self.distribution(z).sample()
        return flat.reshape(z.shape[0], *self.spec.shape)
