"""InfoVAE (Zhao et al.): ReconE + (1 - alpha) KL(q(z|x) || p(z)) + (alpha + lambda - 1) MMD(q(z), p(z)).

The divergence between the aggregate posterior q(z) and the prior is estimated by the MMD between the batch's
codes and as many prior samples. In a data-parallel run the batch is the global one: every rank's codes and
prior samples are gathered (with their gradients), so the estimate does not depend on the number of processes.
"""

from __future__ import annotations

import attrs
from torch import Tensor

from vaezoo.api import KERNELS, Regularizer, Step, mmd, param


@attrs.frozen
class InfoParams:
    alpha: float = param(0.0, ge=-(10**6), le=1, help="alpha: 1 - alpha weighs KL(q(z|x) || p(z))")
    lambda_: float = param(1000.0, ge=0, le=10**6, help="lambda: alpha + lambda - 1 weighs MMD(q(z), p(z))")
    kernel: str = param("imq", choices=tuple(KERNELS), help="MMD kernel: rbf or imq (inverse multiquadric)")
    bandwidth: float | None = param(None, ge=1e-6, le=10**6, help="kernel bandwidth (none: 2 * latent dim)")


class InfoVAE(Regularizer):
    """The InfoVAE family; alpha = 0, lambda = 1 is the plain VAE, alpha = 1 the MMD-only objective."""

    name = "infovae"
    description = "(1-alpha) KL(q(z|x)||p) + (alpha+lambda-1) MMD(q(z), p(z))"
    Params = InfoParams
    min_batch_size = 2  # the unbiased MMD averages over pairs of distinct codes

    def forward(self, step: Step) -> dict[str, Tensor]:
        p = self.params
        prior_samples = step.prior.sample((step.z.shape[0],))
        # The MMD is not a mean over examples: computed on one rank's shard it would be another estimator.
        # the whole batch's codes on every rank; the backward pass routes each shard's gradient home
        divergence = mmd(step.batch.gather(step.z), step.batch.gather(prior_samples), p.kernel, p.bandwidth)
        return {
            "kl_term": (1 - p.alpha) * step.kl().mean(),
            "mmd_term": (p.alpha + p.lambda_ - 1) * divergence,
        }

    def optimal_test_variance(self) -> float:
        return 1.0
