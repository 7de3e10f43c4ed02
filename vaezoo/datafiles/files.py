"""Reading a data file and reporting what is wrong with it: the shared file handling of every format module.

A :class:`DataFile` is a file of the data directory with a known place, content and origin, and a sha256 when it
is shipped; :meth:`DataFile.read` checks that it exists and, if asked, its checksum. :func:`read_bytes` reads any
other file (one named by a data parameter). A format module parses inside :func:`parsing` and states what it checks
with :func:`require`, so that every problem is one :class:`~vaezoo.base.errors.UsageError` line of the form
``data file 'PATH' is not WHAT: PROBLEM`` (or ``is corrupt or not WHAT: ...`` when a parser fails).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from vaezoo.base.errors import UsageError


def read_bytes(path: Path) -> bytes:
    """The bytes of the file ``path``; an unreadable one is a UsageError naming it."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"data file '{path}' cannot be read: {error.strerror or error}") from None


def gunzipped(path: Path, raw: bytes) -> bytes:
    """``raw``, the bytes of ``path``, decompressed when the name ends in ``.gz`` (bad gzip raises what
    :mod:`gzip` raises: call it inside :func:`parsing`)."""
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


@attrs.frozen
class DataFile:
    """A file of the data directory: where it lives (``relative`` to the data directory), what it is, where it
    comes from, and its sha256 if it is known (shipped files)."""

    relative: str
    what: str
    origin: str
    sha256: str | None = None

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.relative

    def read(self, data_dir: Path, check_sha256: bool) -> tuple[Path, bytes]:
        """The file's path and bytes, read once; a missing file or a checksum mismatch is a UsageError."""
        path = self.path(data_dir)
        if not path.is_file():
            raise UsageError(f"data file '{path}' is missing; expected {self.what}, from {self.origin}")
        raw = read_bytes(path)
        if check_sha256 and self.sha256 is not None:
            actual = hashlib.sha256(raw).hexdigest()
            if actual != self.sha256:
                raise UsageError(
                    f"data file '{path}' fails its checksum: expected sha256 {self.sha256}, got {actual}; it is "
                    f"corrupt or not {self.what} (from {self.origin}). Replace it, or set data.check_sha256=false "
                    "to use a different version knowingly"
                )
        return path, raw


@contextmanager
def parsing(path: Path, what: str) -> Iterator[None]:
    """Turn any failure to parse or validate ``path`` into a UsageError naming the file and what it should be."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:  # numpy, zipfile, gzip, PIL and scipy raise a wide range of types on bad input
        raise UsageError(f"data file '{path}' is corrupt or not {what}: {type(error).__name__}: {error}") from None


def require(condition: bool, path: Path, what: str, problem: str) -> None:
    """A UsageError naming ``path``, what it should be and the ``problem`` found, unless ``condition`` holds."""
    if not condition:
        raise UsageError(f"data file '{path}' is not {what}: {problem}")
