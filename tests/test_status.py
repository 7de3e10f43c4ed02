"""vaezoo_bench.status: each cell's state read from a results directory while a suite runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.test_selection import SUITE, figures, write_results
from vaezoo_bench.aggregate import load_matrix
from vaezoo_bench.status import status_lines

HOLDER = f"process {os.getpid()} on {socket.gethostname()} (training since 2026-12-02T17:00:00+00:00)"


def _results(tmp_path):
    """β-VAE on both seeds (β 1 seed 1 failed), NC-VAE β 0.5's sweep and its chosen δ on seed 1 finished,
    NC-VAE β 1's sweep: δ 0.1 running, δ 0.3 stopped by a killed process, δ 1 and 3 not started."""

    def metrics(axes):
        if axes["method"] == "NC-VAE" and axes["regularizer.beta"] == 1.0:
            return None
        return figures(0.2 + axes.get("regularizer.delta", 0), 100.0)

    def status(axes):
        failing = axes["method"] == "β-VAE" and axes["regularizer.beta"] == 1.0 and axes["train.seed"] == 1
        return "failed" if failing else "ok"

    out = write_results(tmp_path, SUITE, metrics, status=status)
    running = out / "cells" / "beta=1.0_method=ncvae_delta=0.1_seed=0" / "run"
    running.mkdir(parents=True)
    (running / ".lock").write_text(HOLDER + "\n")
    (running / "config.json").write_text(json.dumps({"train": {"steps": 40}}))
    (running / "metrics.jsonl").write_text(json.dumps({"step": 20, "valid": {}}) + "\n")
    stopped = out / "cells" / "beta=1.0_method=ncvae_delta=0.3_seed=0" / "run"
    stopped.mkdir(parents=True)
    (stopped / "checkpoint.pt").write_bytes(b"")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (stopped / ".lock").write_text(f"process {ended.stdout.strip()} on {socket.gethostname()} (training since x)\n")
    gone = f"process {ended.stdout.strip()} on {socket.gethostname()}"
    # the running cell's job, and δ 1 handed to a Slurm job that has not started it: its runner is gone, but a
    # Slurm job runs on without it
    job = {"executor": "slurm", "id": "4242", "submitted": "2026-12-03T01:00:00+0000", "ended": None}
    (running.parent / "job.json").write_text(json.dumps(job))
    queued = out / "cells" / "beta=1.0_method=ncvae_delta=1.0_seed=0"
    queued.mkdir(parents=True)
    (queued / "job.json").write_text(json.dumps({**job, "id": "4243", "runner": gone, "outlives_runner": True}))
    # local jobs of a runner killed outright, which died with it: δ 0.3 had trained (stopped), δ 3 had not (pending)
    local = {"executor": "local", "id": None, "submitted": "2026-12-03T01:00:00+0000", "ended": None}
    orphan = {**local, "runner": gone, "outlives_runner": False}
    (stopped.parent / "job.json").write_text(json.dumps(orphan))
    never_started = out / "cells" / "beta=1.0_method=ncvae_delta=3.0_seed=0"
    never_started.mkdir(parents=True)
    (never_started / "job.json").write_text(json.dumps(orphan))
    # β-VAE β 0.5 seed 0 ended under job 7; a job that ended leaves the cell as its cell.json says
    done = out / "cells" / "beta=0.5_method=vae_seed=0"
    (done / "job.json").write_text(json.dumps({**job, "id": "7", "ended": "2026-12-03T01:10:00+0000"}))
    return out


def test_every_cell_state_is_read_from_the_results_without_taking_a_lock(tmp_path):
    out = _results(tmp_path)
    lines, counts, ended = status_lines(load_matrix(out))
    assert dict(counts) == {"ok": 8, "failed": 1, "running": 1, "queued": 1, "stopped": 1, "pending": 1, "waiting": 1}
    assert ended == 9
    assert lines[0].endswith("14 cells; 8 ok, 1 failed, 1 running, 1 queued, 1 stopped, 1 pending, 1 waiting")
    assert "9/14" in lines[1]
    by_cell = {line.split()[1]: line for line in lines[2:]}
    assert by_cell["beta=1.0_method=ncvae_delta=0.1_seed=0"].endswith(f"step 20 of 40; {HOLDER}; slurm job 4242")
    queued = by_cell["beta=1.0_method=ncvae_delta=1.0_seed=0"]
    assert queued.startswith("queued") and "slurm job 4243, submitted 2026-12-03T01:00:00+0000" in queued
    assert by_cell["beta=0.5_method=vae_seed=0"].startswith("ok ")
    assert by_cell["beta=1.0_method=ncvae_delta=0.3_seed=0"].startswith("stopped ")
    failed = by_cell["beta=1.0_method=vae_seed=1"]
    assert failed.startswith("failed") and failed.endswith("train: vaezoo: error: loss became nan")
    waiting = by_cell["beta=1.0_method=ncvae"]
    assert waiting.startswith("waiting") and "1 phase-2 cell(s)" in waiting
    pending = {cell for cell, line in by_cell.items() if line.startswith("pending")}
    assert pending == {"beta=1.0_method=ncvae_delta=3.0_seed=0"}
    assert by_cell["beta=0.5_method=ncvae_delta=3.0_seed=1"].startswith("ok"), "the chosen δ on the other seed"


def test_a_local_job_is_queued_while_its_runner_lives(tmp_path):
    out = _results(tmp_path)
    job = {"executor": "local", "id": None, "submitted": "2026-12-03T01:00:00+0000", "ended": None}
    alive = {**job, "runner": f"process {os.getpid()} on {socket.gethostname()}", "outlives_runner": False}
    (out / "cells" / "beta=1.0_method=ncvae_delta=3.0_seed=0" / "job.json").write_text(json.dumps(alive))
    lines, counts, _ = status_lines(load_matrix(out))
    assert counts["queued"] == 2 and counts["pending"] == 0
    by_cell = {line.split()[1]: line for line in lines[2:]}
    assert by_cell["beta=1.0_method=ncvae_delta=3.0_seed=0"].startswith("queued")
    assert "local executor, submitted" in by_cell["beta=1.0_method=ncvae_delta=3.0_seed=0"]


@pytest.mark.slow
def test_the_status_command_exits_1_with_a_failed_cell_and_2_without_results(tmp_path):
    out = _results(tmp_path)
    command = [sys.executable, "-m", "vaezoo_bench.status"]
    shown = subprocess.run([*command, str(out)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert shown.returncode == 1 and "1 running" in shown.stdout and not shown.stderr
    missing = subprocess.run([*command, str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and "holds no matrix.json" in missing.stderr and "Traceback" not in missing.stderr
    bad = subprocess.run([*command, str(out), "--watch", "0"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "--watch must be a positive number of seconds, got 0" in bad.stderr
