"""Run a suite's matrix of cells, each through vaezoo's public command line in child processes.

Usage::

    python -m benchmarks.run SUITE.toml [--profile NAME] [--jobs N] [--threads N] [--out DIR]
                                        [--data-dir DIR] [--timeout SECONDS] [--dry-run]
                                        [--only AXIS=VALUE[,VALUE...]]...

``--only`` restricts the run to the cells with those axis values (repeat it for several axes; values of one axis
add up). matrix.json always describes the whole matrix, so runs restricted to different cells can share one
``--out`` (each, say, a tox environment of its own) and the report shows every finished cell, the others pending.

Every cell runs ``python -m vaezoo.cli run --config CELL/config-in.json --out CELL/run --no-progress``, then
``python -m vaezoo.cli eval CELL/run --test-prior P,Q --json`` for the other test priors it asks for, all in one
pass (the run's own test prior is read from its results.json), up to ``--jobs`` cells at once, each child with
``OMP_NUM_THREADS`` = ``--threads`` (default: the usable cores divided by the jobs, at least 1). Results land in
the layout of :mod:`benchmarks.results`.

Resuming: rerunning the same command on the same ``--out`` continues the matrix. A cell whose status is ``ok``
(and which has every requested test prior) is never touched. A failed or pending cell is run again from where
it stopped: a run with results.json is only evaluated again, a run with a checkpoint but no results.json is
continued with ``vaezoo run --resume`` (no training is lost), anything else trains from scratch. Invalid
combinations (see :mod:`benchmarks.validate`) are recorded as skipped and never run. When the suite or profile
has changed a cell's configuration after it started, the runner refuses (use another ``--out``).

A failing cell (a non-zero exit, a timeout) is recorded with the tail of its child's output and does not stop
the others. Exit status: 0 when no cell failed, 1 when some did, 2 for a bad suite or argument, 130 when
interrupted (the interrupted cells stay pending, and rerunning resumes them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import attrs

from benchmarks.args import Parser
from benchmarks.results import (
    CELL_NAME,
    CONFIG_IN_NAME,
    FAILED,
    LOG_NAME,
    MATRIX_NAME,
    OK,
    RUN_DIR,
    SKIPPED,
    cell_dir,
    cell_record,
    read_json,
    write_json,
)
from benchmarks.suite import (
    Cell,
    choose_profile,
    effective_axes,
    expand,
    load_suite,
    matrix_document,
    parse_selection,
    select,
)
from benchmarks.validate import Validator
from vaezoo.checkpoint import CHECKPOINT_NAME
from vaezoo.errors import UsageError
from vaezoo.rundir import RESULTS_NAME, SCATTER_NAME

# What the runner does with a cell: nothing (finished), record it as invalid, evaluate a finished run again,
# continue a run from its checkpoint, or train from scratch.
DONE, SKIP, EVALUATE, RESUME, TRAIN = "done", "skip", "evaluate", "resume", "train"
ERROR_TAIL_LINES = 20
INTERRUPTED_CODES = (130, -signal.SIGINT)


@attrs.frozen
class Planned:
    """A cell, what the runner will do with it, why it is skipped (if so), and its previous cell.json."""

    cell: Cell
    action: str
    reason: str | None
    previous: dict[str, Any] | None


class Interrupted(Exception):
    """The runner is stopping; the cell stays pending."""


class StageFailed(Exception):
    """A child process of a cell failed; ``stage`` names it, the message holds its output's tail."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _comparable(raw: dict[str, Any]) -> Any:
    return json.loads(json.dumps(raw))


def plan(cells: Sequence[Cell], out: Path, validator: Validator) -> list[Planned]:
    """Decide each cell's action from what ``out`` already holds; refuse cells whose config has changed."""
    planned, changed = [], []
    for cell in cells:
        directory = cell_dir(out, cell.id)
        previous = read_json(directory / CELL_NAME)
        stored = read_json(directory / CONFIG_IN_NAME)
        if stored is not None and stored != _comparable(cell.raw) and (directory / RUN_DIR).exists():
            changed.append(cell.id)
            continue
        have = previous["test_priors"] if previous else {}
        if previous is not None and previous["status"] == OK and all(p in have for p in cell.test_priors):
            planned.append(Planned(cell, DONE, None, previous))
            continue
        # A run that has started passed these checks before; only fresh cells are validated.
        run, reason = directory / RUN_DIR, None
        if (run / RESULTS_NAME).exists():
            action = EVALUATE
        elif (run / CHECKPOINT_NAME).exists():
            action = RESUME
        else:
            reason = validator.skip_reason(cell.raw)
            action = TRAIN if reason is None else SKIP
        planned.append(Planned(cell, action, reason, previous))
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UsageError(
            f"{len(changed)} cell(s) in {str(out)!r} were started with a different configuration (the suite or "
            f"profile changed): {shown}; choose another --out or delete those cell directories"
        )
    return planned


