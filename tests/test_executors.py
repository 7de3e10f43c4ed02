"""Executors of the benchmark runner: local, Slurm through submitit (its local executor, the same submission,
signal and requeue path as on a cluster) and a real Ray cluster started on loopback, plus a third party's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.conftest import REPO
from tests.test_benchmarks import TINY_BASE, write
from vaezoo.api import load_plugins
from vaezoo_bench.executors import Context, make_executor
from vaezoo_bench.run import main

SMOKE = REPO / "benchmarks" / "suites" / "smoke.toml"
#: The smoke suite's quick profile cut to β-VAE and NC-VAE: 6 cells, NC-VAE's in two phases (its δ swept on seed 0,
#: the chosen δ then run on seed 1), which is what an executor must get right.
SMOKE_CELLS = [str(SMOKE), "--profile", "quick", "--only", "method=betavae,ncvae"]
EXECUTOR_SITE = Path(__file__).parent / "fixtures" / "executor_site"
#: Cells long enough (15 to 20 s of training on one idle core) for a job to be signalled in the middle of one.
LONG = (
    """
[suite]
name = "long"
"""
    + TINY_BASE.replace("steps = 20", "steps = 20000").replace("eval_every = 10", "eval_every = 5000")
    + """
[axes]
"train.seed" = [0, 1]
"""
)


def context(tmp_path: Path) -> Context:
    return Context(tmp_path, jobs=1, threads=1, data_dir=None, timeout=None)


def test_the_built_in_executors_are_components_of_the_bench_plugin():
    plugins = load_plugins()
    entries = plugins.registry.entries("executor")
    assert {"local", "slurm", "ray"} <= set(entries) and not plugins.failures
    assert {entries[name].origin for name in ("local", "slurm", "ray")} == {"plugin 'bench' (distribution vaezoo)"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--executor", "pbs"], "unknown executor 'pbs'; choices: local, ray, slurm"),
        (["--executor", "slurm", "--executor-option", "partiton=gpu"], "executor 'slurm' has no option 'partiton'"),
        (["--executor", "slurm", "--executor-option", "time=2h"], "option 'time' of executor 'slurm' must be an"),
        (["--executor", "slurm", "--executor-option", "cluster=pbs"], "must be one of slurm, local, got 'pbs'"),
        (["--executor", "slurm", "--executor-option", "gpus=-1"], "option 'gpus' of executor 'slurm' must be at"),
        (["--executor", "ray", "--executor-option", "address"], "--executor-option expects NAME=VALUE, got 'address'"),
        (
            ["--executor", "local", "--executor-option", "jobs=2"],
            "executor 'local' has no option 'jobs'; its options: none",
        ),
    ],
)
def test_a_bad_executor_or_option_is_a_one_line_usage_error_before_anything_runs(tmp_path, capsys, arguments, message):
    suite, out = write(tmp_path, LONG), tmp_path / "out"
    assert main([str(suite), "--out", str(out), *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not out.exists(), "nothing was written, let alone submitted"


def test_the_slurm_options_name_their_meaning_and_defaults(tmp_path):
    executor = make_executor("slurm", ["time=30", "gpus=1", "partition=gpu"], context(tmp_path), load_plugins())
    assert (
        executor.settings["time"] == 30 and executor.settings["gpus"] == 1 and executor.settings["partition"] == "gpu"
    )
    assert executor.settings["signal_delay_s"] == 90 and executor.settings["cluster"] == "slurm"
    assert all(field.metadata["help"] for field in attrs.fields(executor.Params))


@pytest.mark.parametrize(("name", "module", "extra"), [("slurm", "submitit", "slurm"), ("ray", "ray", "ray")])
def test_a_missing_extra_is_a_one_line_error_naming_the_install_command(tmp_path, monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    executor = make_executor(name, [], context(tmp_path), load_plugins())
    with pytest.raises(Exception, match=rf"needs {module}, which is not installed: pip install 'vaezoo\[{extra}\]'"):
        executor.start()


def test_slurm_without_sbatch_says_how_to_run_the_jobs_here(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    executor = make_executor("slurm", [], context(tmp_path), load_plugins())
    with pytest.raises(Exception, match=r"sbatch is not on PATH .* cluster=local runs the jobs here"):
        executor.start()


# -- real engines ------------------------------------------------------------------------------------------------


def run_suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaezoo_bench.run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=900,
    )


def results(out: Path) -> dict[str, dict]:
    """Each cell's status and metrics under each test prior (what must not depend on where it ran)."""
    cells = {path.parent.name: json.loads(path.read_text()) for path in (out / "cells").glob("*/cell.json")}
    return {cell: (record["status"], record["test_priors"]) for cell, record in cells.items()}


