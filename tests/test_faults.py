"""Nothing is lost: a run killed with SIGKILL at random points resumes to the same result as a straight run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint

pytestmark = pytest.mark.slow  # every test here trains or starts processes

RUN = [
    "run", "--steps", "60", "--set", "train.eval_every=5", "--set", "data.dim=10", "--set", "data.n_train=512",
    "--set", "data.n_valid=64", "--set", "data.n_test=64", "--set", "eval.iw_samples=5", "--no-progress",
]  # fmt: skip
EXPECTED_STEPS = list(range(5, 61, 5))


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaezoo", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    began = time.perf_counter()
    result = run_cli(*RUN, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, time.perf_counter() - began


def killed_and_resumed(out, chooser: random.Random, duration: float) -> int:
    """Start the run, SIGKILL it up to three times at random moments, resume until it completes; the kills."""
    kills = 0
    process = start(*RUN, "--out", str(out))
    for _ in range(3):  # each kill at a random moment of the remaining work
        try:
            process.wait(timeout=chooser.uniform(0.1, 0.7) * duration)
            break
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
        if (out / CHECKPOINT_NAME).exists():
            load_checkpoint(out / CHECKPOINT_NAME)  # never corrupt, whenever the kill came
        if (out / CHECKPOINT_NAME).exists():
            process = start("run", "--resume", str(out), "--no-progress")
        else:  # killed before its first checkpoint: nothing to resume, start again over what it left
            process = start(*RUN, "--out", str(out), "--overwrite")
    stderr = process.communicate(timeout=600)[1]
    assert process.returncode == 0, stderr
    return kills


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_random_points_then_resume_gives_the_straight_result(straight_run, tmp_path, seed):
    reference, duration = straight_run
    chooser = random.Random(seed)
    for attempt in range(4):  # a run that outpaced every kill tested nothing: try again, killing sooner
        out = tmp_path / f"run-{attempt}"
        kills = killed_and_resumed(out, chooser, duration / 2**attempt)
        if kills:
            break
    assert kills >= 1, "the run always finished before the first kill: nothing was tested"
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == EXPECTED_STEPS, f"after {kills} kills"
    final = json.loads((out / "results.json").read_text())["metrics"]
    assert final == json.loads((reference / "results.json").read_text())["metrics"], f"after {kills} kills"
    assert not list(out.glob(".checkpoint.pt.*.tmp"))
