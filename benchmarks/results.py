"""The layout of a results directory, shared by the runner (which writes it) and the report (which reads it).

```text
RESULTS_DIR/
  matrix.json            the suite's table settings, the profile, the axes and every planned cell, in order
  cells/CELL_ID/
    config-in.json       the cell's merged raw vaezoo config (what ``vaezoo run --config`` receives)
    run/                 the vaezoo run directory (config.json, metrics.jsonl, checkpoint.pt, results.json, ...)
    log.txt              every child command of the cell and its output, appended across attempts
    job.json             the job of the latest attempt: executor, job id, when submitted and ended, the runner
                         process that submitted it and whether the job outlives that process
    cell.json            the cell's outcome (see :func:`cell_record`)
```

The fields of a ``cell.json`` (:func:`cell_record`): ``axes`` maps each axis to the cell's value (a variant's label,
a parameter's value); ``reason`` says why a skipped cell is invalid; ``error`` is the tail of the failing child's
output and ``stage`` the step that failed (``train``, ``resume`` or ``eval:PRIOR``); ``wall_time_s`` is the
runner's time for this attempt; ``train`` holds the run's steps, seed, training wall time and test metrics under
the run's own test prior (``train.metrics``, from results.json); ``test_priors`` maps each requested test prior
to the metrics of ``vaezoo eval`` (mi, neg_elbo, recon, kl, au, iw_nll, test_prior_variance, ...); ``scatter`` is
the path of the run's latent scatter relative to the cell directory; ``attempts`` counts the runner's attempts.

What selection and the report's uncertainty need: ``valid`` is the validation line of the tested model
(metrics.jsonl: ``step``, ``test_prior`` = the run's ``eval.test_prior``, ``metrics``: mi, mi_he, neg_elbo,
recon, kl, au, ..., no IW-NLL; the last line, or the best -ELBO's with ``train.test_model = "best"``, whose step
is ``train.tested_step``), ``curve`` every validation line of the run (its metrics.jsonl lines), ``latent_dim``
the dimension D of z, and ``examples`` the examples each split's metrics averaged over (``{"valid": n, "test":
n}``: the split's size capped by ``eval.limit``; None when the runner could not load the data to count them).
``job`` is the job that ran the attempt (its ``job.json``: executor, id, submitted), or None.

A ``cell.json`` is written once a cell's attempt has ended (atomically, so a reader never sees half a file):
``status`` is ``ok``, ``failed`` or ``skipped``; a cell without one is pending. This module imports neither
torch nor vaezoo's models, so the report works wherever the results directory is copied.

Damaged files (cut short, emptied, not JSON, or JSON of another shape: :data:`CELL_SCHEMA`, :data:`MATRIX_SCHEMA`)
are :class:`DamagedFile` errors naming the file and what is wrong. A damaged cell.json is not fatal: readers that
go on without it (:func:`read_cell`) warn once and count the cell as without a record, so the runner runs it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from vaezoo.api import UsageError, shape_problem, warn_once, write_json_atomically

MATRIX_NAME = "matrix.json"
CELLS_DIR = "cells"
CELL_NAME = "cell.json"
CONFIG_IN_NAME = "config-in.json"
RUN_DIR = "run"
LOG_NAME = "log.txt"
JOB_NAME = "job.json"

OK, FAILED, SKIPPED, PENDING = "ok", "failed", "skipped", "pending"
#: A cell whose cell.json cannot be read: it counts as without a record (and runs again), named wherever it is read.
DAMAGED = "damaged"

#: Built-in metrics computed from the encoder alone, so the same under every test prior: the report may take them
#: from the training run's own test metrics when an evaluation under another test prior did not report them (the
#: records of runs made before every evaluation reported separability need it).
PRIOR_INDEPENDENT = ("mi", "mi_he", "au", "separability")


def cell_dir(results_dir: Path, cell_id: str) -> Path:
    return results_dir / CELLS_DIR / cell_id


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file and a rename (atomic on POSIX).

    The temporary file is the writer's own: runners restricted to different cells (``--only``) share one
    results directory and may write its matrix.json at the same moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomically(path, data, ensure_ascii=False)


class DamagedFile(UsageError):
    """A file of a results directory that exists but cannot be used; the message names it and what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{str(path)!r} is damaged: {problem}")
        self.path, self.problem = path, problem


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it does not exist; :class:`DamagedFile` when it cannot be read or is not
    JSON (cut short, empty, binary)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as error:
        raise DamagedFile(path, f"unreadable ({error.strerror})") from None
    except UnicodeDecodeError:
        raise DamagedFile(path, "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        found = "empty" if not error.doc.strip() else f"not JSON (cut short?): {error}"
        raise DamagedFile(path, found) from None


_METRICS = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}
_TEXT_OR_NULL = {"type": ["string", "null"]}
#: The shape of a ``cell.json`` that its readers rely on (see :func:`cell_record`); keys written by later versions
#: (``valid``, ``curve``, ``latent_dim``, ``examples``, ``job``) may be absent from older records.
CELL_SCHEMA = {
    "type": "object",
    "required": ["id", "axes", "status", "attempts", "reason", "error", "stage", "train", "test_priors"],
    "properties": {
        "id": {"type": "string"},
        "axes": {"type": "object"},
        "status": {"enum": [OK, FAILED, SKIPPED]},
        "attempts": {"type": "integer"},
        "reason": _TEXT_OR_NULL,
        "error": _TEXT_OR_NULL,
        "stage": _TEXT_OR_NULL,
        "scatter": _TEXT_OR_NULL,
        "wall_time_s": {"type": ["number", "null"]},
        "train": {
            "type": ["object", "null"],
            "required": ["metrics"],
            "properties": {"metrics": _METRICS, "tested_step": {"type": "integer"}},
        },
        "test_priors": {"type": "object", "additionalProperties": _METRICS},
        "valid": {"type": ["object", "null"], "properties": {"metrics": _METRICS, "step": {"type": "integer"}}},
        "curve": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["step", "valid"],
                "properties": {"step": {"type": "integer"}, "valid": _METRICS},
            },
        },
        "latent_dim": {"type": ["integer", "null"]},
        "examples": {"type": ["object", "null"], "required": ["test"], "additionalProperties": {"type": "integer"}},
        "job": {"type": ["object", "null"]},
    },
}
_LIST_OF_TEXT = {"type": "array", "items": {"type": "string"}}
#: The shape of a ``matrix.json`` that its readers rely on (see :func:`vaezoo_bench.matrix.document.matrix_document`).
MATRIX_SCHEMA = {
    "type": "object",
    "required": ["suite", "profile", "test_priors", "table", "axes", "cells"],
    "properties": {
        "suite": {"type": "string"},
        "profile": _TEXT_OR_NULL,
        "test_priors": _LIST_OF_TEXT,
        "table": {
            "type": "object",
            "required": ["layout", "rows", "columns", "seed_axis", "column_axis", "x_axis", "headers"],
            "properties": {"rows": _LIST_OF_TEXT, "columns": _LIST_OF_TEXT, "headers": {"type": "object"}},
        },
        "axes": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "values"], "properties": {"values": {"type": "array"}}},
        },
        "cells": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "axes", "test_priors"],
                "properties": {"id": {"type": "string"}, "axes": {"type": "object"}, "test_priors": _LIST_OF_TEXT},
            },
        },
        "selection": {"type": "object", "required": ["rules", "groups"]},
    },
}


