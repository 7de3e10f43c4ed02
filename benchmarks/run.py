"""Run a suite's matrix of cells, each through vaezoo's public command line in child processes.

Usage::

    python -m benchmarks.run SUITE.toml [--profile NAME] [--jobs N] [--threads N] [--out DIR]
                                        [--data-dir DIR] [--timeout SECONDS] [--dry-run]
                                        [--only AXIS=VALUE[,VALUE...]]...

``--only`` restricts the run to the cells with those axis values (repeat it for several axes; values of one axis
add up). matrix.json always describes the whole matrix, so runs restricted to different cells can share one
``--out`` (each, say, a tox environment of its own) and the report shows every finished cell, the others pending.

Every cell runs ``python -m vaezoo run --config CELL/config-in.json --out CELL/run --no-progress``, then
``python -m vaezoo eval CELL/run --test-prior P,Q --json`` for the other test priors it asks for, all in one
pass (the run's own test prior is read from its results.json), up to ``--jobs`` cells at once, each child with
``OMP_NUM_THREADS`` = ``--threads`` (default: the usable cores divided by the jobs, at least 1). Results land in
the layout of :mod:`vaezoo_bench.results`.

Selection (a suite's ``[select]``, two phases): the runner runs every tuned value's sweep cells (phase 1) with
the other cells; once a selection group's sweep cells (and the reference cells of its constraint) have all ended,
in this run or an earlier one, it chooses the group's value with :func:`vaezoo_bench.aggregate.choose` (a pure
function of their cell.json files) and runs that value on the other seeds (phase 2), skip checks first. A
sweep cell this run is about to run again (failed, interrupted) counts as unfinished until it ends, so a choice
is always made from the whole sweep as it now stands. Rerunning resumes either phase.

Resuming: rerunning the same command on the same ``--out`` continues the matrix. A cell whose status is ``ok``
(and which has every requested test prior) is never touched. A failed or pending cell is run again from where
it stopped: a run with results.json is only evaluated again, a run with a checkpoint but no results.json is
continued with ``vaezoo run --resume`` (no training is lost), anything else trains from scratch. Invalid
combinations (see :mod:`vaezoo_bench.validate`) are recorded as skipped and never run, and a suite column that
no cell would report is refused before any runs. When the suite or profile has changed a cell's configuration
after it started, the runner refuses (use another ``--out``). A cell whose cell.json is damaged (cut short, not a
cell record) is named in a warning and run again like a pending cell.

A results directory belongs to one suite: when its matrix.json names another suite or profile, or holds cells the
new matrix does not (or with other axis values), the runner refuses before writing anything, naming both. The same
suite may gain cells or test priors and continue in its directory, and runs restricted with ``--only`` share it. A
damaged matrix.json is named in a warning and written again from the suite file.

A failing cell (a non-zero exit, a timeout) is recorded with the tail of its child's output and does not stop
the others. Exit status: 0 when no cell failed, 1 when some did, 2 for a bad suite or argument, 130 when
interrupted (the interrupted cells stay pending, and rerunning resumes them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import (
    Parser,
    Registry,
    UsageError,
    held,
    local_timestamp,
    process_text,
    quiet_when_output_closes,
    warn_once,
)
from vaezoo_bench.aggregate import CHOSEN, WAITING, Choice, Matrix, choose, read_matrix_document, selection_records
from vaezoo_bench.cell_job import (
    DONE,
    EVALUATE,
    RESUME,
    SKIP,
    STOP_GRACE_S,
    TRAIN,
    CellJob,
    Planned,
    failure_text,
    note_job,
    stage_of,
)
from vaezoo_bench.executors import DEFAULT, Context, Executor, Submission, make_executor
from vaezoo_bench.matrix.built_in import suite_file
from vaezoo_bench.matrix.document import matrix_document
from vaezoo_bench.matrix.expansion import effective_axes, expand, parse_selection, select
from vaezoo_bench.matrix.model import Cell, Profile, Suite, choose_profile, short_names
from vaezoo_bench.matrix.reading import load_suite
from vaezoo_bench.results import (
    CELL_NAME,
    CONFIG_IN_NAME,
    FAILED,
    MATRIX_NAME,
    OK,
    RUN_DIR,
    SKIPPED,
    DamagedFile,
    cell_dir,
    cell_record,
    read_cell,
    read_job,
    read_json,
    write_json,
)
from vaezoo_bench.status import lock_holder
from vaezoo_bench.validate import Validator, check_columns, check_metric_names

# A phase-2 cell whose selection group has no choice yet (dry runs print it).
WAIT = "wait"


#: The lock file of a results directory: one runner at a time works in it.
RUNNER_LOCK_NAME = "runner.lock"


def _comparable(raw: dict[str, Any]) -> Any:
    return json.loads(json.dumps(raw))


def check_unchanged(cells: Sequence[Cell], out: Path) -> None:
    """Refuse (UsageError) when a started cell of ``cells`` was started with another configuration."""
    changed = []
    for cell in cells:
        directory = cell_dir(out, cell.id)
        try:
            stored = read_json(directory / CONFIG_IN_NAME)
        except DamagedFile as damaged:  # the cell's run keeps its own config.json; this copy is written again
            warn_once(f"{damaged}; it cannot be compared and is written again from the suite")
            continue
        if stored is not None and stored != _comparable(cell.raw) and (directory / RUN_DIR).exists():
            changed.append(cell.id)
    if changed:
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        raise UsageError(
            f"{len(changed)} cell(s) in {str(out)!r} were started with a different configuration (the suite or "
            f"profile changed): {shown}; choose another --out or delete those cell directories"
        )


def _suite_text(document: dict[str, Any]) -> str:
    source = f", {document['suite_file']}" if document.get("suite_file") else ""
    return f"{document['suite']!r} (profile {document['profile'] or 'none'}{source})"


def check_same_suite(document: dict[str, Any], out: Path) -> None:
    """Refuse (UsageError naming both suites) when ``out`` holds the results of another suite than ``document``
    (this run's matrix.json): another suite name or profile, or a cell of its matrix that ``document`` lacks or
    gives other axis values. A damaged matrix.json is warned about; the run writes it again."""
    try:
        held = read_matrix_document(out)
    except DamagedFile as damaged:
        warn_once(f"{damaged}; it is written again from the suite file")
        return
    if held is None:
        return
    wanted = {cell["id"]: _comparable(cell["axes"]) for cell in document["cells"]}
    lost = [cell["id"] for cell in held["cells"] if cell["id"] not in wanted or wanted[cell["id"]] != cell["axes"]]
    if held["suite"] != document["suite"]:
        problem = "a different suite"
    elif held["profile"] != document["profile"]:
        problem = "a different profile of it"
    elif lost:
        shown = ", ".join(lost[:3]) + (f" and {len(lost) - 3} more" if len(lost) > 3 else "")
        problem = f"whose matrix lacks {len(lost)} of its cells (or gives them other axis values): {shown}"
    else:
        return
    raise UsageError(
        f"results directory {str(out)!r} holds suite {_suite_text(held)}; this run asks for suite "
        f"{_suite_text(document)}, {problem}; choose another --out"
    )


def plan_cell(cell: Cell, out: Path, validator: Validator) -> Planned:
    """Decide a cell's action from what ``out`` already holds (its configuration is known to be unchanged); a
    damaged cell.json counts as none."""
    directory = cell_dir(out, cell.id)
    previous = read_cell(out, cell.id)
    have = previous["test_priors"] if previous else {}
    if previous is not None and previous["status"] == OK and all(p in have for p in cell.test_priors):
        return Planned(cell, DONE, None, previous)
    # A run that has started passed these checks before; only fresh cells are validated.
    action, reason = stage_of(directory / RUN_DIR), None
    if action is None:
        reason = validator.skip_reason(cell.raw, cell.select)
        action = TRAIN if reason is None else SKIP
    examples = None if action == SKIP else validator.evaluated_examples(cell.raw)
    return Planned(cell, action, reason, previous, examples)


class PhaseTwo:
    """The phase-2 cells of a run: each selection group's chosen value on the other seeds, decided by
    :func:`vaezoo_bench.aggregate.choose` from the cell.json files in ``out`` once its sweep has ended.

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


def _context(args: argparse.Namespace, out: Path, data_dir: Path | None, cells: int) -> Context:
    """What the executor is told: ``--jobs`` (default: 1 locally, every cell at once elsewhere, where the cluster
    queues them), ``--threads`` (default: this machine's cores divided by the jobs locally, 1 elsewhere), the data
    directory every cell reads (given to each child, so a job on another host needs no environment) and
    ``--timeout``."""
    local = args.executor == DEFAULT
    jobs = args.jobs or (1 if local else max(1, cells))
    threads = args.threads or (max(1, usable_cores() // jobs) if local else 1)
    return Context(out, jobs, threads, data_dir, args.timeout)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description="Run a benchmark suite's matrix.")
    parser.add_argument("suite", metavar="SUITE", help="a built-in suite by name (smoke, table1, ...) or a suite file")
    parser.add_argument("--profile", help="a [profile.NAME] of the suite (default: its default_profile)")
    parser.add_argument(
        "--executor", default=DEFAULT, help="where cells run: local (default), slurm, ray or a plugin's executor"
    )
    parser.add_argument(
        "--executor-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the executor (partition, time, gpus, address, ...); repeatable",
    )
    parser.add_argument(
        "--jobs", type=int, help="cells run at once (default: 1 with the local executor, all of them on a cluster)"
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads per cell (default: cores // jobs locally, 1 on a cluster)"
    )
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


def _wait_lines(
    suite: Suite, profile: Profile | None, phase_two: PhaseTwo, waiting: Sequence[tuple[str, int]]
) -> list[tuple[str, str]]:
    """For a dry run, each selection group still waiting for its sweep: its id and what its phase 2 will run."""
    tuned = ", ".join(short_names(effective_axes(suite, profile))[a] for s in suite.selections for a in s.axes)
    return [
        (group, f"phase 2: {n} cell(s) of the chosen {tuned}; {phase_two.matrix.explain(phase_two.choices[group])}")
        for group, n in waiting
    ]


def _matrix_size(document: dict[str, Any], cells: Sequence[Cell]) -> int:
    """The cells of the whole matrix: those of phase 1 and, for each selection group, its phase-2 cells."""
    groups = (document.get("selection") or {}).get("groups", [])
    return sum(c.phase != 2 for c in cells) + sum(len(g["candidates"][0]["phase2"]) for g in groups)


@attrs.frozen
class _Matrix:
    """What a run of a suite works on: the suite, its profile, its cells (those ``allowed`` by --only) and where."""

    suite: Suite
    profile: Profile | None
    cells: list[Cell]
    allowed: dict[str, frozenset[str]]
    out: Path
    data_dir: Path | None


def run_suite(args: argparse.Namespace) -> int:
    """The command's body; UsageErrors propagate to :func:`main`. Everything that can be checked without the results
    directory is checked first; then this runner holds the directory alone while it plans and runs the matrix (a
    dry run only reads it)."""
    from vaezoo.api import default_plugins, resolve_data_dir

    for option in ("jobs", "threads"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1, got {getattr(args, option)}")
    suite = load_suite(suite_file(args.suite))
    profile = choose_profile(suite, args.profile)
    out = (args.out or Path("runs", "bench", suite.name + (f"-{profile.name}" if profile else ""))).resolve()
    allowed = parse_selection(args.only, effective_axes(suite, profile))
    matrix = _Matrix(suite, profile, expand(suite, profile), allowed, out, resolve_data_dir(args.data_dir))
    plugins = default_plugins()
    check_metric_names(suite, plugins.registry)
    context = _context(args, out, matrix.data_dir, len(matrix.cells))
    executor = make_executor(args.executor, args.executor_option, context, plugins)
    for failure in plugins.failures:
        print(f"warning: {failure.origin} failed and is left out: {failure.error}", file=sys.stderr)
    what = f"results directory {str(out)!r}"
    with (
        contextlib.nullcontext() if args.dry_run else held(out / RUNNER_LOCK_NAME, what, f"running suite {suite.name}")
    ):
        return _run_matrix(args, matrix, plugins.registry, executor)


def _run_matrix(args: argparse.Namespace, matrix: _Matrix, registry: Registry, executor: Executor) -> int:
    """Plan the cells of the matrix in its results directory, print the plan, and (unless a dry run) run it."""
    suite, profile, cells, allowed, out, data_dir = attrs.astuple(matrix, recurse=False)
    document = matrix_document(suite, profile, cells)
    chosen = select(cells, allowed)
    check_same_suite(document, out)
    check_unchanged(chosen, out)
    validator = Validator(registry, data_dir, suite.selections)
    planned = [plan_cell(cell, out, validator) for cell in chosen if cell.phase != 2]
    phase_two = PhaseTwo(document, chosen, out)
    decided = phase_two.decide(frozenset(p.cell.id for p in planned if p.action not in (DONE, SKIP)))
    planned += [plan_cell(cell, out, validator) for _, more in decided for cell in more]
    check_columns(suite, [p.cell for p in planned if p.action != SKIP], validator)
    for problem in validator.data_problems.values():
        print(f"warning: {problem}; its cells run and report their own errors", file=sys.stderr)
    actions = Counter(p.action for p in planned)
    waiting = [(c.group["id"], _phase_two_cells(c.group, chosen)) for c in phase_two.waiting()]
    actions[WAIT] = sum(n for _, n in waiting)
    size = _matrix_size(document, cells)
    count = len(planned) + actions[WAIT]
    selected = f"{count} of {size} cells (--only)" if allowed else f"{count} cells"
    print(f"suite {suite.name} (profile {profile.name if profile else 'none'}): {selected}; " + _counts(actions))
    for choice, more in decided:
        print(phase_two.announce(choice, more))
    if args.dry_run:
        _print_plan(planned, _wait_lines(suite, profile, phase_two, waiting))
        return 0
    executor.start()
    write_json(out / MATRIX_NAME, document)
    try:
        return _execute(executor, planned, phase_two, actions, validator, out)
    finally:
        executor.close()


def _execute(
    executor: Executor,
    planned: Sequence[Planned],
    phase_two: PhaseTwo,
    actions: Counter[str],
    validator: Validator,
    out: Path,
) -> int:
    """Hand the planned cells to ``executor``, at most ``context.jobs`` at a time, and the phase-2 cells of each
    selection group as it is decided; report each cell's end. The command's exit status."""
    context = executor.context
    queue: deque[Planned] = deque()
    running: dict[Future, tuple[CellJob, Submission]] = {}
    outcomes: Counter[str] = Counter()
    interrupted: set[str] = set()  # cells whose job was stopped: unfinished, whatever cell.json they had
    total = finished = 0

    def start(new: Sequence[Planned]) -> None:
        nonlocal total
        for p in new:
            if p.action == SKIP:
                record_skip(out, p)
                print(f"skipped  {p.cell.id}: {p.reason}")
            elif p.action != DONE:
                queue.append(p)
                total += 1
        while queue and len(running) < context.jobs:
            job, submission = _submit(executor, queue.popleft(), out)
            running[submission.future] = (job, submission)

    start(planned)
    try:
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job, submission = running.pop(future)
                finished += 1
                record = _ended(executor, job, submission, out, f"[{finished}/{total}]")
                if record is None:
                    interrupted.add(job.cell_id)
                else:
                    outcomes[record["status"]] += 1
            unsettled = frozenset([*(job.cell_id for job, _ in running.values()), *(p.cell.id for p in queue)])
            _start_decided(phase_two, unsettled | interrupted, start, out, validator, actions)
            start([])  # the freed slots
    except KeyboardInterrupt:
        return _interrupted(executor, [job for job, _ in running.values()], out)
    _print_summary(phase_two, outcomes, actions, out)
    return 1 if outcomes[FAILED] or interrupted else 0


def _interrupted(executor: Executor, running: list[CellJob], out: Path) -> int:
    """Stop the ``running`` jobs (their cells checkpoint), noting further stop signals rather than obeying them,
    and say how to resume; the exit status of an interrupted run."""
    _note_further_stop_signals()
    _stop(executor, running, out)
    print(f"interrupted; rerun the same command to resume the matrix in {out}", file=sys.stderr)
    return 130


def _start_decided(
    phase_two: PhaseTwo,
    unsettled: frozenset[str],
    start: Callable[[Sequence[Planned]], None],
    out: Path,
    validator: Validator,
    actions: Counter[str],
) -> None:
    """Announce each selection group that ``unsettled`` cells no longer hold back and ``start`` its planned
    phase-2 cells, counting their actions into ``actions``."""
    for choice, more in phase_two.decide(unsettled):
        new = [plan_cell(cell, out, validator) for cell in more]
        actions.update(p.action for p in new)
        print(phase_two.announce(choice, more), flush=True)
        start(new)


def _print_summary(phase_two: PhaseTwo, outcomes: Counter[str], actions: Counter[str], out: Path) -> None:
    """The groups still waiting for their sweep, then the counts of this run's outcomes and where the results are."""
    for choice in phase_two.waiting():  # its sweep has cells this run did not run (--only) or could not finish
        print(f"{WAIT:<9} {choice.group['id']}: {phase_two.matrix.explain(choice)}")
    print(
        f"done: {outcomes[OK]} ok, {outcomes[FAILED]} failed this time; {actions[DONE]} were already finished, "
        f"{actions[SKIP]} skipped. Results in {out}; report: vaezoo bench report {out}"
    )


def _submit(executor: Executor, planned: Planned, out: Path) -> tuple[CellJob, Submission]:
    """Write the cell's config-in.json and its job.json (submitted now, by this runner), then hand its job to
    ``executor``; the job's id, when the engine gives one, goes into job.json too."""
    context = executor.context
    job = CellJob(planned, out, context.data_dir, context.threads, context.timeout)
    directory = cell_dir(out, planned.cell.id)
    write_json(directory / CONFIG_IN_NAME, planned.cell.raw)
    note_job(
        directory,
        executor=executor.name,
        id=None,
        submitted=local_timestamp(),
        ended=None,
        runner=process_text(),
        outlives_runner=executor.jobs_outlive_runner,
    )
    submission = executor.submit(job)
    if submission.job_id is not None:
        note_job(directory, id=submission.job_id)
    return job, submission


def _ended(executor: Executor, job: CellJob, submission: Submission, out: Path, progress: str) -> dict[str, Any] | None:
    """Note in job.json that ``job`` ended and print its cell's status, wall time and last error line after
    ``progress``, or that it stopped; its record (see :func:`_outcome`)."""
    note_job(cell_dir(out, job.cell_id), ended=local_timestamp())
    record = _outcome(executor, job, submission, out)
    if record is None:
        print(f"{progress} stopped {job.cell_id}: its job ended before the cell; rerun to resume", flush=True)
        return None
    line = f"{progress} {record['status']:<7} {record['id']} ({record['wall_time_s'] or 0:.1f} s)"
    if record["error"]:
        line += f": {record['stage']}: {record['error'].splitlines()[-1]}"
    print(line, flush=True)
    return record


def _outcome(executor: Executor, job: CellJob, submission: Submission, out: Path) -> dict[str, Any] | None:
    """The record of a job that ended: the cell's own, None when the job was stopped, or, when the job itself
    failed (its process killed, the engine gave up), a failed cell.json with the job's id and log tail."""
    try:
        return submission.future.result()
    except CancelledError:
        return None
    except Exception as error:
        try:
            tail = submission.log_tail()
        except Exception as reading:  # the log may be gone with the job
            tail = f"(its log could not be read: {reading})"
        named = f"job {submission.job_id}" if submission.job_id is not None else "the job"
        planned, directory = job.planned, cell_dir(out, job.cell_id)
        previous = read_cell(out, job.cell_id) or planned.previous or {}
        record = cell_record(
            job.cell_id,
            planned.cell.axes,
            FAILED,
            attempts=previous.get("attempts", 0) + 1,
            error=failure_text(f"{named} of executor {executor.name!r} failed: {error}", tail),
            stage="job",
            examples=planned.examples,
            job=read_job(directory) or None,
        )
        write_json(directory / CELL_NAME, record)
        return record


def _stop(executor: Executor, jobs: Sequence[CellJob], out: Path) -> None:
    """Stop every job, then wait (a bounded time) until no process holds their cells' run directories: each
    child writes its checkpoint first, so that rerunning the command finds the cells free to resume."""
    executor.stop()
    deadline = time.monotonic() + STOP_GRACE_S
    for job in jobs:
        run = cell_dir(out, job.cell_id) / RUN_DIR
        while lock_holder(run) is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        note_job(cell_dir(out, job.cell_id), ended=local_timestamp())


def _counts(actions: Counter[str]) -> str:
    order = (TRAIN, RESUME, EVALUATE, DONE, SKIP, WAIT)
    return ", ".join(f"{actions[a]} {a}" for a in order if actions[a])


def _note_further_stop_signals() -> None:
    """While the runner stops, a further Ctrl-C or SIGTERM is only noted: each running cell is writing its
    checkpoint, and the runner waits for them to let go of their run directories."""

    def note(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):  # os.write, not print: the main thread may be inside a print
            os.write(2, b"vaezoo_bench.run: already stopping: each running cell writes its checkpoint first\n")

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, note)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def answer_stop_signals() -> None:
    """SIGINT and SIGTERM stop the matrix as Ctrl-C does, also when this process inherited SIGINT ignored (as a
    background command of a script does): its jobs' processes then inherit a SIGINT they answer, and an
    executor's cancel (a SIGINT to submitit's local jobs) reaches them."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.run") -> int:
    """The command; ``prog`` names it in its usage and errors (``vaezoo bench run`` when run so)."""
    args = _parser(prog).parse_args(argv)
    try:
        return run_suite(args)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any cell was handed out: nothing to stop
        print("interrupted before any cell started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    answer_stop_signals()
    sys.exit(main())
