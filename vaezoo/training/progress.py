"""Where a run's training stands, and what of it a checkpoint keeps so that a resumed run goes on exactly as the
run straight through would have."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import attrs


@attrs.define
class TrainingProgress:
    """The step reached, the step whose checkpoint is on disk (what a stop keeps; None before the first is written
    or read), the training time so far, the training losses summed since the last validation line, and that line
    while it awaits its validation."""

    step: int = 0
    saved_step: int | None = None
    wall_time: float = 0.0
    sums: defaultdict[str, float] = attrs.Factory(lambda: defaultdict(float))
    since_eval: int = 0
    pending: dict[str, Any] | None = None

    def count_step(self, logged: dict[str, float]) -> None:
        """One more step trained, whose loss terms were ``logged``."""
        for name, value in logged.items():
            self.sums[name] += value
        self.since_eval += 1
        self.step += 1

    def close_interval(self, sums_everywhere: dict[str, float], steps_per_epoch: int) -> None:
        """Turn the training sums since the last line (``sums_everywhere``: averaged over a distributed run's
        ranks) into the next line, awaiting its validation."""
        self.pending = {
            "step": self.step,
            "epoch": round(self.step / steps_per_epoch, 3),
            "train": {name: total / self.since_eval for name, total in sums_everywhere.items()},
        }
        self.sums.clear()
        self.since_eval = 0

    def checkpoint_fields(self) -> dict[str, Any]:
        """What a checkpoint keeps of the progress."""
        return {
            "step": self.step,
            "wall_time": self.wall_time,
            "train_sums": dict(self.sums),
            "since_eval": self.since_eval,
            "pending_validation": self.pending or {},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back the progress a checkpoint ``state`` kept; its step is then the one on disk."""
        self.step, self.wall_time = int(state["step"]), float(state["wall_time"])
        self.saved_step = self.step
        self.sums = defaultdict(float, state.get("train_sums", {}))
        self.since_eval = int(state.get("since_eval", 0))
        self.pending = state.get("pending_validation") or None
