"""Stopping a run on Ctrl-C (SIGINT) or a scheduler's SIGTERM without losing or tearing its state.

While :class:`StopSignals` is installed, a signal that arrives during a *deferred* block (a training step, whose
parameter and optimiser updates must not be cut in half) is only recorded: the trainer looks at
:attr:`StopSignals.requested` after the step, writes a checkpoint of that finished step and raises
:class:`Interrupted`. A signal outside such a block (an evaluation, which changes nothing that the checkpoint
holds), or a second signal during one, raises :class:`Interrupted` at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by ``signum``; the process should exit with ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """SIGINT and SIGTERM handlers for the duration of a ``with`` block (main thread only; elsewhere inert)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._deferring and self.requested is None:
            self.requested = signum
            return
        raise Interrupted(self.requested or signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block a first signal is recorded in :attr:`requested` instead of raised."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
