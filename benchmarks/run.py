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

Selection (a suite's ``[select]``, two phases): the runner runs every tuned value's sweep cells (phase 1) with
the other cells; once a selection group's sweep cells (and the reference cells of its constraint) have all ended,
in this run or an earlier one, it chooses the group's value with :func:`benchmarks.aggregate.choose` (a pure
function of their cell.json files) and runs that value on the other seeds (phase 2), skip checks first. A
sweep cell this run is about to run again (failed, interrupted) counts as unfinished until it ends, so a choice
is always made from the whole sweep as it now stands. Rerunning resumes either phase.

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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import attrs

from benchmarks.aggregate import CHOSEN, WAITING, Choice, Matrix, choose, selection_records
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
    short_names,
)
from benchmarks.validate import Validator
from vaezoo.checkpoint import CHECKPOINT_NAME
from vaezoo.errors import UsageError
from vaezoo.rundir import METRICS_NAME, RESULTS_NAME, SCATTER_NAME, read_json_lines

# What the runner does with a cell: nothing (finished), record it as invalid, evaluate a finished run again,
# continue a run from its checkpoint, or train from scratch.
DONE, SKIP, EVALUATE, RESUME, TRAIN = "done", "skip", "evaluate", "resume", "train"
# A phase-2 cell whose selection group has no choice yet (dry runs print it).
WAIT = "wait"
ERROR_TAIL_LINES = 20
INTERRUPTED_CODES = (130, -signal.SIGINT)


@attrs.frozen
class Planned:
    """A cell, what the runner will do with it, why it is skipped (if so), its previous cell.json, and the examples
    its evaluations will average over (``{"valid": n, "test": n}``, recorded in its cell.json)."""

    cell: Cell
    action: str
    reason: str | None
    previous: dict[str, Any] | None
    examples: dict[str, int] | None = None


class Interrupted(Exception):
    """The runner is stopping; the cell stays pending."""


class StageFailed(Exception):
    """A child process of a cell failed; ``stage`` names it, the message holds its output's tail."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def _comparable(raw: dict[str, Any]) -> Any:
    return json.loads(json.dumps(raw))


def check_unchanged(cells: Sequence[Cell], out: Path) -> None:
    """Refuse (UsageError) when a started cell of ``cells`` was started with another configuration."""
    changed = []
    for cell in cells:
        directory = cell_dir(out, cell.id)
        stored = read_json(directory / CONFIG_IN_NAME)
        if stored is not None and stored != _comparable(cell.raw) and (directory / RUN_DIR).exists():
            changed.append(cell.id)
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UsageError(
            f"{len(changed)} cell(s) in {str(out)!r} were started with a different configuration (the suite or "
            f"profile changed): {shown}; choose another --out or delete those cell directories"
        )


def plan_cell(cell: Cell, out: Path, validator: Validator) -> Planned:
    """Decide a cell's action from what ``out`` already holds (its configuration is known to be unchanged)."""
    directory = cell_dir(out, cell.id)
    previous = read_json(directory / CELL_NAME)
    have = previous["test_priors"] if previous else {}
    if previous is not None and previous["status"] == OK and all(p in have for p in cell.test_priors):
        return Planned(cell, DONE, None, previous)
    # A run that has started passed these checks before; only fresh cells are validated.
    run, reason = directory / RUN_DIR, None
    if (run / RESULTS_NAME).exists():
        action = EVALUATE
    elif (run / CHECKPOINT_NAME).exists():
        action = RESUME
    else:
        reason = validator.skip_reason(cell.raw)
        action = TRAIN if reason is None else SKIP
    examples = None if action == SKIP else validator.evaluated_examples(cell.raw)
    return Planned(cell, action, reason, previous, examples)


