"""Where a suite's run stands: every cell's state, read from its results directory while the runner works.

    python -m benchmarks.status OUT [--watch SECONDS]

A cell is ``ok``, ``failed`` or ``skipped`` once its attempt has ended (its ``cell.json``); ``running`` while a
process holds its run directory (the holder the run's lock file names: process, host and since when; with the
training step reached, from ``metrics.jsonl``, and the executor's job id from ``job.json``); ``queued`` while the
job the runner handed it to (``job.json``) has not started it (a job that ends with its runner, as the local
executor's do, counts as ended once that runner's process is gone); ``stopped`` when its run has a checkpoint but
nothing runs it (an interrupted attempt, which the runner resumes); ``damaged`` when its cell.json cannot be read
(cut short, not a cell record: the note says what is wrong; the runner runs the cell again, from what its run
directory holds); ``pending`` before it started. Phase-2 cells of a selection group that has not chosen yet are
counted as ``waiting``. A progress bar counts the cells that ended.
Reading takes no lock, so it never disturbs a run: a holder is known from the lock file's text, which a run clears
when it lets go; one killed outright leaves its text behind, and is told apart by its process no longer existing (on
this host; a holder on another host is taken at its word).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from vaezoo.api import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    LOCK_NAME,
    METRICS_NAME,
    Parser,
    UsageError,
    process_gone,
    quiet_when_output_closes,
    read_json_lines,
    warn_once,
)
from vaezoo_bench.aggregate import WAITING, Matrix, load_matrix
from vaezoo_bench.results import (
    DAMAGED,
    FAILED,
    OK,
    PENDING,
    RUN_DIR,
    SKIPPED,
    DamagedFile,
    cell_dir,
    read_job,
    read_json,
)

RUNNING, QUEUED, STOPPED, WAITING_STATE = "running", "queued", "stopped", "waiting"
STATES = (OK, FAILED, SKIPPED, RUNNING, QUEUED, STOPPED, DAMAGED, PENDING, WAITING_STATE)


def lock_holder(run: Path) -> str | None:
    """Who holds the run directory's lock by its lock file ("process N on HOST (ACTIVITY since T)"), or None when
    nobody does: no text, or the text of a process of this host that no longer exists."""
    try:
        text = (run / LOCK_NAME).read_text().strip()
    except FileNotFoundError:
        return None
    return None if not text or process_gone(text) else text


def _progress(run: Path) -> str:
    """The training step the run reached (its last validation line) of its configured steps, when known."""
    lines = [line for line in read_json_lines(run / METRICS_NAME) if "step" in line] if run.is_dir() else []
    step = max((line["step"] for line in lines), default=0)
    total = _configured_steps(run)
    return f"step {step}" + (f" of {total}" if total else "")


def _configured_steps(run: Path) -> int | None:
    """``train.steps`` of the run's config.json; None when it has none (or the file is damaged: warned once)."""
    try:
        config = read_json(run / CONFIG_NAME)
    except DamagedFile as damaged:
        warn_once(f"{damaged}; the run's length is not shown")
        return None
    train = config.get("train") if isinstance(config, dict) else None
    steps = train.get("steps") if isinstance(train, dict) else None
    return steps if isinstance(steps, int) else None


def _job_text(job: dict[str, Any]) -> str:
    return f"{job.get('executor')} job {job['id']}" if job.get("id") else f"{job.get('executor')} executor"


def cell_state(out: Path, cell_id: str, record: dict[str, Any] | None, damaged: str | None = None) -> tuple[str, str]:
    """A cell's state (one of :data:`STATES` but waiting) and a note on it (error line, holder and step, the
    job, what is wrong with its cell.json when ``damaged`` says so, ...)."""
    directory = cell_dir(out, cell_id)
    run = directory / RUN_DIR
    holder = lock_holder(run) if run.is_dir() else None
    job = read_job(directory)
    # a job the runner handed the cell to and has not seen end (a cell.json from before it is an earlier attempt's),
    # unless the job could not outlive its runner and that runner is gone (killed with no time to note the end)
    orphaned = not job.get("outlives_runner", True) and process_gone(job.get("runner") or "")
    open_job = bool(job) and not job.get("ended") and not orphaned and (record is None or record.get("job") != job)
    if holder is not None and (record is None or record["status"] != OK):
        return RUNNING, f"{_progress(run)}; {holder}" + (f"; {_job_text(job)}" if open_job else "")
    if open_job:
        return QUEUED, f"{_job_text(job)}, submitted {job.get('submitted')}"
    if record is not None:
        if record["status"] == FAILED:
            last = (record.get("error") or "").strip().splitlines()[-1:] or [""]
            return FAILED, f"{record.get('stage') or ''}: {last[0]}"
        if record["status"] == SKIPPED:
            return SKIPPED, record.get("reason") or ""
        return record["status"], f"{record.get('wall_time_s') or 0:.0f} s"
    if damaged is not None:
        return DAMAGED, f"cell.json damaged: {damaged}; the next run of the suite runs it again"
    if (run / CHECKPOINT_NAME).is_file():
        return STOPPED, f"{_progress(run)}; resumed by the next run of the suite"
    return PENDING, ""


def status_lines(matrix: Matrix) -> tuple[list[str], Counter[str], int]:
    """The report's lines (a summary, a progress bar, then one line per cell and per waiting group), the count of
    cells in each state, and the number of cells that ended."""
    out = matrix.root
    counts: Counter[str] = Counter()
    rows = []
    for cell in matrix.planned_cells():
        state, note = cell_state(out, cell["id"], matrix.records.get(cell["id"]), matrix.damaged.get(cell["id"]))
        counts[state] += 1
        rows.append((state, cell["id"], note))
    for choice in matrix.choices.values():
        if choice.state == WAITING:
            phase2 = len(choice.group["candidates"][0]["phase2"])
            counts[WAITING_STATE] += phase2
            rows.append((WAITING_STATE, choice.group["id"], f"{phase2} phase-2 cell(s) once its sweep has ended"))
    total = sum(counts.values())
    ended = counts[OK] + counts[FAILED] + counts[SKIPPED]
    profile = matrix.document.get("profile") or "none"
    summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
    lines = [
        f"{matrix.document['suite']} (profile {profile}) in {out}: {total} cells; {summary}",
        tqdm.format_meter(ended, total, elapsed=0, ncols=80, prefix="ended").split("[")[0].rstrip(),
    ]
    width = max((len(cell_id) for _, cell_id, _ in rows), default=0)
    lines += [f"{state:<8} {cell_id:<{width}}  {note}".rstrip() for state, cell_id, note in rows]
    return lines, counts, ended


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.status") -> int:
    """The command; ``prog`` names it in its usage and errors (``vaezoo bench status`` when run so)."""
    parser = Parser(prog=prog, description="Each cell's state in a suite's results.")
    parser.add_argument("out", type=Path, metavar="OUT", help="the results directory (the runner's --out)")
    parser.add_argument("--watch", type=float, metavar="SECONDS", help="show it again every SECONDS until all ended")
    args = parser.parse_args(argv)
    if args.watch is not None and not args.watch > 0:
        parser.error(f"--watch must be a positive number of seconds, got {args.watch:g}")
    try:
        while True:
            lines, counts, ended = status_lines(load_matrix(args.out))
            if args.watch is not None and sys.stdout.isatty():
                print("\033[2J\033[H", end="")  # clear the terminal between views
            print("\n".join(lines), flush=True)
            if args.watch is None or ended == sum(counts.values()):
                return 1 if counts[FAILED] else 0
            time.sleep(args.watch)
            print()
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
