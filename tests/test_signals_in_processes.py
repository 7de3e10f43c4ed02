"""Stop signals as a user's terminal and a scheduler send them, to real processes: no step is ever trained twice
and the message names the checkpoint that is on disk.

- Several signals during a checkpoint's save (slowed down, so that they land in it) leave the save complete.
- A terminal's Ctrl-C reaches the runner's whole process group; the runner's cells stop once, with their
  checkpoints, and rerunning the suite resumes every cell at the step it stopped at.
- Signals raised in this process check the pieces: repeated signals in a deferred block, signals held back
  during a save.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, small_raw
from tests.test_benchmarks import TINY_BASE, write
from tests.test_executors import LONG, history, results, run_suite, trained_once
from vaezoo.base.errors import UsageError
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from vaezoo.runs.directory import LOCK_NAME
from vaezoo.runs.interrupts import (
    ALREADY_STOPPING,
    STOP_WITH_PARENT_ENV,
    Interrupted,
    StopSignals,
    signals_held,
    stop_with_launcher,
)

pytestmark = pytest.mark.adversarial

#: A ``vaezoo`` command whose checkpoint writes are slowed down: each write appends a line to $SAVE_MARKS, then
#: sleeps $SAVE_SECONDS before writing, so that a test can send signals while a save is under way.
SLOW_SAVE = """
import os, sys, time
import vaezoo.base.files as files
from vaezoo.runs.checkpoint import MAGIC
from vaezoo.cli.main import main
write_all = files._write_all
def slow_write_all(fd, data):
    if data.startswith(MAGIC):  # a checkpoint's, not one of the run's JSON files
        with open(os.environ["SAVE_MARKS"], "a") as marks:
            marks.write("save\\n")
        time.sleep(float(os.environ["SAVE_SECONDS"]))
    write_all(fd, data)
files._write_all = slow_write_all
sys.exit(main(sys.argv[1:]))
"""
KEPT = re.compile(r"the checkpoint of step (\d+) is kept")
#: Two cells whose steps take tens of milliseconds, as a real network's do (a few seconds each on one core): a
#: second signal sent on the heels of a first lands inside the step the first let finish.
HEAVY_STEPS = (
    """
[suite]
name = "heavy"
"""
    + TINY_BASE.replace("dim = 10", "dim = 200")
    .replace("n_train = 256", "n_train = 1024")
    .replace("hidden = [16]", "hidden = [1024, 1024]")
    .replace("steps = 20", "steps = 300")
    .replace("eval_every = 10", "eval_every = 75")
    + """
[axes]
"train.seed" = [0, 1]
"""
)


# -- the pieces, in this process -----------------------------------------------------------------------------------


def test_repeated_signals_in_a_deferred_block_are_noted_and_never_raised(capfd):
    with StopSignals() as signals, signals.deferred():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            signal.raise_signal(signum)
        assert signals.requested == signal.SIGINT, "the first signal is the one the run stops by"
    assert capfd.readouterr().err == 2 * ALREADY_STOPPING.decode()


def test_signals_held_during_a_block_are_handled_once_each_when_it_ends():
    handled: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: handled.append(signum))
    try:
        with signals_held():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
            assert handled == [], "nothing is handled inside the block"
        assert handled == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_save_interrupted_by_signals_completes_and_the_stop_comes_after_it(tmp_path, monkeypatch):
    import vaezoo.base.files as files

    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1})
    write_all = files._write_all

    def signalled_write_all(fd: int, data: bytes) -> None:
        signal.raise_signal(signal.SIGINT)  # an immediate block: this would raise at once, mid-write
        signal.raise_signal(signal.SIGTERM)
        write_all(fd, data)

    monkeypatch.setattr(files, "_write_all", signalled_write_all)
    with StopSignals(), pytest.raises(Interrupted) as stop:
        save_checkpoint(path, {"step": 2})
    assert stop.value.signum == signal.SIGINT
    assert load_checkpoint(path)["step"] == 2, "the save that had started is on disk, whole"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"


def test_a_launcher_that_is_not_this_processs_parent_stops_it_and_a_malformed_one_is_refused():
    with pytest.raises(Interrupted) as stop:
        stop_with_launcher({STOP_WITH_PARENT_ENV: str(os.getpid())})  # this process is not its own parent
    assert stop.value.signum == signal.SIGTERM
    with pytest.raises(UsageError, match=f"{STOP_WITH_PARENT_ENV} must be a process id, got 'me'"):
        stop_with_launcher({STOP_WITH_PARENT_ENV: "me"})
    stop_with_launcher({})  # not launched by a runner: nothing to do


# -- vaezoo run, signalled during a save ---------------------------------------------------------------------------


def _start_slow_saving_run(tmp_path: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    config, marks = tmp_path / "run.json", tmp_path / "saves.txt"
    config.write_text(json.dumps(small_raw()))
    env = {**os.environ, "SAVE_MARKS": str(marks), "SAVE_SECONDS": "1.0"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, "run", "--config", str(config), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return process, marks


def _wait_for_saves(process: subprocess.Popen, marks: Path, count: int) -> None:
    deadline = time.monotonic() + 300
    while not (marks.exists() and len(marks.read_text().splitlines()) >= count):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached that save"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signals", "exit_code"),
    [
        ((signal.SIGINT, signal.SIGINT), 130),
        ((signal.SIGINT, signal.SIGINT, signal.SIGINT), 130),
        ((signal.SIGTERM,), 143),
        ((signal.SIGTERM, signal.SIGINT), 143),
    ],
    ids=["two-sigint", "three-sigint", "sigterm", "sigterm-then-sigint"],
)
def test_signals_during_a_save_keep_the_step_being_saved_and_the_message_names_it(tmp_path, signals, exit_code):
    out = tmp_path / "run"
    process, marks = _start_slow_saving_run(tmp_path, out)
    _wait_for_saves(process, marks, 2)  # the first save is step 0's; the second, step 10's, is under way
    for signum in signals:
        process.send_signal(signum)
        time.sleep(0.2)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    kept = int(KEPT.search(stderr).group(1))
    on_disk = load_checkpoint(out / CHECKPOINT_NAME)["step"]
    interrupted = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()][-1]
    assert kept == on_disk == interrupted["step"] == interrupted["checkpoint"] == 10
    assert not list(out.glob(".*.tmp")), "the save was not cut short"

    resumed = subprocess.run(
        [sys.executable, "-m", "vaezoo", "run", "--resume", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"
    config = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "vaezoo", "run", "--config", str(config), "--out", str(straight)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    metrics = [json.loads((path / "results.json").read_text())["metrics"] for path in (out, straight)]
    assert metrics[0] == metrics[1], "resumed at the step it stopped at: the same results as straight through"


# -- the runner, stopped by a terminal's Ctrl-C ------------------------------------------------------------------


def _start_in_own_session(arguments: list[str]) -> subprocess.Popen:
    """The runner as a terminal's foreground job: the leader of a process group (``setsid``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "vaezoo_bench.run", *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _steps_trained(out: Path) -> int:
    """The latest step any cell's checkpoint of this results directory holds (0 before any)."""
    steps = [load_checkpoint(path)["step"] for path in (out / "cells").glob(f"*/run/{CHECKPOINT_NAME}")]
    return max(steps, default=0)