class PhaseTwo:
    """The phase-2 cells of a run: each selection group's chosen value on the other seeds, decided by
    :func:`benchmarks.aggregate.choose` from the cell.json files in ``out`` once its sweep has ended.

    Only groups with a phase-2 cell among ``cells`` (the cells of this run, after ``--only``) are decided."""

    def __init__(self, document: dict[str, Any], cells: Sequence[Cell], out: Path) -> None:
        self.out = out
        self.matrix = Matrix(out, document, {})
        selection = document.get("selection") or {"rules": [], "groups": []}
        self.rules = selection["rules"]
        self.cells = {c.id: c for c in cells}
        phase2 = {c.group for c in cells if c.phase == 2}
        self.open = [g for g in selection["groups"] if g["id"] in phase2]
        self.choices: dict[str, Choice] = {}

    def decide(self, unsettled: frozenset[str]) -> list[tuple[Choice, list[Cell]]]:
        """Decide every open group whose sweep and reference cells have all ended (``unsettled``: cells this run
        has yet to finish); each newly decided group's choice and the phase-2 cells of this run it brings."""
        decided = []
        for group in list(self.open):
            choice = choose(group, self.rules[group["select"]], selection_records(self.out, group, unsettled))
            self.choices[group["id"]] = choice
            if choice.state == WAITING:
                continue
            self.open.remove(group)
            decided.append((choice, [self.cells[i] for i in choice.phase2_cells() if i in self.cells]))
        return decided

    def waiting(self) -> list[Choice]:
        return [self.choices[g["id"]] for g in self.open if g["id"] in self.choices]

    def announce(self, choice: Choice, cells: Sequence[Cell]) -> str:
        """One line for a decided group: its choice (and how many phase-2 cells follow) or why there is none."""
        text = f"{'selected' if choice.state == CHOSEN else 'no choice':<9} {choice.group['id']}: "
        text += self.matrix.explain(choice).removeprefix("no choice: ")
        return text + (f" -> {len(cells)} phase-2 cell(s)" if choice.state == CHOSEN else "")


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
        valid: dict[str, Any] | None = None
        curve: list[dict[str, Any]] | None = None
        latent_dim: int | None = None
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
            train["tested_step"] = results.get("tested_step", results["steps"])
            curve = validation_lines(run)
            valid = tested_validation(curve, results)
            latent_dim = results["config"]["model"]["latent_dim"]
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
            valid=valid,
            curve=curve,
            latent_dim=latent_dim,
            examples=planned.examples,
        )
        write_json(directory / CELL_NAME, record)
        return record


def validation_lines(run: Path) -> list[dict[str, Any]]:
    """The run's validation lines (metrics.jsonl) in step order: its validation curve."""
    lines = [line for line in read_json_lines(run / METRICS_NAME) if "valid" in line]
    return sorted(lines, key=lambda line: line["step"])


def tested_validation(lines: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, Any] | None:
    """The validation line of the tested model among ``lines`` (the last step's, or the best line's with
    ``train.test_model = "best"``): its step, the test prior its -ELBO and KL are under (the run's
    ``eval.test_prior``) and its metrics; None without a line."""
    if not lines:
        return None
    tested = results.get("tested_step", results["steps"])
    line = next((line for line in lines if line["step"] == tested), lines[-1])
    return {"step": line["step"], "test_prior": results["config"]["eval"]["test_prior"], "metrics": line["valid"]}


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


def _print_plan(planned: Sequence[Planned], waiting: Sequence[tuple[str, str]]) -> None:
    """Each cell's action (and a skip's reason), then each selection group still waiting for its sweep."""
    width = max([len(p.cell.id) for p in planned] + [len(group) for group, _ in waiting], default=0)
    for p in planned:
        print(f"{p.action:<8}  {p.cell.id:<{width}}" + (f"  {p.reason}" if p.reason else ""))
    for group, text in waiting:
        print(f"{WAIT:<8}  {group:<{width}}  {text}")