def history(out: Path, cell: str) -> list[tuple[str, int]]:
    lines = (out / "cells" / cell / "run" / "history.jsonl").read_text().splitlines()
    return [(entry["event"], entry["step"]) for entry in map(json.loads, lines)]


def trained_once(events: list[tuple[str, int]]) -> bool:
    """One start, and every resume at the step its interruption checkpointed, or, when the interruption came after
    training, during the final evaluation (which records no interruption), at the last step and only evaluating:
    no step trained twice."""
    starts = [event for event, _ in events if event == "started"]
    resumes_match = all(
        events[i - 1] == ("interrupted", step) or events[i + 1 : i + 2] == [("finished", step)]
        for i, (event, step) in enumerate(events)
        if event == "resumed"
    )
    return len(starts) == 1 and resumes_match and events[-1][0] == "finished"


def interrupt_midway(arguments: list[str], out: Path) -> subprocess.CompletedProcess:
    """Start the runner, send it SIGINT (Ctrl-C) once some cell is training, and return its finished process."""
    runner = subprocess.Popen(
        [sys.executable, "-m", "vaezoo_bench.run", *arguments, "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not any((out / "cells").glob("*/run/history.jsonl")) and runner.poll() is None:
        assert time.monotonic() < deadline, "no cell started training"
        time.sleep(0.2)
    runner.send_signal(signal.SIGINT)
    stdout, stderr = runner.communicate(timeout=600)
    return subprocess.CompletedProcess(runner.args, runner.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def smoke_locally(tmp_path_factory) -> dict[str, dict]:
    """``SMOKE_CELLS`` with the local executor: the results every engine must reproduce."""
    out = tmp_path_factory.mktemp("local") / "out"
    done = run_suite(*SMOKE_CELLS, "--jobs", "2", "--threads", "1", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    found = results(out)
    assert len(found) == 6 and all(status == "ok" for status, _ in found.values())
    return found


def _interrupted_then_completed(arguments: list[str], out: Path, expected: dict[str, dict]) -> None:
    stopped = interrupt_midway(arguments, out)
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert "rerun the same command to resume" in stopped.stderr
    assert len(results(out)) < len(expected), "the interruption came before the matrix ended"
    rerun = run_suite(*arguments, "--out", str(out))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert results(out) == expected, "the same results as the local executor's"
    for cell in expected:
        assert trained_once(history(out, cell)), (cell, history(out, cell))


@pytest.mark.slow
def test_slurm_jobs_through_submitit_interrupted_and_rerun_give_the_local_results(smoke_locally, tmp_path):
    arguments = [*SMOKE_CELLS, "--jobs", "2", "--threads", "1"]
    arguments += ["--executor", "slurm", "--executor-option", "cluster=local"]
    out = tmp_path / "out"
    _interrupted_then_completed(arguments, out, smoke_locally)
    cell = json.loads(next((out / "cells").glob("*/cell.json")).read_text())
    assert cell["job"]["executor"] == "slurm" and cell["job"]["id"].isdigit()


@pytest.mark.slow
def test_a_slurm_job_signalled_before_its_time_limit_checkpoints_requeues_and_resumes(tmp_path):
    """submitit signals each attempt 10 s into its 1-minute limit (signal_delay_s 50): the cell's child writes its
    checkpoint, submitit requeues the job and the next attempt resumes, until the cell is done. submitit's local
    controller ends a job a minute after its first start, requeues included, so the cells train 8,000 steps: more
    than a first attempt's few seconds of training reach on a fast core, few enough for a slow one (about 15 s of
    training at 550 steps a second) to finish within the minute despite each restart's seconds."""
    suite = write(tmp_path, LONG.replace("steps = 20000", "steps = 8000"))
    options = ["cluster=local", "time=1", "signal_delay_s=50", "max_timeouts=20"]
    arguments = [str(suite), "--jobs", "2", "--threads", "1", "--executor", "slurm"]
    arguments += [item for option in options for item in ("--executor-option", option)]
    done = run_suite(*arguments, "--out", str(tmp_path / "slurm"))
    assert done.returncode == 0, done.stdout + done.stderr
    local = run_suite(str(suite), "--jobs", "2", "--threads", "1", "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stdout + local.stderr
    assert results(tmp_path / "slurm") == results(tmp_path / "local")
    for cell in ("seed=0", "seed=1"):
        events = history(tmp_path / "slurm", cell)
        assert ("interrupted", events[1][1]) == events[1] and events[1][1] > 0, "stopped mid-run at least once"
        assert trained_once(events), events


@pytest.mark.slow
def test_a_job_that_fails_as_a_job_is_recorded_with_its_id_and_log_and_the_rerun_resumes_it(tmp_path):
    """With no requeue allowed, the signal before the time limit ends the job: submitit gives up on it after the
    cell has checkpointed. The cell is failed at stage job, with the job's id and its log's tail; rerunning with
    room resumes it from that checkpoint."""
    suite, out = write(tmp_path, LONG), tmp_path / "out"
    arguments = [str(suite), "--only", "seed=0", "--threads", "1", "--executor", "slurm", "--out", str(out)]
    arguments += ["--executor-option", "cluster=local"]
    limited = ["--executor-option", "time=1", "--executor-option", "signal_delay_s=50"]
    failed = run_suite(*arguments, *limited, "--executor-option", "max_timeouts=0")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    cell = json.loads((out / "cells" / "seed=0" / "cell.json").read_text())
    job = json.loads((out / "cells" / "seed=0" / "job.json").read_text())
    assert cell["status"] == "failed" and cell["stage"] == "job" and job["id"].isdigit() and job["outlives_runner"]
    assert (
        f"job {job['id']} of executor 'slurm' failed" in cell["error"] and "timed-out too many times" in cell["error"]
    )
    assert "failed  seed=0" in failed.stdout and "Traceback" not in failed.stderr
    rerun = run_suite(*arguments)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert json.loads((out / "cells" / "seed=0" / "cell.json").read_text())["attempts"] == 2
    assert trained_once(history(out, "seed=0")), history(out, "seed=0")


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A real Ray cluster on loopback with 2 CPUs, started with ``ray start --head``; its address."""
    ray = Path(sys.executable).parent / "ray"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    command = [str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    command += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=300)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_tasks_on_a_real_cluster_interrupted_and_rerun_give_the_local_results(smoke_locally, ray_cluster, tmp_path):
    arguments = [*SMOKE_CELLS, "--threads", "1"]
    arguments += ["--executor", "ray", "--executor-option", f"address={ray_cluster}"]
    out = tmp_path / "out"
    _interrupted_then_completed(arguments, out, smoke_locally)
    cell = json.loads(next((out / "cells").glob("*/cell.json")).read_text())
    assert cell["job"]["executor"] == "ray" and len(cell["job"]["id"]) > 8


@pytest.mark.slow
def test_ray_at_an_address_with_no_cluster_is_a_one_line_error(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    suite = write(tmp_path, LONG)
    refused = run_suite(
        str(suite),
        "--out",
        str(tmp_path / "out"),
        "--executor",
        "ray",
        "--executor-option",
        f"address=127.0.0.1:{port}",
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"could not connect to the Ray cluster at '127.0.0.1:{port}'" in refused.stderr


@pytest.mark.slow
def test_a_third_party_executor_runs_the_cells_and_a_broken_one_is_named_without_taking_it_down(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXECUTOR_SITE), str(REPO)])}
    suite = write(tmp_path, LONG.replace("steps = 20000", "steps = 40").replace("eval_every = 5000", "eval_every = 20"))
    out = tmp_path / "out"
    done = run_suite(str(suite), "--out", str(out), "--executor", "inline", "--executor-option", "label=x", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plugin 'broken' (distribution vaezoo-inline-executor) failed and is left out" in done.stderr
    cells = {path.parent.name: json.loads(path.read_text()) for path in (out / "cells").glob("*/cell.json")}
    assert {cell["status"] for cell in cells.values()} == {"ok"}
    jobs = [json.loads((out / "cells" / cell / "job.json").read_text()) for cell in cells]
    assert sorted(job["id"] for job in jobs) == ["x-1", "x-2"] and {job["executor"] for job in jobs} == {"inline"}
    # the runner, a process that has ended now, is named; an executor's jobs do not outlive it unless it says so
    assert {job["outlives_runner"] for job in jobs} == {False}
    assert all(job["runner"].startswith("process ") for job in jobs)
    unknown = run_suite(str(suite), "--out", str(out), "--executor", "broken", env=env)
    assert unknown.returncode == 2, unknown.stderr
    assert "unknown executor 'broken'; choices: inline, local, ray, slurm (plugins that failed to load: broken)" in (
        unknown.stderr
    )
