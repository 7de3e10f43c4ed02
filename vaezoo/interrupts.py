"""Stopping a run on Ctrl-C (SIGINT) or a scheduler's SIGTERM without losing or tearing its state.

While :class:`StopSignals` is installed, a signal that arrives during a *deferred* block (training, whose state
runs ahead of its checkpoint between two evaluation points) is only recorded: the trainer looks at
:attr:`StopSignals.requested` after each step, writes a checkpoint of that finished step and raises
:class:`Interrupted`. A signal outside such a block, or inside an *immediate* block nested in one (a validation,
which runs on a state its checkpoint holds), or a second signal during a deferred block, raises
:class:`Interrupted` at once.
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
        """Within the block a first signal is recorded in :attr:`requested` instead of raised. Nests."""
        with self._deferring_set(True):
            yield

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Within the block a signal raises at once, and one recorded before it raises on entry: for a stretch
        of a deferred block whose state its checkpoint already holds. Nests."""
        with self._deferring_set(False):
            if self.requested is not None:
                raise Interrupted(self.requested)
            yield

    @contextmanager
    def _deferring_set(self, deferring: bool) -> Iterator[None]:
        previous, self._deferring = self._deferring, deferring
        try:
            yield
        finally:
            self._deferring = previous
