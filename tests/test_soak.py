"""A long run keeps its memory flat: 2000 training steps in a real ``vaezoo run`` process.

The test samples the child's resident set size (``/proc/PID/statm``) along the run. Warm-up ends when step
WARMUP_STEP is logged (allocator caches filled, the first checkpoints written, lazy imports done); from then until
the last step is logged, the RSS may not grow by more than BOUND_MB (a healthy run grows by less than 1 MB). A run
that keeps every step's record and loss terms (a cache without a bound, a list of losses with their graphs) grows
by about 70 KB a step, some 100 MB after warm-up, and the second test checks that the harness sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

STEPS = 2000
WARMUP_STEP = 500
BOUND_MB = 15.0
RUN = [
    "run", "--steps", str(STEPS), "--batch-size", "64", "--set", "train.eval_every=250",
    "--set", "data.n_train=2048", "--set", "data.n_valid=256", "--set", "data.n_test=256",
    "--set", "encoder.hidden=[64]", "--set", "decoder.hidden=[64]", "--set", "eval.iw_samples=10",
    "--set", "train.threads=1", "--no-progress",
]  # fmt: skip
HOARDING_RUN = textwrap.dedent(
    '''
    import functools
    import sys
    from vaezoo import hookimpl
    from vaezoo.plugins import loading
    from vaezoo_plugins.regularizers.betavae import BetaVAE

    class Hoarder(BetaVAE):
        """beta-VAE that keeps every step's record and loss terms: a leak."""
        name = "hoarder"
        kept = []

        def forward(self, step):
            terms = super().forward(step)
            self.kept.append((step, terms))
            return terms

    class Plugin:
        @hookimpl
        def vaezoo_register(self, register):
            register(Hoarder)

    # before the commands are imported, so that each of them finds this process's plugins with the hoarder
    loading.default_plugins = functools.cache(lambda: loading.load_plugins(extra=(Plugin(),), lazy=True))
    from vaezoo.cli import main as cli

    sys.exit(cli.main(sys.argv[1:]))
    '''
)
PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def resident_mb(pid: int) -> float | None:
    """The current resident set size of a live process, None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_MB
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def last_logged_step(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    lines = metrics.read_text().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)["step"]
        except json.JSONDecodeError:  # a line being written
            continue
    return 0


def soak(out: Path, program: list[str], *options: str) -> tuple[float, float]:
    """``python PROGRAM run ... OPTIONS --out OUT``; its RSS in MB at the end of warm-up and its growth after it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *program, *RUN, *options, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    baseline, peak = None, 0.0
    try:
        while process.poll() is None:
            rss = resident_mb(process.pid)
            step = last_logged_step(out / "metrics.jsonl")
            if rss is None or step >= STEPS:
                break  # what follows the last step (test metrics, the figure) is not the training loop
            if baseline is None and step >= WARMUP_STEP:
                baseline = rss
            elif baseline is not None:
                peak = max(peak, rss)
            time.sleep(0.02)
        stderr = process.communicate(timeout=300)[1]
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert baseline is not None and peak > 0, "the run ended before it could be sampled after warm-up"
    return baseline, peak - baseline


@pytest.mark.slow
def test_resident_memory_stays_flat_over_2000_steps(tmp_path):
    baseline, growth = soak(tmp_path / "run", ["-m", "vaezoo"])
    print(f"RSS {baseline:.1f} MB after warm-up, growth {growth:.2f} MB over {STEPS - WARMUP_STEP} steps")
    assert growth < BOUND_MB


@pytest.mark.slow
def test_the_soak_harness_sees_a_real_leak(tmp_path):
    baseline, growth = soak(tmp_path / "run", ["-c", HOARDING_RUN], "--regularizer", "hoarder")
    print(f"leaking run: RSS {baseline:.1f} MB after warm-up, growth {growth:.2f} MB")
    assert growth > 2 * BOUND_MB
