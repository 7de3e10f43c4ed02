"""Checking a test-prior choice (``--test-prior``, ``eval.test_prior``) before anything is built: a name, or a
variance s^2 in range. Free of torch, so that configs are validated without loading it;
:mod:`vaezoo.evaluation.priors`
builds the test priors."""

from __future__ import annotations

import re

from vaezoo.base.errors import UsageError

CORE = ("trained", "standard")
#: Variances a test prior may take: the scale sqrt(s^2) and log-densities stay well inside float32 range.
VARIANCE_RANGE = (1e-6, 1e6)
NAME = re.compile(r"[a-z][a-z0-9_-]*")


def check_test_prior(choice: str) -> str:
    """``choice`` if it can name a test prior (a name, or a variance in range), else a UsageError.

    Whether a name is offered depends on the model; :func:`vaezoo.evaluation.priors.resolve_test_prior`
    decides that."""
    variance = variance_of(choice)
    if variance is None and NAME.fullmatch(choice):
        return choice
    low, high = VARIANCE_RANGE
    if variance is None or not low <= variance <= high:
        raise UsageError(
            f"test prior {choice!r} is not one of {', '.join(CORE)}, a name a plugin offers (optimal and tuned "
            f"for NC-VAE) or a variance from {low:g} to {high:g}"
        )
    return choice


def variance_of(choice: str) -> float | None:
    """The variance ``choice`` gives (``"2.5"`` -> 2.5), or None when it is a name."""
    try:
        return float(choice)
    except ValueError:
        return None