def _phase_two_cells(group: dict[str, Any], cells: Sequence[Cell]) -> int:
    """How many phase-2 cells of this run a selection group brings once it has chosen (its seeds after the sweep)."""
    return max(sum(i in {c.id for c in cells} for i in spec["phase2"]) for spec in group["candidates"])


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
    document = matrix_document(suite, profile, cells)
    chosen = select(cells, allowed)
    check_unchanged(chosen, out)
    validator = Validator(plugins.registry, data_dir)
    planned = [plan_cell(cell, out, validator) for cell in chosen if cell.phase != 2]
    phase_two = PhaseTwo(document, chosen, out)
    decided = phase_two.decide(frozenset(p.cell.id for p in planned if p.action not in (DONE, SKIP)))
    planned += [plan_cell(cell, out, validator) for _, more in decided for cell in more]
    for problem in validator.data_problems.values():
        print(f"warning: {problem}; its cells run and report their own errors", file=sys.stderr)
    actions = Counter(p.action for p in planned)
    groups = {g["id"]: g for g in (document.get("selection") or {}).get("groups", [])}
    waiting = [(c.group["id"], _phase_two_cells(c.group, chosen)) for c in phase_two.waiting()]
    actions[WAIT] = sum(n for _, n in waiting)
    size = sum(c.phase != 2 for c in cells) + sum(len(g["candidates"][0]["phase2"]) for g in groups.values())
    count = len(planned) + actions[WAIT]
    profile_text = profile.name if profile else "none"
    selected = f"{count} of {size} cells (--only)" if allowed else f"{count} cells"
    print(f"suite {suite.name} (profile {profile_text}): {selected}; " + _counts(actions))
    for choice, more in decided:
        print(phase_two.announce(choice, more))
    tuned = ", ".join(short_names(effective_axes(suite, profile))[a] for s in suite.selections for a in s.axes)
    wait_lines = [
        (group, f"phase 2: {n} cell(s) of the chosen {tuned}; {phase_two.matrix.explain(phase_two.choices[group])}")
        for group, n in waiting
    ]
    if args.dry_run:
        _print_plan(planned, wait_lines)
        return 0
    write_json(out / MATRIX_NAME, document)
    threads = args.threads or max(1, usable_cores() // args.jobs)
    # Children find the data directory as this process did: from --data-dir when given, else $VAEZOO_DATA.
    runner = CellRunner(out, data_dir if args.data_dir is not None else None, threads, args.timeout)
    outcomes: Counter[str] = Counter()
    running: dict[Future, str] = {}
    interrupted: set[str] = set()  # cells whose child was interrupted: unfinished, whatever cell.json they had
    total = finished = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:

        def start(new: Sequence[Planned]) -> None:
            nonlocal total
            for p in new:
                if p.action == SKIP:
                    record_skip(out, p)
                    print(f"skipped  {p.cell.id}: {p.reason}")
                elif p.action != DONE:
                    running[pool.submit(runner.run, p)] = p.cell.id
                    total += 1

        start(planned)
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                running_ids = {future: running.pop(future) for future in done}
                for future in done:
                    finished += 1
                    record = future.result()
                    if record is None:
                        interrupted.add(running_ids[future])
                        continue
                    outcomes[record["status"]] += 1
                    line = f"[{finished}/{total}] {record['status']:<7} {record['id']} ({record['wall_time_s']:.1f} s)"
                    if record["error"]:
                        line += f": {record['stage']}: {record['error'].splitlines()[-1]}"
                    print(line, flush=True)
                for choice, more in phase_two.decide(frozenset([*running.values(), *interrupted])):
                    new = [plan_cell(cell, out, validator) for cell in more]
                    actions.update(p.action for p in new)
                    print(phase_two.announce(choice, more), flush=True)
                    start(new)
        except KeyboardInterrupt:
            runner.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            print(f"interrupted; rerun the same command to resume the matrix in {out}", file=sys.stderr)
            return 130
    for choice in phase_two.waiting():  # its sweep has cells this run did not run (--only) or could not finish
        print(f"{WAIT:<9} {choice.group['id']}: {phase_two.matrix.explain(choice)}")
    print(
        f"done: {outcomes[OK]} ok, {outcomes[FAILED]} failed this time; {actions[DONE]} were already finished, "
        f"{actions[SKIP]} skipped. Results in {out}; report: python -m benchmarks.report {out}"
    )
    return 1 if outcomes[FAILED] else 0


def _counts(actions: Counter[str]) -> str:
    order = (TRAIN, RESUME, EVALUATE, DONE, SKIP, WAIT)
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
