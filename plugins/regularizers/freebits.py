"""Free bits as Li et al. (2019) apply them: each example's KL in each latent dimension is left out of the loss
while it is at most λ/d nats (mode ``fb = 2`` of their code), docs/maths.md "Autoencoder pretraining and free
bits".

This is not the free bits of Kingma et al. (2016), the ``free_bits`` parameter of ``betavae``: there each
dimension's KL is first averaged over the batch and then clamped from below at λ_fb nats, so whether a dimension
is penalised is decided once for the whole batch. Here it is decided for every example and every dimension.
"""

from __future__ import annotations

import attrs
from torch import Tensor

from vaezoo.api import Regularizer, Step, UsageError, param


@attrs.frozen
class MaskedFreeBitsParams:
    target: float = param(
        8.0,
        ge=0,
        le=10**6,
        help="lambda: total free nats (their --target_kl; 8 in their Yahoo recipe); each example's KL in a "
        "latent dim is left out of the loss while it is <= lambda / latent_dim",
    )
    beta: float = param(1.0, ge=0, le=10**6, help="weight of the KL terms that are kept")


def masked_kl(per_dim: Tensor, threshold: float) -> Tensor:
    """``Σ_d 1[KL_{b,d} > threshold] · KL_{b,d}`` per example, ``'b d' -> 'b'``: a term at or under the threshold
    contributes neither value nor gradient (the mask itself carries no gradient)."""
    return per_dim.where(per_dim > threshold, 0.0).sum(-1)


class MaskedFreeBits(Regularizer):
    """Li et al.'s per-example, per-dimension free bits: ``β · kl_scale · (1/b) Σ_b Σ_d mask_{b,d} · KL_{b,d}``
    with ``mask_{b,d} = 1[KL_{b,d} > λ/d]``. Needs a posterior and a prior that factorise over the latent dims."""

    name = "fb_masked"
    description = "Li et al. 2019 free bits: KL of each example and latent dim dropped while <= target/latent_dim"
    Params = MaskedFreeBitsParams
    uses_kl_scale = True  # beta is multiplied by a KL schedule's factor (their kl_weight)

    def forward(self, step: Step) -> dict[str, Tensor]:
        per_dim = step.kl_per_dim()  # 'b d'
        if per_dim is None:
            raise UsageError(
                f"regularizer {self.name!r} needs a posterior and a prior that both factorise over the latent dims "
                "(the KL of each example in each dim); this run's do not (a mixture prior, say): use betavae's "
                "free_bits, which fall back to the KL of the whole code"
            )
        threshold = self.params.target / self.latent_dim
        weight = self.params.beta * step.kl_scale
        return {"fb_kl": weight * masked_kl(per_dim, threshold).mean()}

    def optimal_test_variance(self) -> float:
        """The training prior itself, as for the β-VAE."""
        return 1.0
