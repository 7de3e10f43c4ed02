"""Keep what a report is made of, without the runs: ``python -m benchmarks.records RESULTS_DIR DEST``.

A results directory holds every cell's run (checkpoints of megabytes each); its report reads only matrix.json, each
cell's cell.json and the latent scatter a cell.json names. This command copies those, byte for byte, into DEST,
in the same layout, so that ``python -m benchmarks.report DEST`` renders the same tables and figures anywhere:
the measured figures of a suite can be kept beside the text that quotes them (``benchmarks/measured/``). What needs
the trained models (``vaezoo eval``, ``vaezoo_bench.diagnose``, resuming) still needs the results directory.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs

from vaezoo.api import Parser, UsageError, quiet_when_output_closes
from vaezoo_bench.aggregate import load_matrix
from vaezoo_bench.results import CELL_NAME, CELLS_DIR, MATRIX_NAME, cell_dir


@attrs.frozen
class Kept:
    """What :func:`keep_records` copied: the cells with a record, the planned cells still without one (a sweep's
    values that were not chosen never run on the other seeds, so they are not planned), and the bytes written;
    ``damaged`` maps each cell whose cell.json is damaged (not copied) to what is wrong with it."""

    recorded: tuple[str, ...]
    pending: tuple[str, ...]
    size: int
    damaged: dict[str, str] = attrs.field(factory=dict)


def keep_records(results_dir: Path, dest: Path, overwrite: bool = False) -> Kept:
    """Copy ``results_dir``'s matrix.json, every cell.json and the scatter files they name into ``dest``.

    ``dest`` must not exist, or be empty; with ``overwrite``, records it already holds are replaced (its other
    files are left alone). Raises :class:`UsageError` for a directory that is not a suite's results, or a
    ``dest`` that holds files without ``overwrite``. A damaged cell.json is not copied (a warning names it)."""
    matrix = load_matrix(results_dir)
    if dest.resolve() == results_dir.resolve():
        raise UsageError(f"DEST {str(dest)!r} is the results directory itself; name another directory")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"DEST {str(dest)!r} is a file; name a directory")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise UsageError(f"DEST {str(dest)!r} is not empty; name a new directory, or pass --overwrite")
        shutil.rmtree(dest / CELLS_DIR, ignore_errors=True)
    copied: list[Path] = [_copy(results_dir / MATRIX_NAME, dest / MATRIX_NAME)]
    recorded = [cell_id for cell_id, record in matrix.records.items() if record is not None]
    for cell_id in recorded:
        source, target = cell_dir(results_dir, cell_id), cell_dir(dest, cell_id)
        copied.append(_copy(source / CELL_NAME, target / CELL_NAME))
        scatter = matrix.records[cell_id].get("scatter")
        if scatter and (source / scatter).exists():
            copied.append(_copy(source / scatter, target / scatter))
    planned = [cell["id"] for cell in matrix.planned_cells()]
    pending = [i for i in planned if matrix.records[i] is None and i not in matrix.damaged]
    return Kept(tuple(recorded), tuple(pending), sum(path.stat().st_size for path in copied), matrix.damaged)


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.records") -> int:
    """The command; ``prog`` names it in its usage and errors (``vaezoo bench records`` when run so)."""
    parser = Parser(
        prog=prog,
        description="Copy what a suite's report is made of (matrix.json, every cell.json and the scatter files "
        "they name) out of a results directory, without the runs.",
    )
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="the --out directory of a suite's run")
    parser.add_argument("dest", type=Path, metavar="DEST", help="where to keep the records (a new directory)")
    parser.add_argument("--overwrite", action="store_true", help="replace the records DEST already holds")
    args = parser.parse_args(argv)
    try:
        kept = keep_records(args.results, args.dest, args.overwrite)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"kept the records of {len(kept.recorded)} cells ({kept.size / 1000:.0f} kB) in {args.dest}")
    if kept.damaged:
        print(f"{len(kept.damaged)} cell(s) with a damaged cell.json were left out: {', '.join(kept.damaged)}")
    if kept.pending:
        print(f"{len(kept.pending)} planned cell(s) have no record yet: {', '.join(kept.pending)}")
    print(f"render them with: vaezoo bench report {args.dest} --out REPORT_DIR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
