"""Choosing the test prior N(0, s^2 I) used for -ELBO, KL and IW-NLL (docs/maths.md section 4).

``standard``: s^2 = 1. ``optimal``: the variance the training objective implies (the regulariser's
``optimal_test_variance``, e.g. f(K, beta, delta) for NC-VAE). ``tuned``: the s^2 in [1, f] that maximises the
validation ELBO. A positive number: that variance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor

from vaezoo.errors import UsageError
from vaezoo.interfaces import Encoder, Regularizer
from vaezoo.metrics import kl_optimal_test_variance

NAMED = ("standard", "optimal", "tuned")
#: Variances a test prior may take: the scale sqrt(s^2) and log-densities stay well inside float32 range.
VARIANCE_RANGE = (1e-6, 1e6)


def check_test_prior(choice: str) -> str:
    """``choice`` if valid, else a UsageError naming it and the valid choices."""
    if choice in NAMED:
        return choice
    try:
        variance = float(choice)
    except ValueError:
        variance = float("nan")
    low, high = VARIANCE_RANGE
    if not low <= variance <= high:
        raise UsageError(
            f"test prior {choice!r} is not one of {', '.join(NAMED)} or a variance from {low:g} to {high:g}"
        )
    return choice


def check_test_prior_defined(choice: str, regularizer: Regularizer) -> None:
    """Refuse, before any training, a test prior that ``regularizer`` cannot define (``optimal``, ``tuned``)."""
    if choice in ("optimal", "tuned"):
        _optimal(regularizer)


def _optimal(regularizer: Regularizer) -> float:
    variance = regularizer.optimal_test_variance()
    if variance is None:
        raise UsageError(
            f"regularizer {regularizer.name!r} defines no optimal test prior (needed by optimal and tuned); "
            f"use standard or a variance"
        )
    return variance


def choose_test_variance(
    choice: str, regularizer: Regularizer, encoder: Encoder, valid_batches: Callable[[], Iterable[Tensor]]
) -> float:
    """The test-prior variance for ``choice``; ``valid_batches`` is called only when tuning needs them."""
    check_test_prior(choice)
    if choice == "standard":
        return 1.0
    if choice == "optimal":
        return _optimal(regularizer)
    if choice == "tuned":
        # Only the KL term of the ELBO depends on s^2, so the ELBO-maximising s^2 is the KL minimiser,
        # clipped to the interval between 1 and f.
        f = _optimal(regularizer)
        low, high = min(1.0, f), max(1.0, f)
        return min(max(kl_optimal_test_variance(encoder, valid_batches()), low), high)
    return float(choice)