def _ctrl_c_to_the_group_midway(arguments: list[str], out: Path, past_step: int) -> subprocess.CompletedProcess:
    """Start the runner in a session of its own and, once a cell's checkpoint is past ``past_step`` (so that the
    signal lands mid-training), send SIGINT to the runner's whole process group, as a terminal's Ctrl-C does."""
    runner = _start_in_own_session(arguments)
    deadline = time.monotonic() + 600
    while _steps_trained(out) <= past_step:
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "no cell got that far"
        time.sleep(0.3)
    time.sleep(1.0)
    os.killpg(runner.pid, signal.SIGINT)
    stdout, stderr = runner.communicate(timeout=600)
    return subprocess.CompletedProcess(runner.args, runner.returncode, stdout, stderr)


@pytest.mark.slow
def test_a_terminals_ctrl_c_to_the_runners_group_stops_each_cell_once_and_reruns_train_no_step_twice(tmp_path):
    suite = write(tmp_path, HEAVY_STEPS)
    out = tmp_path / "out"
    arguments = [str(suite), "--jobs", "2", "--threads", "1", "--out", str(out)]
    for _ in range(2):  # stopped twice, each time a second after a new checkpoint: mid-training
        stopped = _ctrl_c_to_the_group_midway(arguments, out, _steps_trained(out))
        assert stopped.returncode == 130, stopped.stdout + stopped.stderr
        assert "Traceback" not in stopped.stderr
    done = run_suite(*arguments)
    assert done.returncode == 0, done.stdout + done.stderr
    for cell in ("seed=0", "seed=1"):
        events = history(out, cell)
        assert trained_once(events), events
        assert sum(event == "interrupted" for event, _ in events) == 2, events
        log = (out / "cells" / cell / "log.txt").read_text()
        kept = [int(step) for step in KEPT.findall(log)]
        assert kept == [step for event, step in events if event == "interrupted"], "each message names its step"
        assert "already stopping" not in log, "each cell's process was signalled once"
    straight = tmp_path / "straight"
    local = run_suite(str(suite), "--jobs", "2", "--threads", "1", "--out", str(straight))
    assert local.returncode == 0, local.stdout + local.stderr
    assert results(out) == results(straight)


@pytest.mark.slow
def test_a_runner_killed_outright_leaves_no_cell_running_and_the_rerun_resumes_each_at_its_checkpoint(tmp_path):
    # cells that checkpoint early (step 1,500) and then train on for seconds: the kill lands while both train
    suite = write(
        tmp_path, LONG.replace("steps = 20000", "steps = 8000").replace("eval_every = 5000", "eval_every = 1500")
    )
    out = tmp_path / "out"
    arguments = [str(suite), "--jobs", "2", "--threads", "1", "--out", str(out)]
    runner = _start_in_own_session(arguments)
    deadline = time.monotonic() + 600
    checkpoints = [out / "cells" / cell / "run" / CHECKPOINT_NAME for cell in ("seed=0", "seed=1")]
    while not all(path.exists() and load_checkpoint(path)["step"] > 0 for path in checkpoints):  # both training
        assert runner.poll() is None, runner.communicate()
        assert time.monotonic() < deadline, "no cell got that far"
        time.sleep(0.3)
    runner.kill()  # SIGKILL: the runner has no chance to stop its cells
    runner.communicate(timeout=60)
    locks = list((out / "cells").glob(f"*/run/{LOCK_NAME}"))
    while any(lock.read_text().strip() for lock in locks):  # a cell's process clears its lock as it ends
        assert time.monotonic() < deadline, "a cell's process outlived its runner"
        time.sleep(0.3)
    for cell in ("seed=0", "seed=1"):
        last = json.loads((out / "cells" / cell / "run" / "history.jsonl").read_text().splitlines()[-1])
        assert (last["event"], last["signal"]) == ("interrupted", "SIGTERM")
    done = run_suite(*arguments)
    assert done.returncode == 0, done.stdout + done.stderr
    for cell in ("seed=0", "seed=1"):
        assert trained_once(history(out, cell)), history(out, cell)
