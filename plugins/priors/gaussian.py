"""Gaussian priors: ``standard`` N(0, I) and ``gaussian`` N(0, s^2 I)."""

from __future__ import annotations

import attrs
import torch
from torch.distributions import Distribution

from vaezoo.api import Prior, isotropic_normal, param


class StandardPrior(Prior):
    """p(z) = N(0, I)."""

    name = "standard"
    description = "standard normal N(0, I)"

    def __init__(self, params, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        self.register_buffer("anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    def forward(self) -> Distribution:
        return isotropic_normal(self.latent_dim, 1.0, like=self.anchor)


class GaussianPrior(StandardPrior):
    """p(z) = N(0, s^2 I) with a fixed variance s^2."""

    name = "gaussian"
    description = "isotropic normal N(0, s^2 I)"

    @attrs.frozen
    class Params:
        variance: float = param(1.0, ge=1e-6, le=10**6, help="variance s^2 of every latent dimension")

    def forward(self) -> Distribution:
        return isotropic_normal(self.latent_dim, self.params.variance, like=self.anchor)
