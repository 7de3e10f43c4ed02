"""Files written atomically: a reader sees the old content or the new, never part of either.

The new content goes to a temporary file in the target's own directory (a rename is atomic only within one file
system), which is then renamed over the target with ``os.replace``. The temporary file is named
``.NAME.PID-RANDOM.tmp``, so that processes and threads writing the same file at once never share one, and so
that a directory's leftovers of killed writers match ``.NAME.*.tmp``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

#: Bytes handed to one ``os.write`` call (it may write fewer; the rest follows).
CHUNK = 1 << 20


def write_bytes_atomically(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace the file at ``path`` (its directory must exist) with ``data``, atomically.

    ``durable``: also flush the new file to disk before the rename and the directory after it, so that the new
    content survives a crash of the machine, not only of the process. If anything fails or interrupts the write
    (KeyboardInterrupt included), the temporary file is removed, the exception propagates and ``path`` keeps its
    old content (or stays missing). The new file gets the permissions of a newly created one (the umask's)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _sync_directory(path.parent)


def write_text_atomically(path: Path, text: str, *, durable: bool = False) -> None:
    """:func:`write_bytes_atomically` of ``text`` encoded as UTF-8."""
    write_bytes_atomically(path, text.encode("utf-8"), durable=durable)


def write_json_atomically(path: Path, data: Any, *, ensure_ascii: bool = True, durable: bool = False) -> None:
    """:func:`write_text_atomically` of ``data`` as JSON indented by 2 with a final newline; ``ensure_ascii``
    as in :func:`json.dumps` (False keeps β and ± readable)."""
    write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=ensure_ascii) + "\n", durable=durable)


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write only part of what it is given)."""
    for start in range(0, len(data), CHUNK):
        view = memoryview(data)[start : start + CHUNK]
        while view:
            view = view[os.write(fd, view) :]


def _sync_directory(directory: Path) -> None:
    """Flush a directory's entries to disk (a rename is in the directory, not in the file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
