"""Damaged records are named, never fatal: a cut-short, empty or foreign cell.json, matrix.json, job.json or
results.json of a suite, and a damaged config.json or JSON-lines line of a vaezoo run, are reported in one line
naming the file, and every reader goes on where it can. Also: a results directory belongs to one suite, and every
command ends quietly when the reader of its output goes away.

The results directories of the fast tests are copies of the records kept in ``benchmarks/measured/table1-cpu``;
the slow tests run a real two-cell suite and real vaezoo runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.test_benchmarks import TINY_BASE
from vaezoo.base.errors import UsageError
from vaezoo.base.locks import held
from vaezoo.runs.checkpoint import CHECKPOINT_NAME
from vaezoo.runs.directory import (
    CONFIG_NAME,
    HISTORY_NAME,
    METRICS_NAME,
    RESULTS_NAME,
    RunDirectory,
    append_json_line,
    read_json_lines,
)
from vaezoo_bench import records, report, status
from vaezoo_bench import run as runner
from vaezoo_bench.aggregate import load_matrix
from vaezoo_bench.cell_job import EVALUATE, RESUME, TRAIN, stage_of
from vaezoo_bench.matrix.built_in import BUILT_IN_SUITES, built_in_suites
from vaezoo_bench.matrix.built_in import suite_file as suite_file_of
from vaezoo_bench.matrix.document import matrix_document
from vaezoo_bench.matrix.expansion import expand
from vaezoo_bench.matrix.reading import load_suite
from vaezoo_bench.results import (
    CELL_NAME,
    MATRIX_NAME,
    RUN_DIR,
    DamagedFile,
    cell_dir,
    read_json,
    write_json,
)
from vaezoo_bench.run import RUNNER_LOCK_NAME
from vaezoo_bench.validate import Validator

pytestmark = pytest.mark.adversarial

MEASURED = REPO / "benchmarks" / "measured" / "table1-cpu"
CELL = "beta=0.2_method=vae_seed=0"
OTHER_CELL = "beta=0.2_method=vae_seed=1"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A copy of a suite's kept records (48 finished cells), to damage."""
    return Path(shutil.copytree(MEASURED, tmp_path / "results"))


def _record(results: Path, cell_id: str = CELL) -> dict:
    return json.loads((cell_dir(results, cell_id) / CELL_NAME).read_text())


#: Ways a cell.json is damaged, each with what the warning says about it.
DAMAGES = {
    "truncated": (lambda path, good: path.write_text(json.dumps(good)[:120]), "not JSON (cut short?)"),
    "empty": (lambda path, good: path.write_text(""), "empty"),
    "a list": (lambda path, good: path.write_text("[1, 2]"), "not a cell record ($: [1, 2] is not of type 'object')"),
    "a key missing": (
        lambda path, good: path.write_text(json.dumps({k: v for k, v in good.items() if k != "status"})),
        "'status' is a required property",
    ),
    "a status of no kind": (
        lambda path, good: path.write_text(json.dumps({**good, "status": "done"})),
        "$.status: 'done' is not one of ['ok', 'failed', 'skipped']",
    ),
    "metrics of the wrong type": (
        lambda path, good: path.write_text(json.dumps({**good, "test_priors": {"standard": [1.0]}})),
        "$.test_priors.standard: [1.0] is not of type 'object'",
    ),
    "another cell's record": (
        lambda path, good: path.write_text(json.dumps({**good, "id": OTHER_CELL})),
        f"the record of another cell, '{OTHER_CELL}'",
    ),
    "a directory": (lambda path, good: (path.unlink(), path.mkdir()), "unreadable (Is a directory)"),
}


def damage(results: Path, kind: str, cell_id: str = CELL) -> tuple[Path, str]:
    """Damage ``cell_id``'s cell.json the way ``kind`` names; its path and what the warning says is wrong."""
    path = cell_dir(results, cell_id) / CELL_NAME
    write, problem = DAMAGES[kind]
    write(path, _record(results, cell_id))
    return path, problem


