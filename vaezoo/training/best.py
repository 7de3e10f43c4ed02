"""The best validation value so far of one metric, rebuilt from a run's validation lines after a resume.

One piece of code serves the trainer (which keeps the model of the best validation -ELBO when
``train.test_model = "best"``) and the ``early_stop`` callback (which counts the evaluations without improvement).
Both restore their state from ``metrics.jsonl``, so a resumed run keeps and stops exactly as a run straight through.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

MODES = ("min", "max")


@attrs.define
class BestSoFar:
    """Tracks the best value of a validation ``metric``; lower is better in ``mode`` "min", higher in "max".

    A value improves on the best when it is better by more than ``min_delta``. ``waited`` counts the values since
    the last improvement; ``step`` is the step of the best value (None before the first)."""

    metric: str
    mode: str = attrs.field(default="min", validator=attrs.validators.in_(MODES))
    min_delta: float = 0.0
    value: float | None = None
    step: int | None = None
    waited: int = 0

    def offer(self, step: int, metrics: dict[str, Any]) -> bool:
        """Take the validation ``metrics`` of ``step``; whether its value is the new best. A metric that is not a
        number (missing, or NaN) never improves."""
        value = metrics.get(self.metric)
        if not isinstance(value, int | float) or value != value:
            self.waited += 1
            return False
        signed = float(value) if self.mode == "min" else -float(value)
        if self.value is None or signed < self.value - self.min_delta:
            self.value, self.step, self.waited = signed, step, 0
            return True
        self.waited += 1
        return False

    def replay(self, lines: Iterable[dict[str, Any]], up_to_step: int) -> BestSoFar:
        """Offer the validation lines of ``metrics.jsonl`` up to ``up_to_step`` in step order (after a resume);
        returns self."""
        for line in sorted((line for line in lines if "valid" in line), key=lambda line: line["step"]):
            if line["step"] <= up_to_step:
                self.offer(line["step"], line["valid"])
        return self
