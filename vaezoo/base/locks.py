"""A directory held by one process at a time: an exclusive lock on a file in it that names its holder.

The lock is ``fcntl.flock`` on the file, so the kernel releases it when its holder dies however it dies; the file
keeps the holder's name ("process PID on HOST (ACTIVITY since TIME)") only while the lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from vaezoo.base.errors import UsageError
from vaezoo.base.timestamps import local_timestamp


def process_text() -> str:
    """This process as a lock file or a suite's ``job.json`` names it: "process PID on HOST"."""
    return f"process {os.getpid()} on {socket.gethostname()}"


def process_gone(text: str) -> bool:
    """Whether ``text`` ("process PID on HOST ...") names a process of this host that no longer exists; a process
    on another host is taken to exist."""
    words = text.split()
    if len(words) >= 4 and words[0] == "process" and words[2] == "on" and words[3] == socket.gethostname():
        try:
            os.kill(int(words[1]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            pass
    return False


@contextlib.contextmanager
def held(lock_file: Path, what: str, activity: str) -> Iterator[None]:
    """Hold ``lock_file`` (created with its directory) for the block. When a live process holds it, a UsageError
    names ``what`` (e.g. "run directory 'runs/a'") and the holder, and the block does not run. ``activity`` (e.g.
    ``training``) is what the holder is said to be doing."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"{what} is in use by {holder}; wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{process_text()} ({activity} since {local_timestamp()})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # before unlocking: the next holder writes its own name
            fcntl.flock(handle, fcntl.LOCK_UN)
