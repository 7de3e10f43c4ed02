"""beta-VAE: ReconE + beta * KL(q(z|x) || p(z)), with optional linear KL warm-up and free bits."""

from __future__ import annotations

import attrs
from torch import Tensor

from vaezoo.api import Regularizer, Step, param


@attrs.frozen
class BetaParams:
    beta: float = param(1.0, ge=0, le=10**6, help="weight of KL(q(z|x) || p(z))")
    warmup_steps: int = param(0, ge=0, le=10**9, help="anneal the KL weight linearly from 0 over this many steps")
    free_bits: float = param(
        0.0,
        ge=0,
        le=10**6,
        help="Kingma et al.'s free bits: nats per latent dim below which the batch-averaged KL is not penalised "
        "(fb_masked is Li et al.'s per-example rule)",
    )


def kl_weight(beta: float, warmup_steps: int, step: int) -> float:
    """beta, scaled linearly from 0 at step 0 to its full value at ``warmup_steps``."""
    return beta if warmup_steps == 0 else beta * min(1.0, step / warmup_steps)


def penalised_kl(step: Step, free_bits: float) -> Tensor:
    """KL(q(z|x) || p(z)) averaged over the batch and summed over latent dims.

    With free bits lambda > 0 (Kingma et al. 2016), each dim's batch-averaged KL is clamped from below at lambda,
    so dims under lambda nats receive no gradient: the rule is decided once per batch and dimension, unlike Li et
    al.'s free bits (regulariser ``fb_masked``), decided per example and dimension. With a prior that does not
    factorise over dims (a mixture), the KL of the whole code is clamped at d * lambda instead (docs/maths.md
    section 1).
    """
    if free_bits == 0:
        return step.kl().mean()
    # the clamp applies to the whole batch's mean, also when each process holds a shard of it
    per_dim = step.kl_per_dim()  # 'b d'
    if per_dim is None:
        return step.batch.mean(step.kl().mean()).clamp(min=free_bits * step.z.shape[1])
    return step.batch.mean(per_dim.mean(0)).clamp(min=free_bits).sum()


class BetaVAE(Regularizer):
    """The beta-VAE objective; beta = 1 is the plain VAE (negative ELBO)."""

    name = "betavae"
    description = "ReconE + beta * KL(q(z|x) || p(z))"
    Params = BetaParams
    uses_kl_scale = True  # beta is multiplied by a KL schedule's factor

    def forward(self, step: Step) -> dict[str, Tensor]:
        weight = kl_weight(self.params.beta, self.params.warmup_steps, step.step) * step.kl_scale
        return {"beta_kl": weight * penalised_kl(step, self.params.free_bits)}

    def optimal_test_variance(self) -> float:
        """f(K, beta, 0) = 1: the training prior itself."""
        return 1.0