def _failure(headline: str, output: str) -> str:
    """The error text of a failed child: a headline, then the tail of its output."""
    return "\n".join([headline, *output.strip().splitlines()[-ERROR_TAIL_LINES:]])


class CellRunner:
    """Runs cells through vaezoo's command line; thread-safe, one instance per matrix run."""

    def __init__(self, out: Path, data_dir: Path | None, threads: int, timeout: float | None) -> None:
        self.out, self.data_dir, self.timeout = out, data_dir, timeout
        self.env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.stopping = threading.Event()
        self._live: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    # -- child processes --------------------------------------------------------------------------
    def _vaezoo(self, stage: str, log: Path, *args: str) -> str:
        """Run ``python -m vaezoo.cli ARGS``, append it and its output to ``log``, return its stdout."""
        if self.stopping.is_set():
            raise Interrupted
        command = [sys.executable, "-m", "vaezoo.cli", *args]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )
        with self._lock:
            self._live.add(process)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            timed_out = True
        finally:
            with self._lock:
                self._live.discard(process)
        with log.open("a") as handle:
            handle.write(f"$ {' '.join(command)}\n{stdout}{stderr}[exit {process.returncode}]\n\n")
        if timed_out:
            raise StageFailed(stage, _failure(f"timed out after {self.timeout:g} s (killed)", stderr or stdout))
        if process.returncode in INTERRUPTED_CODES or self.stopping.is_set():
            raise Interrupted
        if process.returncode != 0:
            raise StageFailed(stage, _failure(f"exit status {process.returncode}", stderr or stdout))
        return stdout

    def stop(self) -> None:
        """Stop starting children and interrupt the running ones (they keep their last checkpoint)."""
        self.stopping.set()
        with self._lock:
            for process in self._live:
                process.send_signal(signal.SIGINT)

    # -- one cell ---------------------------------------------------------------------------------
    def run(self, planned: Planned) -> dict[str, Any] | None:
        """Carry out ``planned`` (not DONE or SKIP); the cell.json written, or None when interrupted."""
        cell, previous = planned.cell, planned.previous or {}
        directory = cell_dir(self.out, cell.id)
        run, log = directory / RUN_DIR, directory / LOG_NAME
        write_json(directory / CONFIG_IN_NAME, cell.raw)
        started = time.perf_counter()
        # Evaluations of a run that is not retrained stay valid; a retrained run is evaluated afresh.
        metrics: dict[str, dict[str, Any]] = dict(previous.get("test_priors", {})) if planned.action == EVALUATE else {}
        train: dict[str, Any] | None = None
        status, stage, error = OK, None, None
        try:
            if planned.action == TRAIN:
                config = str(directory / CONFIG_IN_NAME)
                # a run directory without a checkpoint holds nothing trained: start it afresh over what it left
                self._vaezoo("train", log, "run", "--config", config, "--out", str(run), "--overwrite", "--no-progress")
            elif planned.action == RESUME:
                self._vaezoo("resume", log, "run", "--resume", str(run), "--no-progress")
            results = read_json(run / RESULTS_NAME)
            if results is None:
                raise StageFailed(planned.action, f"the run left no {RESULTS_NAME} in {str(run)!r}")
            train = {k: results[k] for k in ("steps", "seed", "wall_time_s", "test_prior", "metrics")}
            if results["test_prior"] in cell.test_priors and results["test_prior"] not in metrics:
                metrics[results["test_prior"]] = results["metrics"]
            missing = ",".join(prior for prior in cell.test_priors if prior not in metrics)
            if missing:  # all in one pass: the decoder's IW-NLL work is shared by the priors
                stdout = self._vaezoo(f"eval:{missing}", log, "eval", str(run), "--test-prior", missing, "--json")
                for line in stdout.strip().splitlines():
                    if line.startswith("{"):
                        evaluated = json.loads(line)
                        metrics[evaluated["test_prior"]] = {
                            k: v for k, v in evaluated.items() if k not in ("split", "test_prior")
                        }
                unanswered = [prior for prior in cell.test_priors if prior not in metrics]
                if unanswered:
                    raise StageFailed(f"eval:{missing}", f"vaezoo eval printed no metrics for {', '.join(unanswered)}")
        except Interrupted:
            return None
        except StageFailed as failure:
            status, stage, error = FAILED, failure.stage, str(failure)
        except Exception:  # a bug of the runner must not take the other cells down
            status, stage, error = FAILED, "runner", _failure("error in the runner", traceback.format_exc())
        scatter = run / SCATTER_NAME
        record = cell_record(
            cell.id,
            cell.axes,
            status,
            attempts=previous.get("attempts", 0) + 1,
            error=error,
            stage=stage,
            wall_time_s=time.perf_counter() - started,
            train=train,
            test_priors=metrics,
            scatter=str(scatter.relative_to(directory)) if scatter.exists() else None,
        )
        write_json(directory / CELL_NAME, record)
        return record


