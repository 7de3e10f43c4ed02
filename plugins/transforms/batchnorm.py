"""BN-VAE (Zhu et al. 2020): the posterior means batch-normalised to a fixed scale γ, a floor under the expected KL.

With q(z|x) = N(μ(x), diag σ²(x)) and the prior N(0, I), the KL of dim j is ½(μ_j² + σ_j² − log σ_j² − 1) ≥ ½μ_j²,
since s − log s − 1 ≥ 0. Normalising μ_j over the batch and scaling it by a γ that is not trained gives the batch
mean of μ_j² = γ²·v_j/(v_j + ε) + β_j² (β_j the trained shift, v_j the batch's biased variance of the encoder's
means, ε = 1e-5), so in training the batch's mean KL is at least d·γ²/2 nats whenever the encoder's means spread
by much more than sqrt(ε) ≈ 0.003; means equal across the batch get none of it. In evaluation the running
statistics stand in for the batch's, and the floor holds only as far as they match the evaluated data
(docs/maths.md, "BN-VAE"). The constants are BN-VAE's: torch's ``BatchNorm1d`` defaults (ε = 1e-5, momentum 0.1).
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from vaezoo.api import UNCHECKED, PosteriorTransform, is_diagonal_normal, param


@attrs.frozen
class BatchNormParams:
    gamma: float = param(
        0.6, gt=0, le=100, help="the fixed scale γ of the normalised posterior means: the KL is at least d·γ²/2"
    )


class BatchNormMeans(PosteriorTransform):
    """μ ↦ γ·(μ − mean_b μ)/sqrt(var_b μ + ε) + β: batch statistics in training, running ones in evaluation (torch's
    ``BatchNorm1d`` with its scale held at γ); the posterior's scales pass unchanged."""

    name = "bnvae"
    description = "BN-VAE: batch-normalised posterior means with a fixed scale gamma (KL >= d*gamma^2/2)"
    Params = BatchNormParams
    min_batch_size = 2  # batch statistics of one example are undefined

    def __init__(self, params: BatchNormParams, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        self.norm = nn.BatchNorm1d(latent_dim)
        self.norm.weight.requires_grad_(False)  # γ is fixed: training it would let the floor fall to 0
        with torch.no_grad():
            self.norm.weight.fill_(params.gamma)

    def incompatibility(self, posterior: Distribution) -> str | None:
        return None if is_diagonal_normal(posterior) else "it normalises the means of a diagonal Gaussian posterior"

    def forward(self, posterior: Distribution, x: Tensor) -> Distribution:
        normal = posterior.base_dist
        return Independent(Normal(self.norm(normal.loc), normal.scale, **UNCHECKED), 1, **UNCHECKED)
