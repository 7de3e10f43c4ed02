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

from vaezoo import hookimpl
from vaezoo.distributions import diagonal_normal_from
from vaezoo.errors import UsageError
from vaezoo.interfaces import DataSpec, Decoder, Encoder
from vaezoo.params import param


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


@attrs.frozen
class MLPParams:
    hidden: tuple[int, ...] = param((256, 256), help="hidden layer widths, e.g. 256,256 (empty: linear)")


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
    hidden: tuple[int, ...] = param((256, 256), help="hidden layer widths, e.g. 256,256 (empty: linear)")
    likelihood: str = param(
        "auto",
        choices=("auto", "gaussian", "bernoulli"),
        help="auto: bernoulli for binary data, else gaussian",
    )


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
        self.net = perceptron([latent_dim, *params.hidden, features])
        if self.likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(features))

    def distribution(self, z: Tensor) -> Distribution:
        """p(x|z) over flattened features, batch shape ``z.shape[:-1]``."""
        out = self.net(z)
        if self.likelihood == "bernoulli":
            return Independent(Bernoulli(logits=out), 1)
        return Independent(Normal(out, self.log_scale.exp()), 1)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        flat = einops.rearrange(x, "b ... -> b (...)").to(z.dtype)
        return self.distribution(z).log_prob(flat)  # 'k b f' against 'b f' broadcasts to 'k b'

    def sample(self, z: Tensor) -> Tensor:
        flat = self.distribution(z).sample()
        return flat.reshape(z.shape[0], *self.spec.shape)


@hookimpl
def vaezoo_register(register) -> None:
    register(MLPEncoder)
    register(MLPDecoder)
