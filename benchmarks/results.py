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

A ``cell.json`` is written once a cell's attempt has ended (atomically, so a reader never sees half a file):
``status`` is ``ok``, ``failed`` or ``skipped``; a cell without one is pending. This module imports neither
torch nor vaezoo, so the report works wherever the results directory is copied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MATRIX_NAME = "matrix.json"
CELLS_DIR = "cells"
CELL_NAME = "cell.json"
CONFIG_IN_NAME = "config-in.json"
RUN_DIR = "run"
LOG_NAME = "log.txt"
JOB_NAME = "job.json"

OK, FAILED, SKIPPED, PENDING = "ok", "failed", "skipped", "pending"

#: Metrics computed from the encoder alone, so the same under every test prior: the report may take them from
#: the training run's own test metrics when an evaluation under another test prior did not report them.
PRIOR_INDEPENDENT = ("mi", "mi_he", "au", "separability")


def cell_dir(results_dir: Path, cell_id: str) -> Path:
    return results_dir / CELLS_DIR / cell_id


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file and a rename (atomic on POSIX).

    The temporary file is the process's own: runners restricted to different cells (``--only``) share one
    results directory and may write its matrix.json at the same moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def read_cell(results_dir: Path, cell_id: str) -> dict[str, Any] | None:
    """A cell's ``cell.json``, or None while the cell is pending."""
    return read_json(cell_dir(results_dir, cell_id) / CELL_NAME)


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
    """The contents of ``cell.json``.

    ``axes`` maps each axis to the cell's value (a variant's label, a parameter's value); ``reason`` says why a
    skipped cell is invalid; ``error`` is the tail of the failing child's output and ``stage`` the step that
    failed (``train``, ``resume`` or ``eval:PRIOR``); ``wall_time_s`` is the runner's time for this attempt;
    ``train`` holds the run's steps, seed, training wall time and test metrics under the run's own test prior
    (``train.metrics``, from results.json); ``test_priors`` maps each requested test prior to the metrics of
    ``vaezoo eval`` (mi, neg_elbo, recon, kl, au, iw_nll, test_prior_variance, ...); ``scatter`` is the path of
    the run's latent scatter relative to the cell directory; ``attempts`` counts the runner's attempts.

    What selection and the report's uncertainty need: ``valid`` is the validation line of the tested model
    (metrics.jsonl: ``step``, ``test_prior`` = the run's ``eval.test_prior``, ``metrics``: mi, mi_he, neg_elbo,
    recon, kl, au, ..., no IW-NLL; the last line, or the best -ELBO's with ``train.test_model = "best"``, whose step
    is ``train.tested_step``), ``curve`` every validation line of the run (its metrics.jsonl lines), ``latent_dim``
    the dimension D of z, and ``examples`` the examples each split's metrics averaged
    over (``{"valid": n, "test": n}``: the split's size capped by ``eval.limit``; None when the runner could not
    load the data to count them). ``job`` is the job that ran the attempt (its ``job.json``: executor, id,
    submitted), or None.
    """
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
