"""Callbacks: components that take part in a run's lifecycle (logging, schedules, early stopping), and the calls
of their methods during a run.

A callback is registered like any component (kind ``callback``) and takes part only in the runs that name it
(``--callback NAME``). The trainer calls its methods; plugins implement no lifecycle hook of their own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import attrs

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Data
from vaezoo.config.run_config import RunConfig
from vaezoo.model.assembly import VAE
from vaezoo.plugins.component import Component
from vaezoo.plugins.registry import Registry
from vaezoo.runs.session import Session


@attrs.frozen
class RunInfo:
    """What a callback is shown of its run: where it writes, its settings, model and data, and its length.

    ``start_step`` is the step the run (re)started from. Callbacks must not change the model or the data."""

    run_dir: Path
    config: RunConfig
    model: VAE
    data: Data
    total_steps: int
    start_step: int = 0


class Callback(Component):
    """Takes part in a run's lifecycle. Override any of the methods below; each does nothing by default.

    ``run`` is the :class:`RunInfo` of the run. Except ``kl_scale``, the methods are called on the process that
    writes the run (rank 0 of a distributed run). A callback's own helpers are private (a leading underscore), so
    that a misspelt lifecycle method is refused when the class is defined rather than never called.
    """

    kind = "callback"
    #: True when the callback changes what the run trains (a KL schedule, early stopping): it may then not be
    #: added, removed or changed when the run is resumed; a logger may.
    changes_training: ClassVar[bool] = False

    def __init__(self, params: Any) -> None:
        self.params = params

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        allowed = {name for name in dir(Callback) if not name.startswith("_")}
        unknown = [
            name for name, value in vars(cls).items()
            if callable(value) and not name.startswith("_") and name not in allowed and not isinstance(value, type)
        ]  # fmt: skip
        if unknown:
            methods = ", ".join(sorted(name for name in allowed if callable(getattr(Callback, name))))
            raise TypeError(
                f"callback {cls.__qualname__} defines {', '.join(unknown)}, which is no method of a callback; its "
                f"methods are {methods} (helpers take a leading underscore)"
            )

    def incompatibility(self, session: Session, registry: Registry) -> str | None:
        """Why this callback cannot act on the run of ``session`` (its configuration, data and freshly built model;
        ``registry`` holds every component), or None. Asked before the run creates anything (and by the benchmark
        runner, which skips such cells); a reason refuses the run. The default accepts every run."""
        return None

    def run_started(self, run: RunInfo) -> None:
        """The run is about to train from ``run.start_step`` (0 for a new run, the checkpoint's step for a resume)."""

    def step_done(self, run: RunInfo, step: int, logged: dict[str, float]) -> None:
        """Training step ``step`` (counted from 1) finished; ``logged`` holds its loss terms (floats, nats per
        example). Called after every step, so an implementation does its work at the interval it chooses."""

    def evaluated(self, run: RunInfo, step: int, split: str, metrics: dict[str, Any]) -> bool | None:
        """``split`` was evaluated after ``step`` steps (``valid`` during training). Return True to stop training
        early: the run then goes on to its final evaluation as if it had reached its length."""
        return None

    def run_finished(self, run: RunInfo, results: dict[str, Any]) -> None:
        """The run finished; ``results`` is what results.json holds."""

    def kl_scale(self, run: RunInfo, step: int) -> float | None:
        """A factor on the KL weight β of the regulariser at training step ``step`` (counted from 0), or None.

        The factors of all callbacks multiply; a regulariser with a β reads the product as ``Step.kl_scale`` and
        declares so (``Regularizer.uses_kl_scale``), since a schedule on any other regulariser is refused. Called
        on every process of a run, since it changes what is trained."""
        return None


class RunHooks:
    """The run's callbacks, built from ``config.callbacks``, and the calls of their lifecycle methods."""

    def __init__(self, config: RunConfig, registry: Registry) -> None:
        self.callbacks: list[Callback] = [
            registry.get("callback", choice.name).cls(choice.params) for choice in config.callbacks
        ]

    def check(self, session: Session, registry: Registry) -> None:
        """Refuse the run of ``session`` when a callback cannot act on it (its ``incompatibility``): a UsageError
        naming the callback and the reason, before the run creates anything."""
        for callback in self.callbacks:
            reason = callback.incompatibility(session, registry)
            if reason:
                raise UsageError(f"callback {callback.name!r} cannot act on this run: {reason}")

    def started(self, run: RunInfo) -> None:
        for callback in self.callbacks:
            callback.run_started(run)

    def step_done(self, run: RunInfo, step: int, logged: dict[str, float]) -> None:
        for callback in self.callbacks:
            callback.step_done(run, step, logged)

    def evaluated(self, run: RunInfo, step: int, split: str, metrics: dict[str, Any]) -> bool:
        """Tell every callback of an evaluation; whether any of them asks to stop training."""
        answers = [callback.evaluated(run, step, split, metrics) for callback in self.callbacks]
        return any(answers)

    def finished(self, run: RunInfo, results: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.run_finished(run, results)

    def kl_scale(self, run: RunInfo, step: int) -> float:
        """The product of the callbacks' factors on the KL weight at ``step`` (1 without any)."""
        factors = (callback.kl_scale(run, step) for callback in self.callbacks)
        return math.prod(factor for factor in factors if factor is not None)
