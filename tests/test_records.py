"""``vaezoo_bench.records``: a suite's records copied out of its results directory render the same report, and hold
nothing of the runs (the results directory written by hand, ``tests.test_selection.write_results``); and the
measured tables quoted in benchmarks/README.md are what the records kept in ``benchmarks/measured/`` render."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_selection import SUITE, figures, write_results
from tests.test_tradeoff import metrics
from vaezoo_bench.records import main
from vaezoo_bench.report import write_report
from vaezoo_bench.results import CELL_NAME, RUN_DIR, cell_dir, read_json, write_json

REPO = Path(__file__).resolve().parents[1]


def with_runs(results: Path) -> list[str]:
    """Give every recorded cell of ``results`` a run directory and a log, as the runner leaves them, and the first
    one a scatter file its cell.json names; the ids of the recorded cells."""
    recorded = sorted(path.parent.name for path in results.glob("cells/*/cell.json"))
    for cell_id in recorded:
        directory = cell_dir(results, cell_id)
        (directory / RUN_DIR).mkdir()
        (directory / RUN_DIR / "checkpoint.pt").write_bytes(b"\0" * 4096)
        (directory / "log.txt").write_text("$ vaezoo run ...\n")
    first = cell_dir(results, recorded[0])
    (first / RUN_DIR / "scatter.npz").write_bytes(b"scatter")
    write_json(first / CELL_NAME, {**read_json(first / CELL_NAME), "scatter": f"{RUN_DIR}/scatter.npz"})
    return recorded


def test_the_records_render_the_same_report_and_hold_nothing_of_the_runs(tmp_path, capsys):
    results = write_results(tmp_path, SUITE, metrics)
    recorded = with_runs(results)
    kept = tmp_path / "kept"
    assert main([str(results), str(kept)]) == 0
    out = capsys.readouterr().out
    assert f"kept the records of {len(recorded)} cells" in out
    assert "no record yet" not in out  # the sweep's values that were not chosen never run on the other seeds
    files = sorted(str(path.relative_to(kept)) for path in kept.rglob("*") if path.is_file())
    expected = ["matrix.json", *(f"cells/{cell_id}/cell.json" for cell_id in recorded)]
    assert files == sorted([*expected, f"cells/{recorded[0]}/run/scatter.npz"])
    for name in expected:
        assert (kept / name).read_bytes() == (results / name).read_bytes()
    write_report(results, tmp_path / "from-results", plots=False)
    write_report(kept, tmp_path / "from-records", plots=False)
    for name in ("report.md", "table.csv"):
        assert (tmp_path / "from-records" / name).read_text() == (tmp_path / "from-results" / name).read_text()


def test_a_destination_with_files_is_refused_unless_overwritten_and_then_holds_the_new_records(tmp_path, capsys):
    results = write_results(tmp_path, SUITE, metrics)
    kept = tmp_path / "kept"
    assert main([str(results), str(kept)]) == 0
    (kept / "NOTES.md").write_text("kept beside the records")
    stale = cell_dir(kept, "a cell of an older run") / CELL_NAME
    write_json(stale, {"id": "old"})
    capsys.readouterr()
    assert main([str(results), str(kept)]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == "python -m benchmarks.records: error: "
        f"DEST {str(kept)!r} is not empty; name a new directory, or pass --overwrite"
    )
    assert main([str(results), str(kept), "--overwrite"]) == 0
    assert not stale.exists() and (kept / "NOTES.md").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (lambda tmp: [str(tmp), str(tmp / "kept")], "holds no matrix.json: it is not a results directory of a suite"),
        (lambda tmp: [str(tmp / "results"), str(tmp / "results")], "is the results directory itself"),
        (lambda tmp: [str(tmp / "results"), str(tmp / "a-file")], "is a file; name a directory"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, arguments, message):
    write_results(tmp_path, SUITE, lambda axes: figures(1.0, 100.0))
    (tmp_path / "a-file").write_text("")
    assert main(arguments(tmp_path)) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_command_runs_as_a_module(tmp_path):
    results = write_results(tmp_path, SUITE, metrics)
    done = subprocess.run(
        [sys.executable, "-m", "vaezoo_bench.records", str(results), str(tmp_path / "kept")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "render them with: vaezoo bench report" in done.stdout, done.stderr
    assert "Traceback" not in done.stderr


def test_planned_cells_without_a_record_are_named(tmp_path, capsys):
    results = write_results(tmp_path, SUITE, metrics)
    unfinished = sorted(results.glob("cells/*/cell.json"))[0]
    unfinished.unlink()
    assert main([str(results), str(tmp_path / "kept")]) == 0
    out = capsys.readouterr().out
    assert f"1 planned cell(s) have no record yet: {unfinished.parent.name}\n" in out


MEASURED = {"table1-cpu": "### Table 1 (Omniglot), `cpu` profile: measured", "table2-cpu": "### Table 2 (Yahoo, PTB)"}


def markdown_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table after ``heading``, as lists of stripped cells."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    return table


def numbers(cell: str) -> list[str]:
    return re.findall(r"-?\d+(?:\.\d+)?", cell)


def agrees(quoted: str, rendered: str) -> bool:
    """A figure as quoted (perhaps with fewer decimals) is the rendered one, rounded to the quoted decimals."""
    ours, theirs = numbers(quoted), numbers(rendered)
    decimals = [len(x.partition(".")[2]) for x in ours]
    same = len(ours) == len(theirs) and all(
        abs(float(x) - float(y)) <= 0.5 * 10**-d + 1e-9 for x, y, d in zip(ours, theirs, decimals, strict=False)
    )
    return same and ("(n.d.)" in quoted) == ("(n.d.)" in rendered)


@pytest.mark.parametrize("records", sorted(MEASURED))
def test_the_measured_tables_of_the_benchmarks_readme_are_what_their_kept_records_render(records, tmp_path):
    """Each row of a measured table (β-VAE under the test prior 1, NC-VAE under its own f(K,β,δ)) is the report's
    row rendered from ``benchmarks/measured/RECORDS``, figure by figure."""
    write_report(REPO / "benchmarks" / "measured" / records, tmp_path, plots=False)
    rendered: dict[tuple[float, str, str], list[str]] = {}
    beta = method = ""
    for row in markdown_rows((tmp_path / "report.md").read_text(), "| β | Method | Test prior"):
        beta, method = row[0] or beta, row[1] or method
        rendered[float(beta), method, row[2]] = row[3:]
    quoted_rows = markdown_rows((REPO / "benchmarks" / "README.md").read_text(), MEASURED[records])
    assert len(quoted_rows) == len({key[:2] for key in rendered})
    for row in quoted_rows:
        beta, method = row[0] or beta, row[1] or method
        prior = "1" if method == "β-VAE" else "f(K,β,δ)"
        report_row = rendered[float(beta), method, prior]
        assert len(row[2:]) == len(report_row)
        for quoted, figure in zip(row[2:], report_row, strict=True):
            assert agrees(quoted, figure), (beta, method, quoted, figure)


#: The remedies' measured tables in benchmarks/README.md: (records, the data set's heading in the report, the heading
#: of the README's table).
REMEDIES = {"remedies-text-cpu": ("### PTB", "### Remedies on PTB, `cpu` profile: measured")}


@pytest.mark.parametrize("records", sorted(REMEDIES))
def test_the_remedies_tables_of_the_benchmarks_readme_are_what_their_kept_records_render(records, tmp_path):
    """The README quotes the report's table of published and measured figures as the kept records render it, row
    by row, and the orderings below it."""
    report_heading, readme_heading = REMEDIES[records]
    write_report(REPO / "benchmarks" / "measured" / records, tmp_path, plots=False)
    report = (tmp_path / "report.md").read_text()
    published = report[report.index("## Published figures") :]
    readme = (REPO / "benchmarks" / "README.md").read_text()
    rendered = markdown_rows(published, report_heading)
    assert markdown_rows(readme, readme_heading) == rendered
    orderings = published[published.index(report_heading) :]
    quoted = readme[readme.index(readme_heading) :]
    assert markdown_rows(quoted, "| ranked by |") == markdown_rows(orderings, "| ranked by |")
