"""The lifecycle of one run as pluggy hooks, reaching the callbacks that run is configured with.

Each run has a plugin manager of its own holding its callbacks (``vaezoo.components.interfaces.Callback`` instances),
so a
callback installed on the machine takes part only in the runs that name it. The hooks are declared in
:mod:`vaezoo.plugins.hookspecs`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import pluggy

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Callback, Data
from vaezoo.config.run_config import RunConfig
from vaezoo.model.assembly import VAE
from vaezoo.plugins import hookspecs
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


class RunHooks:
    """The run's callbacks, built from ``config.callbacks``, and the calls of the lifecycle hooks on them."""

    def __init__(self, config: RunConfig, registry: Registry) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self.callbacks: list[Callback] = []
        for choice in config.callbacks:
            callback = registry.get("callback", choice.name).cls(choice.params)
            self.manager.register(callback, name=choice.name)
            self.callbacks.append(callback)
        self.manager.check_pending()  # a misspelt hook name in a callback is an error, not silence

    def check(self, session: Session, registry: Registry) -> None:
        """Refuse the run of ``session`` when a callback cannot act on it (its ``incompatibility``): a UsageError
        naming the callback and the reason, before the run creates anything."""
        for callback in self.callbacks:
            reason = callback.incompatibility(session, registry)
            if reason:
                raise UsageError(f"callback {callback.name!r} cannot act on this run: {reason}")

    def started(self, run: RunInfo) -> None:
        self.manager.hook.vaezoo_run_started(run=run)

    def step_done(self, run: RunInfo, step: int, logged: dict[str, float]) -> None:
        self.manager.hook.vaezoo_step_done(run=run, step=step, logged=logged)

    def evaluated(self, run: RunInfo, step: int, split: str, metrics: dict[str, Any]) -> bool:
        """Tell the callbacks of an evaluation; whether any of them asks to stop training."""
        return any(self.manager.hook.vaezoo_evaluated(run=run, step=step, split=split, metrics=metrics))

    def finished(self, run: RunInfo, results: dict[str, Any]) -> None:
        self.manager.hook.vaezoo_run_finished(run=run, results=results)

    def kl_scale(self, run: RunInfo, step: int) -> float:
        """The product of the callbacks' factors on the KL weight at ``step`` (1 without any)."""
        return math.prod(self.manager.hook.vaezoo_kl_scale(run=run, step=step))
