"""Checkpoints: written atomically, verified by a digest, read without unpickling arbitrary objects.

File layout: one line ``vaezoo-checkpoint sha256=<64 hex digits>`` followed by a ``torch.save`` archive of
tensors and plain Python containers. Loading checks the digest first (a truncated or altered file is refused
with a clear error) and then reads the archive with ``torch.load(..., weights_only=True)``, which refuses any
pickled object that is not a tensor or a primitive. The file is written to a temporary name in the same
directory, flushed to disk and renamed over the old one, so a crash at any point leaves either the old or the
new checkpoint, never a torn one; SIGINT and SIGTERM are held back while the file is written and renamed, so a
save once started completes, whatever signals arrive (they are handled when it ends).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from vaezoo.base.errors import UsageError
from vaezoo.base.files import write_bytes_atomically
from vaezoo.runs.interrupts import signals_held

CHECKPOINT_NAME = "checkpoint.pt"
#: The weights of the validation line with the lowest -ELBO (``train.test_model = "best"``).
BEST_MODEL_NAME = "best.pt"
MAGIC = b"vaezoo-checkpoint"
HEADER = re.compile(rb"vaezoo-checkpoint sha256=([0-9a-f]{64})\n")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync of the directory), with stop signals
    held back from the moment the file is created until it is in place."""
    import torch  # here, not at the top: the command line imports this module for its names without torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = MAGIC + b" sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_held():
        write_bytes_atomically(path, header + payload, durable=True)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files left by a process killed while writing a checkpoint."""
    for name in (CHECKPOINT_NAME, BEST_MODEL_NAME):
        for leftover in directory.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU; a missing, truncated, altered or unsafe file is a UsageError."""
    import torch

    if not path.is_file():
        raise UsageError(f"no checkpoint at {str(path)!r}")
    data = path.read_bytes()
    newline = data.find(b"\n", 0, 200)
    match = HEADER.fullmatch(data[: newline + 1]) if newline >= 0 else None
    if match is None:
        raise UsageError(f"{str(path)!r} is not a vaezoo checkpoint (no 'vaezoo-checkpoint sha256=...' header)")
    payload = data[newline + 1 :]
    if hashlib.sha256(payload).hexdigest() != match.group(1).decode():
        raise UsageError(
            f"checkpoint {str(path)!r} is truncated or corrupt: its content does not match its sha256 digest"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UsageError(
            f"checkpoint {str(path)!r} holds objects other than tensors and plain data; refusing to load it "
            f"({str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise UsageError(f"checkpoint {str(path)!r} is corrupt: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UsageError(f"checkpoint {str(path)!r} is not a vaezoo checkpoint")
    return state
