"""A run directory: the files of one run, the lock that gives it to one process, and its history.

Layout (every name is owned by vaezoo; ``--overwrite`` removes exactly these):

- ``config.json``: the configuration the run was started with. Written once, never rewritten.
- ``history.jsonl``: one line per start, resume, interrupt, divergence and finish, each with its time, step,
  host, process, command line and data directory; a resume records the settings it changed as
  ``{"section.param": [old, new]}``. The configuration in force is ``config.json`` with those changes applied
  in order (:meth:`RunDirectory.current_raw`).
- ``metrics.jsonl``, ``checkpoint.pt``, ``results.json``, ``latent_scatter.png``: see the trainer.
- ``.lock``: held (``flock``) by the process training or evaluating in the directory and naming it. The kernel
  releases the lock when its process dies, however it dies, so a stale lock is simply taken over.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from vaezoo.base.args import warn_once
from vaezoo.base.errors import UsageError
from vaezoo.base.files import write_json_atomically
from vaezoo.base.locks import held
from vaezoo.base.schema import shape_problem
from vaezoo.base.timestamps import local_timestamp
from vaezoo.config.run_config import CALLBACKS, RunConfig, merge_raw, read_config_file, resolve
from vaezoo.plugins.registry import Registry
from vaezoo.runs.checkpoint import BEST_MODEL_NAME, CHECKPOINT_NAME, remove_stale_temporaries

CONFIG_NAME = "config.json"
HISTORY_NAME = "history.jsonl"
METRICS_NAME = "metrics.jsonl"
RESULTS_NAME = "results.json"
SCATTER_NAME = "latent_scatter.png"
LOCK_NAME = ".lock"
#: The history event of a run whose callbacks stopped its training early (a resume may not train it on).
STOPPED_EARLY = "stopped_early"
RUN_FILES = (CONFIG_NAME, HISTORY_NAME, METRICS_NAME, CHECKPOINT_NAME, BEST_MODEL_NAME, RESULTS_NAME, SCATTER_NAME)


def append_json_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk, so a crash loses at most the line being written; after a line cut
    short by such a crash, on a line of its own (the cut line stays unreadable, the new one is kept)."""
    start = "\n" if _ends_mid_line(path) else ""
    with path.open("a") as handle:
        handle.write(start + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _ends_mid_line(path: Path) -> bool:
    """Whether the file at ``path`` ends without a newline (a line cut short); False when it is missing or empty."""
    try:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:  # missing, or empty (seeking before its start)
        return False


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` as indented JSON through a temporary file, so a reader never sees half a file."""
    write_json_atomically(path, record)


#: What the readers of a run's JSON-lines files (history.jsonl, metrics.jsonl) rely on in each line.
LINE_SCHEMA = {
    "type": "object",
    "required": ["step"],
    "properties": {
        "step": {"type": "integer"},
        "valid": {"type": "object"},
        "train": {"type": "object"},
        "changed": {"type": "object", "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2}},
        "data_dir": {"type": ["string", "null"]},
    },
}
_LINE_CHECK = Draft202012Validator(LINE_SCHEMA)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The records of one of a run's JSON-lines files. A last line cut short by a killed process is skipped; any
    other line that is not JSON or not a record of :data:`LINE_SCHEMA`'s shape is skipped with a warning naming
    the file and the line (once per process)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise UsageError(f"{str(path)!r} cannot be read: {error.strerror}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines):
                warn_once(f"line {number} of {str(path)!r} is left out: it is not JSON")
            continue
        problem = shape_problem(record, _LINE_CHECK)
        if problem is None:
            records.append(record)
        else:
            warn_once(f"line {number} of {str(path)!r} is left out: it is not a record of the run ({problem})")
    return records


class RunDirectory:
    """The files of one run at ``path``; nothing is created until a method writes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    # -- checks before anything is written -----------------------------------------------------------
    def check_usable(self, advice: str = "name the directory of a run") -> None:
        """Refuse a path that is a file or lies under a file (UsageError naming it, then ``advice``)."""
        for candidate in (self.path, *self.path.parents):
            if candidate.exists() and not candidate.is_dir():
                where = "is a file" if candidate == self.path else f"lies under the file {str(candidate)!r}"
                raise UsageError(f"run directory {str(self.path)!r} {where}; {advice}")

    def foreign_entries(self) -> list[str]:
        """What the directory holds besides its lock (sorted names; empty when it does not exist)."""
        if not self.path.is_dir():
            return []
        return sorted(entry.name for entry in self.path.iterdir() if entry.name != LOCK_NAME)

    def check_new(self, overwrite: bool) -> None:
        """A new run may start here: the directory is missing or empty, or ``overwrite`` allows replacing it."""
        self.check_usable("choose a directory with --out")
        entries = self.foreign_entries()
        if entries and not overwrite:
            shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
            hint = " (continue that run with --resume)" if CONFIG_NAME in entries else ""
            raise UsageError(
                f"run directory {str(self.path)!r} is not empty: it holds {shown}{hint}; choose another --out "
                f"or pass --overwrite to replace the run files in it"
            )

    def check_resumable(self) -> None:
        """The directory holds a run with a checkpoint to continue from."""
        self.check_usable()
        if not self.file(CONFIG_NAME).is_file():
            raise UsageError(f"cannot resume {str(self.path)!r}: it is not a run directory (no {CONFIG_NAME})")
        if not self.file(CHECKPOINT_NAME).is_file():
            raise UsageError(
                f"cannot resume {str(self.path)!r}: it has no {CHECKPOINT_NAME} (the run stopped before its first "
                f"step); start it again with --config {self.file(CONFIG_NAME)} --out {self.path} --overwrite"
            )

    # -- writing -------------------------------------------------------------------------------------
    def clear_run_files(self) -> list[str]:
        """Remove the files vaezoo writes (``--overwrite``); other files stay. Returns the names removed."""
        removed = [name for name in RUN_FILES if self.file(name).exists()]
        for name in removed:
            self.file(name).unlink()
        remove_stale_temporaries(self.path)
        return removed

    def write_config(self, config: dict[str, Any]) -> None:
        """Write ``config.json`` of a new run; an existing one is never replaced."""
        if not self.file(CONFIG_NAME).exists():
            write_json(self.file(CONFIG_NAME), config)

    def record(self, event: str, step: int, **fields: Any) -> None:
        """Append an event of the run to ``history.jsonl`` (with the time, host and process)."""
        entry = {
            "event": event,
            "time": local_timestamp(),
            "step": step,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **fields,
        }
        append_json_line(self.file(HISTORY_NAME), entry)

    # -- reading -------------------------------------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        return read_json_lines(self.file(HISTORY_NAME))

    def stopped_early_at(self, step: int) -> bool:
        """Whether a callback stopped the run's training early at ``step`` (a resume from there only evaluates)."""
        return any(entry.get("event") == STOPPED_EARLY and entry.get("step") == step for entry in self.history())

    def current_raw(self) -> dict[str, Any]:
        """``config.json`` with the changes of every resume applied in order: the settings in force."""

        raw = read_config_file(self.file(CONFIG_NAME))
        for entry in self.history():
            for key, (_, new) in entry.get("changed", {}).items():
                section, _, name = key.partition(".")
                values = raw.setdefault(section, {})
                if section == CALLBACKS and new is None:  # a callback removed on resume
                    values.pop(name, None)
                else:
                    values[name] = new
        return raw

    def current_config(self, registry: Registry) -> RunConfig:
        """The settings in force (:meth:`current_raw`) resolved against ``registry``; a UsageError naming the run's
        files when they do not resolve (a damaged or foreign config.json, or a plugin the run used that is gone)."""

        raw = self.current_raw()
        try:
            return resolve(merge_raw(raw), registry)
        except UsageError as error:
            raise UsageError(
                f"the settings of run {str(self.path)!r} ({CONFIG_NAME} with the changes in {HISTORY_NAME}) are not "
                f"valid: {error}"
            ) from None

    def recorded_data_dir(self) -> Path | None:
        """The data directory the run last used, if it recorded one."""
        for entry in reversed(self.history()):
            if entry.get("data_dir"):
                return Path(entry["data_dir"])
        return None

    # -- the lock ------------------------------------------------------------------------------------
    @contextmanager
    def locked(self, activity: str) -> Iterator[None]:
        """Hold the directory's lock for the block (creating the directory); a live holder is a UsageError
        naming its process. ``activity`` (e.g. ``training``) is what the holder is said to be doing."""
        self.check_usable()
        with held(self.file(LOCK_NAME), f"run directory {str(self.path)!r}", activity):
            yield
