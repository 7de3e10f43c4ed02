"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` archive of tensors and plain Python containers, read back with
``torch.load(..., weights_only=True)``, which refuses any pickled object that is not a tensor or a primitive.
It is written to a temporary file in the same directory, flushed to disk and renamed over the old one, so a
crash at any point leaves either the old or the new checkpoint, never a torn file.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from vaezoo.errors import UsageError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync of the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU; a missing, truncated, tampered or unsafe file is a UsageError."""
    if not path.is_file():
        raise UsageError(f"no checkpoint at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UsageError(
            f"checkpoint {str(path)!r} holds objects other than tensors and plain data; refusing to load it "
            f"({str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UsageError(f"checkpoint {str(path)!r} is truncated or corrupt: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UsageError(f"checkpoint {str(path)!r} is not a vaezoo checkpoint")
    return state