#: What the runner reads from a run's ``results.json`` (written by vaezoo's trainer) into its cell.json.
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["metrics", "test_prior", "steps", "seed", "wall_time_s", "config"],
    "properties": {
        "metrics": _METRICS,
        "test_prior": {"type": "string"},
        "steps": {"type": "integer"},
        "tested_step": {"type": "integer"},
        "config": {
            "type": "object",
            "required": ["model"],
            "properties": {"model": {"type": "object", "required": ["latent_dim"]}},
        },
    },
}


def check_shape(path: Path, data: Any, schema: dict[str, Any], what: str) -> Any:
    """``data`` (read from ``path``) when it has the shape of ``schema``; else :class:`DamagedFile` saying where it
    departs from it (``what`` names the kind of file: "a cell record")."""
    problem = shape_problem(data, Draft202012Validator(schema))
    if problem is None:
        return data
    raise DamagedFile(path, f"not {what} ({problem})")


def load_cell(results_dir: Path, cell_id: str) -> dict[str, Any] | None:
    """A cell's ``cell.json``, or None while the cell is pending; :class:`DamagedFile` when it is not JSON, not of
    :data:`CELL_SCHEMA`'s shape, or the record of another cell."""
    path = cell_dir(results_dir, cell_id) / CELL_NAME
    record = check_shape(path, read_json(path), CELL_SCHEMA, "a cell record") if path.exists() else None
    if record is not None and record["id"] != cell_id:
        raise DamagedFile(path, f"the record of another cell, {record['id']!r}")
    return record