def one_warning(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def one_error(err: str, prog: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- the readers of a results directory ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_cell_json_is_named_once_and_its_cell_counts_as_without_a_record(results, capsys, kind):
    path, problem = damage(results, kind)
    matrix = load_matrix(results)
    assert matrix.records[CELL] is None and problem in matrix.damaged[CELL]
    assert set(matrix.damaged) == {CELL}
    assert sum(record is not None for record in matrix.records.values()) == 47, "every other cell is read"
    one_warning(capsys.readouterr().err, str(path), problem, "counts as without a record")


def test_status_shows_a_damaged_cell_as_such_with_what_is_wrong(results, capsys):
    damage(results, "truncated")
    lines, counts, ended = status.status_lines(load_matrix(results))
    assert dict(counts) == {"ok": 47, "damaged": 1} and ended == 47
    (line,) = [line for line in lines if CELL in line]
    assert line.startswith("damaged ") and "cell.json damaged: not JSON (cut short?)" in line
    assert "the next run of the suite runs it again" in line


def test_the_report_leaves_a_damaged_cell_out_and_names_it(results, tmp_path, capsys):
    path, _ = damage(results, "a list")
    assert report.main([str(results), "--out", str(tmp_path / "report"), "--no-plots"]) == 0
    one_warning(capsys.readouterr().err, str(path))
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Cells: 48 planned, 47 ok, 0 failed, 0 skipped, 1 damaged, 0 pending." in text
    assert f"| {CELL} | damaged |  | left out: its cell.json is not a cell record" in text
    assert "(2/3)" in text, "the row of the damaged cell is averaged over the two other seeds"


def test_records_skip_a_damaged_cell_json_and_name_it(results, tmp_path, capsys):
    path, _ = damage(results, "empty")
    kept = tmp_path / "kept"
    assert records.main([str(results), str(kept)]) == 0
    captured = capsys.readouterr()
    one_warning(captured.err, str(path), "empty")
    assert f"1 cell(s) with a damaged cell.json were left out: {CELL}\n" in captured.out
    assert not (cell_dir(kept, CELL) / CELL_NAME).exists() and (cell_dir(kept, OTHER_CELL) / CELL_NAME).is_file()


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (lambda path: path.write_text(path.read_text()[:200]), "not JSON (cut short?)"),
        (lambda path: path.write_text("[]"), "not a suite's matrix ($: [] is not of type 'object')"),
        (
            lambda path: write_json(path, {**read_json(path), "cells": {"id": "x"}}),
            "$.cells: {'id': 'x'} is not of type 'array'",
        ),
    ],
)
@pytest.mark.parametrize(
    ("main", "prog", "extra"),
    [
        (report.main, "python -m benchmarks.report", ["--no-plots"]),
        (status.main, "python -m benchmarks.status", []),
        (records.main, "python -m benchmarks.records", ["DEST"]),
    ],
)
def test_a_damaged_matrix_json_is_a_one_line_error_naming_it(
    results, tmp_path, capsys, write, problem, main, prog, extra
):
    write(results / MATRIX_NAME)
    arguments = [str(tmp_path / "dest") if word == "DEST" else word for word in extra]
    assert main([str(results), *arguments]) == 2
    one_error(capsys.readouterr().err, prog, str(results / MATRIX_NAME), problem)


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (lambda tmp, res: [str(res), "--out", str(tmp / "a-file")], ["--out", "a-file' is a file; name a directory"]),
        (lambda tmp, res: [str(res), "--out", str(tmp / "a-file" / "under")], ["a-file/under' cannot be created"]),
        (lambda tmp, res: [str(tmp / "a-file")], ["a-file' is a file; name a results directory"]),
        (lambda tmp, res: [str(tmp / "none")], ["none' holds no matrix.json"]),
    ],
)
def test_report_onto_a_file_or_from_a_file_is_a_one_line_error(results, tmp_path, capsys, arguments, fragments):
    (tmp_path / "a-file").write_text("kept")
    assert report.main([*arguments(tmp_path, results), "--no-plots"]) == 2
    one_error(capsys.readouterr().err, "python -m benchmarks.report", *fragments)
    assert (tmp_path / "a-file").read_text() == "kept"


