"""δ-VAE (Razavi et al. 2019), its i.i.d. Gaussian form as BN-VAE's code implements it: the posterior family is
confined so that every latent dim's KL to the prior N(0, 1) is at least the committed rate δ.

With q = N(μ, σ²) and p = N(0, 1) the KL of a dim is ½(μ² + σ² − ln σ² − 1). Let σ_l² < 1 < σ_u² be the roots of
ln s − s + 2δ + 1 = 0 (at either, a zero-mean q has KL δ). From the encoder's N(μ_raw, σ_raw²), with
raw_lv = ln σ_raw²,

    σ = σ_l + (σ_u − σ_l) · max(sigmoid(raw_lv), 1/50)                 in [σ_l + (σ_u − σ_l)/50, σ_u]
    μ = sqrt(2δ + 1 + ln σ² − σ² + relu(μ_raw) + 1e-6)

so that KL = δ + relu(μ_raw)/2 + 5e-7 exactly, for every example and dim (docs/maths.md, "δ-VAE"). Two quirks of
the reference are kept: μ ≥ 0 always (a square root), and the KL does not depend on σ, so its gradient with
respect to the encoder's variance head is 0 (only the reconstruction shapes σ).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from vaezoo.api import UNCHECKED, Decoder, PosteriorTransform, Prior, UsageError, is_diagonal_normal, param

#: The reference's floor under the sigmoid of the variance head (it clamps 1 + exp(−raw_lv) at 50).
SIGMOID_FLOOR = 1 / 50
#: The reference's guard added under the square root of μ² (it makes each dim's KL δ + relu(μ_raw)/2 + 5e-7).
MEAN_SQUARE_GUARD = 1e-6


@attrs.frozen
class DeltaParams:
    delta: float = param(
        0.15,
        gt=0,
        le=2,  # beyond, float32 rounding under the square root outgrows the reference's 1e-6 guard (NaN by δ = 8)
        help="the committed rate δ: every latent dim's KL to N(0, 1) is at least delta nats (BN-VAE uses 0.15)",
    )


def bisect(f: Callable[[float], float], negative: float, positive: float) -> float:
    """The root of ``f`` between ``negative`` (where f < 0) and ``positive`` (where f ≥ 0), to float64's precision."""
    for _ in range(200):  # the brackets below reach float64's spacing in 54 to 61 halvings
        middle = (negative + positive) / 2
        if middle in (negative, positive):
            break
        if f(middle) < 0:
            negative = middle
        else:
            positive = middle
    return positive


def variance_bounds(delta: float) -> tuple[float, float]:
    """The two roots s_l < 1 < s_u of ln s − s + 2δ + 1 = 0 (δ > 0), in float64.

    The reference solves the equation symbolically (sympy); scipy is not a core dependency here (it is in the dev
    extra), so each root is found by bisection on its side of the maximum at s = 1, where the function is 2δ > 0.
    Brackets: f(e^(−c−1)) = −1 − e^(−c−1) < 0 and f(2c + 2) = ln(2c + 2) − c − 2 < 0, with c = 2δ + 1.
    """
    c = 2 * delta + 1

    def f(s: float) -> float:
        return math.log(s) - s + c

    return bisect(f, math.exp(-c - 1), 1.0), bisect(f, 2 * c + 2, 1.0)


class CommittedRate(PosteriorTransform):
    """δ-VAE's map from a diagonal Gaussian posterior to one whose KL to N(0, I) is at least δ in every dim of every
    example; it needs the prior N(0, I), against which the rate is defined (``attach`` refuses any other)."""

    name = "deltavae"
    description = "delta-VAE: posteriors confined so that each latent dim's KL to N(0, 1) is at least delta"
    Params = DeltaParams

    def __init__(self, params: DeltaParams, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        low, high = variance_bounds(params.delta)
        self.sigma_low, self.sigma_high = math.sqrt(low), math.sqrt(high)

    def attach(self, decoder: Decoder, prior: Prior) -> None:
        """Refuse (UsageError) a prior other than N(0, I): the committed rate is a KL to it."""
        reason = standard_normal_gap(prior, self.latent_dim)
        if reason:
            raise UsageError(
                f"transform {self.name!r} commits a KL of delta per latent dim to the prior N(0, I), which prior "
                f"{prior.name!r} is not: {reason}; use prior 'standard'"
            )

    def incompatibility(self, posterior: Distribution) -> str | None:
        return None if is_diagonal_normal(posterior) else "it maps the means and scales of a diagonal Gaussian"

    def forward(self, posterior: Distribution, x: Tensor) -> Distribution:
        normal = posterior.base_dist
        raw_mean, raw_log_variance = normal.loc.float(), 2 * normal.scale.float().log()  # 'b d'
        # equal to the reference's 1 / clamp(1 + exp(−raw_lv), 1, 50), whose gradient is NaN once exp overflows
        weight = torch.sigmoid(raw_log_variance).clamp(min=SIGMOID_FLOOR)
        scale = self.sigma_low + (self.sigma_high - self.sigma_low) * weight
        variance = scale.square()
        mean_square = 2 * self.params.delta + 1 + variance.log() - variance + raw_mean.relu() + MEAN_SQUARE_GUARD
        return Independent(Normal(mean_square.sqrt(), scale, **UNCHECKED), 1, **UNCHECKED)


def standard_normal_gap(prior: Prior, latent_dim: int) -> str | None:
    """Why ``prior`` is not the fixed N(0, I) over ``latent_dim`` dims, or None. A prior with trained parameters,
    or one defined through the model's encoder (it overrides ``Prior.attach``, as the VampPrior does), is refused
    without being evaluated: it cannot be evaluated before the model is assembled, and it moves in training."""
    if any(parameter.requires_grad for parameter in prior.parameters()):
        return "it is learned"
    if type(prior).attach is not Prior.attach:
        return "it is defined through the model's encoder"
    with torch.no_grad():
        p = prior()
    if not (isinstance(p, Independent) and isinstance(p.base_dist, Normal) and p.event_shape == (latent_dim,)):
        return f"it is a {type(p).__name__}, not a diagonal Gaussian over the {latent_dim} latent dims"
    if p.batch_shape != ():
        return f"it is a batch of {tuple(p.batch_shape)} Gaussians, not one"
    for what, values, target in (("means", p.base_dist.loc, 0), ("scales", p.base_dist.scale, 1)):
        if not torch.all(values == target):
            return f"its {what} are not all {target} (they range over [{values.min():g}, {values.max():g}])"
    return None