def read_cell(results_dir: Path, cell_id: str) -> dict[str, Any] | None:
    """A cell's ``cell.json``, or None while the cell is pending or when its cell.json is damaged (then with a
    warning naming it, once): such a cell counts as without a record, and the runner runs it again."""
    return cell_records(results_dir, [cell_id])[0][cell_id]


def cell_records(results_dir: Path, cell_ids: list[str]) -> tuple[dict[str, dict[str, Any] | None], dict[str, str]]:
    """Each cell's record as :func:`read_cell` reads it, and what is wrong with each damaged one (id -> problem)."""
    records: dict[str, dict[str, Any] | None] = {}
    damaged: dict[str, str] = {}
    for cell_id in cell_ids:
        try:
            records[cell_id] = load_cell(results_dir, cell_id)
        except DamagedFile as error:
            warn_once(f"{error}; the cell counts as without a record")
            records[cell_id], damaged[cell_id] = None, error.problem
    return records, damaged


def read_results(path: Path) -> dict[str, Any] | None:
    """A run directory's ``results.json`` at ``path``, None when it has none, or when it is damaged (cut short, or not
    of :data:`RESULTS_SCHEMA`'s shape; a warning names it, once): the run then needs its results written again,
    which resuming a finished run does."""
    try:
        return check_shape(path, read_json(path), RESULTS_SCHEMA, "a run's results") if path.exists() else None
    except DamagedFile as damaged:
        warn_once(f"{damaged}; the run counts as without results (resumed or trained again to write them)")
        return None


def read_job(directory: Path) -> dict[str, Any]:
    """A cell's ``job.json`` (see :func:`vaezoo_bench.cell_job.note_job`), empty when it is missing; a damaged one
    is named in a warning (once) and read as empty: it only tells where the latest attempt ran."""
    path = directory / JOB_NAME
    try:
        return check_shape(path, read_json(path), {"type": ["object", "null"]}, "a job record") or {}
    except DamagedFile as damaged:
        warn_once(f"{damaged}; read as no job")
        return {}


def cell_record(
    cell_id: str,
    axes: dict[str, Any],
    status: str,
    *,
    attempts: int,
    reason: str | None = None,
    error: str | None = None,
    stage: str | None = None,
    wall_time_s: float | None = None,
    train: dict[str, Any] | None = None,
    test_priors: dict[str, dict[str, Any]] | None = None,
    scatter: str | None = None,
    valid: dict[str, Any] | None = None,
    curve: list[dict[str, Any]] | None = None,
    latent_dim: int | None = None,
    examples: dict[str, int] | None = None,
    job: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The contents of ``cell.json``, its fields as the module docstring describes them; ``wall_time_s`` is rounded
    to the millisecond and ``test_priors`` is empty when None."""
    return {
        "id": cell_id,
        "axes": axes,
        "status": status,
        "reason": reason,
        "error": error,
        "stage": stage,
        "attempts": attempts,
        "wall_time_s": None if wall_time_s is None else round(wall_time_s, 3),
        "train": train,
        "test_priors": test_priors or {},
        "scatter": scatter,
        "valid": valid,
        "curve": curve,
        "latent_dim": latent_dim,
        "examples": examples,
        "job": job,
    }