def test_a_damaged_job_json_is_named_and_read_as_no_job(results, capsys):
    job = cell_dir(results, CELL) / "job.json"
    job.write_text('{"executor": "slurm", "id": "42", "subm')
    damage(results, "empty")  # so that the job is what status reads to tell the cell's state
    _, counts, _ = status.status_lines(load_matrix(results))
    assert counts["damaged"] == 1 and counts["queued"] == 0
    assert f"warning: {str(job)!r} is damaged: not JSON" in capsys.readouterr().err


# -- the runner's planning -------------------------------------------------------------------------------------

TINY = (
    """
[suite]
name = "tiny"
test_priors = ["standard"]
"""
    + TINY_BASE
    + """
[axes]
case = [
    { label = "seed 0", id = "s0", train = { seed = 0 } },
    { label = "seed 1", id = "s1", train = { seed = 1 } },
]
"""
)


def suite_file(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def written_matrix(out: Path, suite: Path) -> Path:
    """``out`` holding the matrix.json a run of ``suite`` writes (and nothing else)."""
    loaded = load_suite(suite)
    write_json(out / MATRIX_NAME, matrix_document(loaded, None, expand(loaded, None)))
    return out


@pytest.mark.parametrize(
    ("files", "action"),
    [({RESULTS_NAME: "{}", CHECKPOINT_NAME: ""}, RESUME), ({CHECKPOINT_NAME: ""}, RESUME), ({}, TRAIN)],
)
def test_the_runner_plans_a_cell_with_a_damaged_cell_json_from_its_run_directory(
    tmp_path, capsys, registry, files, action
):
    suite = load_suite(suite_file(tmp_path))
    cell = expand(suite, None)[0]
    out = tmp_path / "out"
    run = cell_dir(out, cell.id) / RUN_DIR
    run.mkdir(parents=True)
    for name, text in files.items():
        (run / name).write_text(text)
    (cell_dir(out, cell.id) / CELL_NAME).write_text('{"id": "case=s0", "status": "o')
    planned = runner.plan_cell(cell, out, Validator(registry, None))
    assert planned.action == action and planned.previous is None
    err = capsys.readouterr().err
    assert f"{str(cell_dir(out, cell.id) / CELL_NAME)!r} is damaged: not JSON" in err
    if RESULTS_NAME in files:  # "{}" is not a run's results: resumed, which writes them again
        assert f"{str(run / RESULTS_NAME)!r} is damaged: not a run's results" in err


def test_a_run_with_good_results_is_only_evaluated(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    good = {"metrics": {"mi": 1.0}, "test_prior": "standard", "steps": 20, "seed": 0, "wall_time_s": 1.0}
    (run / RESULTS_NAME).write_text(json.dumps({**good, "config": {"model": {"latent_dim": 2}}}))
    assert stage_of(run) == EVALUATE


def test_another_suite_into_a_results_directory_is_refused_naming_both(tmp_path, capsys):
    out = written_matrix(tmp_path / "out", suite_file(tmp_path))
    before = (out / MATRIX_NAME).read_bytes()
    other = suite_file(tmp_path, TINY.replace('name = "tiny"', 'name = "other"'), "other.toml")
    assert runner.main([str(other), "--out", str(out)]) == 2
    one_error(
        capsys.readouterr().err, "python -m benchmarks.run", "holds suite 'tiny'", "tiny.toml", "asks for suite 'other'"
    )
    assert (out / MATRIX_NAME).read_bytes() == before and sorted(p.name for p in out.iterdir()) == sorted(
        [MATRIX_NAME, RUNNER_LOCK_NAME]
    )


def test_a_suite_whose_matrix_lost_cells_of_the_directory_is_refused(tmp_path, capsys):
    out = written_matrix(tmp_path / "out", suite_file(tmp_path))
    narrowed = suite_file(
        tmp_path, TINY.replace('    { label = "seed 1", id = "s1", train = { seed = 1 } },\n', ""), "n.toml"
    )
    assert runner.main([str(narrowed), "--out", str(out), "--dry-run"]) == 2
    one_error(
        capsys.readouterr().err, "python -m benchmarks.run", "holds suite 'tiny'", "lacks 1 of its cells", "case=s1"
    )


def test_the_same_suite_grown_or_restricted_with_only_keeps_its_directory(tmp_path, capsys):
    suite = suite_file(tmp_path)
    out = written_matrix(tmp_path / "out", suite)
    assert runner.main([str(suite), "--out", str(out), "--only", "case=s0", "--dry-run"]) == 0
    seed_1 = '    { label = "seed 1", id = "s1", train = { seed = 1 } },\n'
    grown = TINY.replace(seed_1, seed_1 + seed_1.replace("1", "2"))
    grown = grown.replace('["standard"]', '["standard", "optimal"]')
    assert runner.main([str(suite_file(tmp_path, grown, "grown.toml")), "--out", str(out), "--dry-run"]) == 0
    assert "error" not in capsys.readouterr().err


def test_a_damaged_matrix_json_does_not_stop_the_runner(tmp_path, capsys):
    suite = suite_file(tmp_path)
    out = written_matrix(tmp_path / "out", suite)
    (out / MATRIX_NAME).write_text("{")
    assert runner.main([str(suite), "--out", str(out), "--dry-run"]) == 0
    one_warning(capsys.readouterr().err, str(out / MATRIX_NAME), "written again from the suite file")


# -- the readers of a vaezoo run directory ---------------------------------------------------------------------


def test_foreign_lines_of_a_run_s_json_lines_file_are_left_out_and_named(tmp_path, capsys):
    path = tmp_path / METRICS_NAME
    good = [{"step": 10, "valid": {"neg_elbo": 3.0}}, {"step": 20, "valid": {"neg_elbo": 2.0}}]
    foreign = ['{"step": "ten"}', '{"step": 15, "valid": 3}', "[1]", "{not json", '{"step": 1, "changed": {"a.b": 5}}']
    path.write_text("\n".join([json.dumps(good[0]), *foreign, json.dumps(good[1]), '{"step": 30, "va']) + "\n")
    assert read_json_lines(path) == good
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert [line.split(" of ")[0] for line in warned] == [f"warning: line {n}" for n in (2, 3, 4, 5, 6)]
    assert all(f"of {str(path)!r} is left out" in line for line in warned), "the cut-short last line is not warned"
    assert "$.step: 'ten' is not of type 'integer'" in warned[0] and "is not of type 'array'" in warned[4]


def test_a_line_appended_after_a_cut_short_line_is_kept(tmp_path, capsys):
    path = tmp_path / HISTORY_NAME
    path.write_text('{"step": 0, "event": "started"}\n{"step": 40, "ev')  # a process killed while writing
    append_json_line(path, {"step": 40, "event": "resumed"})
    assert [line["event"] for line in read_json_lines(path)] == ["started", "resumed"]
    assert f"line 2 of {str(path)!r} is left out: it is not JSON" in capsys.readouterr().err


def test_run_settings_that_do_not_resolve_name_the_run_s_files(tmp_path, registry):
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_NAME).write_text(json.dumps({"train": 5}))
    with pytest.raises(UsageError, match=r"settings of run .*run' \(config\.json with the changes in history\.jsonl\)"):
        RunDirectory(run).current_config(registry)


def test_a_damaged_file_names_its_path_and_what_is_wrong(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(DamagedFile, match=r"x\.json' is damaged: not UTF-8 text"):
        read_json(path)


# -- real processes: the runner resumes damaged cells, vaezoo names damaged run files ---------------------------


def run_suite(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vaezoo_bench.run", *args, "--jobs", "2", "--threads", "1"]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def finished_suite(tmp_path_factory) -> tuple[Path, Path]:
    """The two-cell suite run once: (its suite file, its results directory)."""
    root = tmp_path_factory.mktemp("suite")
    suite, out = suite_file(root), root / "out"
    done = run_suite(str(suite), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    return suite, out


@pytest.mark.slow
def test_the_runner_resumes_cells_whose_records_are_damaged_and_refuses_another_suite(finished_suite, tmp_path):
    suite, finished = finished_suite
    out = Path(shutil.copytree(finished, tmp_path / "out"))
    first = cell_dir(out, "case=s0")
    (first / CELL_NAME).write_text((first / CELL_NAME).read_text()[:50])  # its run has results: evaluated again
    second = cell_dir(out, "case=s1")
    (second / CELL_NAME).write_text("[]")
    (second / RUN_DIR / RESULTS_NAME).write_text("")  # and a checkpoint: resumed, which writes its results again

    shown = subprocess.run([sys.executable, "-m", "vaezoo_bench.status", str(out)], capture_output=True, text=True)
    assert shown.returncode == 0 and shown.stdout.count("\ndamaged ") == 2, shown.stdout + shown.stderr

    again = run_suite(str(suite), "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 resume, 1 evaluate" in again.stdout and "Traceback" not in again.stderr
    for path in (first / CELL_NAME, second / CELL_NAME, second / RUN_DIR / RESULTS_NAME):
        assert f"{str(path)!r} is damaged" in again.stderr
    for directory in (first, second):
        record = json.loads((directory / CELL_NAME).read_text())
        assert record["status"] == "ok" and set(record["test_priors"]) == {"standard"}
    assert "run --resume" in (second / "log.txt").read_text()
    assert (first / "log.txt").read_text().count(" run --config ") == 1, "case=s0 was not trained again"

    other = suite_file(tmp_path, TINY.replace('name = "tiny"', 'name = "other"'), "other.toml")
    before = (out / MATRIX_NAME).read_bytes()
    refused = run_suite(str(other), "--out", str(out))
    assert refused.returncode == 2 and (out / MATRIX_NAME).read_bytes() == before
    one_error(refused.stderr, "python -m benchmarks.run", "holds suite 'tiny'", "asks for suite 'other'")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "text", "fragments"),
    [
        (CONFIG_NAME, '{"data": {"na', ["config.json' is malformed"]),
        (CONFIG_NAME, "", ["config.json' is malformed"]),
        (CONFIG_NAME, "[1]", ["config.json' must hold a table of sections"]),
        (CONFIG_NAME, '{"model": {"latent_dim": "two"}}', ["(config.json with the changes in history.jsonl)"]),
    ],
)
def test_vaezoo_names_a_damaged_config_json_in_one_line(finished_suite, tmp_path, file, text, fragments):
    run = Path(shutil.copytree(cell_dir(finished_suite[1], "case=s0") / RUN_DIR, tmp_path / "run"))
    (run / file).write_text(text)
    for command in (["eval", str(run), "--json"], ["run", "--resume", str(run), "--steps", "30"], ["sample", str(run)]):
        result = run_cli(*command, "--no-progress" if command[0] != "sample" else "--count=4")
        assert result.returncode == 2, result.stderr
        one_error(result.stderr, "vaezoo", str(run), *fragments)


@pytest.mark.slow
def test_vaezoo_goes_on_past_foreign_lines_of_its_history_and_metrics(finished_suite, tmp_path):
    run = Path(shutil.copytree(cell_dir(finished_suite[1], "case=s0") / RUN_DIR, tmp_path / "run"))
    with (run / HISTORY_NAME).open("a") as history:
        history.write('{"step": 1, "changed": {"train.steps": 5}}\n{"step": 2, "data_dir": 5}\n')
    with (run / METRICS_NAME).open("a") as metrics:
        metrics.write('{"step": "x", "valid": {}}\n{"step": 10, "valid": 3}\n')
    evaluated = run_cli("eval", str(run), "--json", "--no-progress")
    assert evaluated.returncode == 0 and json.loads(evaluated.stdout)["test_prior"], evaluated.stderr
    assert f"line 3 of {str(run / HISTORY_NAME)!r} is left out" in evaluated.stderr
    resumed = run_cli("run", "--resume", str(run), "--steps", "30", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"line 4 of {str(run / METRICS_NAME)!r} is left out" in resumed.stderr
    assert [line["step"] for line in read_json_lines(run / METRICS_NAME)] == [10, 20, 30]


# -- the reader of the output goes away ------------------------------------------------------------------------


def output_closed(*args: str) -> subprocess.CompletedProcess:
    """``python -m ARGS`` with its standard output's reader gone before it writes (as ``| head -1`` after a line)."""
    process = subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    process.stdout.close()
    err = process.stderr.read()
    return subprocess.CompletedProcess(args, process.wait(timeout=300), "", err)


@pytest.mark.slow
def test_every_command_ends_quietly_when_its_output_is_closed(finished_suite, tmp_path):
    suite, out = finished_suite
    run = str(cell_dir(out, "case=s0") / RUN_DIR)
    commands = [
        ["vaezoo_bench.report", str(out), "--out", str(tmp_path / "report"), "--no-plots"],
        ["vaezoo_bench.status", str(out)],
        ["vaezoo_bench.records", str(out), str(tmp_path / "kept")],
        ["vaezoo_bench.run", str(suite), "--out", str(out), "--dry-run"],
        ["vaezoo_bench.diagnose", run],
        ["vaezoo_bench.perf.peak", "--size", "16", "--repeats", "1", "--threads", "1"],
        ["vaezoo", "list"],
        ["vaezoo", "theory"],
        ["vaezoo", "eval", run, "--json", "--no-progress"],
    ]
    for command in commands:
        ended = output_closed(*command)
        assert (ended.returncode, ended.stderr) == (0, ""), command


def test_a_second_runner_on_a_results_directory_is_refused_naming_the_holder(tmp_path, capsys):
    suite, out = suite_file(tmp_path), tmp_path / "out"
    with held(out / RUNNER_LOCK_NAME, f"results directory {str(out)!r}", "running suite tiny"):
        assert runner.main([str(suite), "--out", str(out)]) == 2
    holder = f"process {os.getpid()} on {socket.gethostname()} (running suite tiny since "
    one_error(
        capsys.readouterr().err, "python -m benchmarks.run", f"results directory {str(out)!r} is in use by", holder
    )
    assert not (out / MATRIX_NAME).exists(), "the refused runner wrote nothing"
    assert runner.main([str(suite), "--out", str(out), "--dry-run"]) == 0, "a dry run only reads: never refused"


def test_a_suite_is_named_by_a_built_in_name_or_by_its_file(tmp_path):
    assert suite_file_of("smoke") == BUILT_IN_SUITES / "smoke.toml" and suite_file_of("smoke").is_file()
    assert set(built_in_suites()) >= {"smoke", "table1", "table2", "zoo"}
    given = suite_file(tmp_path)
    assert suite_file_of(str(given)) == given
    assert suite_file_of("suites/missing.toml") == Path("suites/missing.toml")  # a path: its reader names it
    with pytest.raises(UsageError, match=r"suite 'tabel1' is neither a file nor a built-in suite; built-in suites: .*"):
        suite_file_of("tabel1")