def record_skip(out: Path, planned: Planned) -> dict[str, Any]:
    """Write the cell.json (and config-in.json) of an invalid cell."""
    cell, previous = planned.cell, planned.previous or {}
    directory = cell_dir(out, cell.id)
    write_json(directory / CONFIG_IN_NAME, cell.raw)
    record = cell_record(cell.id, cell.axes, SKIPPED, attempts=previous.get("attempts", 0), reason=planned.reason)
    write_json(directory / CELL_NAME, record)
    return record


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m benchmarks.run", description="Run a benchmark suite's matrix.")
    parser.add_argument("suite", type=Path, metavar="SUITE.toml")
    parser.add_argument("--profile", help="a [profile.NAME] of the suite (default: its default_profile)")
    parser.add_argument("--jobs", type=int, default=1, help="cells run at once (default 1)")
    parser.add_argument("--threads", type=int, help="torch threads per child (default: cores // jobs, at least 1)")
    parser.add_argument("--out", type=Path, help="results directory (default: runs/bench/SUITE[-PROFILE])")
    parser.add_argument("--data-dir", type=Path, help="data directory for every cell (default: $VAEZOO_DATA)")
    parser.add_argument("--timeout", type=float, help="seconds after which a child process is killed")
    parser.add_argument("--dry-run", action="store_true", help="print each cell's action and write nothing")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="AXIS=VALUE[,VALUE...]",
        help="run only the cells with these values of an axis (value ids as in cell ids); repeatable",
    )
    return parser


def _print_plan(planned: Sequence[Planned]) -> None:
    width = max((len(p.cell.id) for p in planned), default=0)
    for p in planned:
        print(f"{p.action:<8}  {p.cell.id:<{width}}" + (f"  {p.reason}" if p.reason else ""))


def run_suite(args: argparse.Namespace) -> int:
    """The command's body; UsageErrors propagate to :func:`main`."""
    from vaezoo.plugins import default_plugins
    from vaezoo.session import resolve_data_dir

    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    suite = load_suite(args.suite)
    profile = choose_profile(suite, args.profile)
    allowed = parse_selection(args.only, effective_axes(suite, profile))
    out = (args.out or Path("runs", "bench", suite.name + (f"-{profile.name}" if profile else ""))).resolve()
    data_dir = resolve_data_dir(args.data_dir)
    plugins = default_plugins()
    for failure in plugins.failures:
        print(f"warning: {failure.origin} failed and is left out: {failure.error}", file=sys.stderr)
    cells = expand(suite, profile)
    chosen = select(cells, allowed)
    validator = Validator(plugins.registry, data_dir)
    planned = plan(chosen, out, validator)
    for problem in validator.data_problems.values():
        print(f"warning: {problem}; its cells run and report their own errors", file=sys.stderr)
    actions = Counter(p.action for p in planned)
    profile_text = profile.name if profile else "none"
    selected = f"{len(planned)} of {len(cells)} cells (--only)" if allowed else f"{len(planned)} cells"
    print(f"suite {suite.name} (profile {profile_text}): {selected}; " + _counts(actions))
    if args.dry_run:
        _print_plan(planned)
        return 0
    write_json(out / MATRIX_NAME, matrix_document(suite, profile, cells))
    for p in planned:
        if p.action == SKIP:
            record_skip(out, p)
            print(f"skipped  {p.cell.id}: {p.reason}")
    todo = [p for p in planned if p.action not in (DONE, SKIP)]
    threads = args.threads or max(1, usable_cores() // args.jobs)
    # Children find the data directory as this process did: from --data-dir when given, else $VAEZOO_DATA.
    runner = CellRunner(out, data_dir if args.data_dir is not None else None, threads, args.timeout)
    outcomes: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(runner.run, p) for p in todo]
        try:
            for finished, future in enumerate(as_completed(futures), start=1):
                record = future.result()
                if record is None:
                    continue
                outcomes[record["status"]] += 1
                line = f"[{finished}/{len(todo)}] {record['status']:<7} {record['id']} ({record['wall_time_s']:.1f} s)"
                if record["error"]:
                    line += f": {record['stage']}: {record['error'].splitlines()[-1]}"
                print(line, flush=True)
        except KeyboardInterrupt:
            runner.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            print(f"interrupted; rerun the same command to resume the matrix in {out}", file=sys.stderr)
            return 130
    print(
        f"done: {outcomes[OK]} ok, {outcomes[FAILED]} failed this time; {actions[DONE]} were already finished, "
        f"{actions[SKIP]} skipped. Results in {out}; report: python -m benchmarks.report {out}"
    )
    return 1 if outcomes[FAILED] else 0


def _counts(actions: Counter[str]) -> str:
    order = (TRAIN, RESUME, EVALUATE, DONE, SKIP)
    return ", ".join(f"{actions[a]} {a}" for a in order if actions[a])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run_suite(args)
    except UsageError as error:
        print(f"benchmarks.run: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
