"""Stopping a run on Ctrl-C (SIGINT) or a scheduler's SIGTERM without losing or tearing its state.

While :class:`StopSignals` is installed, a signal that arrives during a *deferred* block (training, whose state
runs ahead of its checkpoint between two evaluation points) is only recorded: the trainer looks at
:attr:`StopSignals.requested` after each step, writes a checkpoint of that finished step and raises
:class:`Interrupted`. Further signals in a deferred block change nothing but a note on stderr: however many arrive
(a terminal's Ctrl-C pressed twice, a scheduler's SIGTERM after it), the step in progress finishes and its
checkpoint is written; only SIGKILL stops the process sooner. A signal outside a deferred block, or inside an
*immediate* block nested in one (a validation, which runs on a state its checkpoint holds), raises
:class:`Interrupted` at once.

:func:`signals_held` holds SIGINT and SIGTERM back for a block (the checkpoint's write and rename): those that
arrived are handled, as above, when the block ends, so a save once started always completes.

:func:`stop_with_launcher` makes a process launched by another (a benchmark cell's ``vaezoo``) receive SIGTERM, and
so checkpoint and stop, when its launcher dies: a child in a process group of its own would otherwise outlive it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from types import FrameType

from vaezoo.base.errors import UsageError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ALREADY_STOPPING = (
    b"vaezoo: already stopping: the step in progress finishes and its checkpoint is written first "
    b"(SIGKILL stops at once and loses the steps since the last checkpoint)\n"
)
#: The environment variable through which a launcher asks its ``vaezoo`` child to stop when it dies.
STOP_WITH_PARENT_ENV = "VAEZOO_STOP_WITH_PARENT"
#: prctl(2)'s option that sends the calling process a signal when the thread that created it ends.
PR_SET_PDEATHSIG = 1


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
        if not self._deferring:
            raise Interrupted(self.requested or signum)
        if self.requested is None:
            self.requested = signum
        else:
            # os.write, not print: a handler may run while the main thread is inside a print to stderr
            with suppress(OSError):
                os.write(2, ALREADY_STOPPING)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block a first signal is recorded in :attr:`requested` instead of raised, and later ones only
        noted on stderr. Nests."""
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


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block: each that arrives meanwhile is handled, once, by the handler in
    force when the block ends. Only the main thread handles signals, so elsewhere the block changes nothing.

    Python runs a handler in the main thread whichever thread the kernel delivered the signal to, so blocking the
    signal in this thread (``pthread_sigmask``) would not keep it out of the block: a recording handler does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: arrived.append(signum)) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(arrived):
            signal.raise_signal(signum)


def stop_with_launcher(environ: Mapping[str, str] = os.environ) -> None:
    """When ``VAEZOO_STOP_WITH_PARENT`` names the process id of this process's launcher, have the kernel send
    SIGTERM when the thread that launched it ends (Linux's prctl; elsewhere nothing), and raise
    :class:`Interrupted` (SIGTERM) if the launcher is already gone."""
    text = environ.get(STOP_WITH_PARENT_ENV)
    if not text:
        return
    if not text.isdigit():
        raise UsageError(f"{STOP_WITH_PARENT_ENV} must be a process id, got {text!r}")
    if os.getppid() != int(text):
        raise Interrupted(signal.SIGTERM)
    library = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if library is not None:
        ctypes.CDLL(library, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(text):  # it died before the request took effect
        raise Interrupted(signal.SIGTERM)
