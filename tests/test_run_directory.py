"""A run directory never loses or clobbers work: refusals, the lock, signals, resume rules, recorded data.

Every case runs ``vaezoo`` in a real child process and checks the exit code, that an error is one line with no
traceback, and what is on disk afterwards.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint

pytestmark = pytest.mark.slow

TINY = [
    "--set", "data.dim=10", "--set", "data.n_train=256", "--set", "data.n_valid=64", "--set", "data.n_test=64",
    "--set", "eval.iw_samples=5", "--set", "train.eval_every=10", "--set", "train.threads=1", "--no-progress",
]  # fmt: skip
# Long enough to be caught in the middle (about 20 s on one idle thread), small enough to resume quickly.
LONG = ["run", *TINY, "--steps", "3000", "--set", "train.eval_every=500", "--set", "data.n_train=2048"]
# A run that cannot end while a test acts on it, however fast the machine: the test kills it.
ENDLESS = [*LONG, "--steps", "10000000"]


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Assert exit 2 with a single ``vaezoo: error:`` line naming ``fragments``; return the line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaezoo: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file() and p.name != ".lock"}


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vaezoo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``condition`` until it holds; fail if ``process`` ends first or it takes over ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the child process ended with {process.returncode}: {process.communicate()[1]}")
        assert time.monotonic() < deadline, "timed out waiting for the child process"
        time.sleep(0.05)


def checkpoint_step(run: Path) -> int:
    return load_checkpoint(run / CHECKPOINT_NAME)["step"] if (run / CHECKPOINT_NAME).exists() else -1


def final_metrics(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["metrics"]


def test_out_onto_a_directory_with_files_is_refused_and_nothing_changes(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "config.json").write_text("mine\n")
    (out / "metrics.jsonl").write_text("log\n")
    before = snapshot(out)
    one_line_error(run_cli("run", *TINY, "--steps", "5", "--out", str(out)), "not empty", "config.json", "--overwrite")
    assert snapshot(out) == before


def test_overwrite_replaces_the_run_files_and_keeps_the_others(tmp_path):
    out = tmp_path / "d"
    assert run_cli("run", *TINY, "--steps", "10", "--out", str(out)).returncode == 0
    (out / "notes.txt").write_text("my notes\n")
    replaced = run_cli("run", *TINY, "--steps", "20", "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    events = [json.loads(line)["event"] for line in (out / "history.jsonl").read_text().splitlines()]
    assert events == ["started", "finished"]


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_out_naming_a_file_or_a_path_under_a_file_is_refused(tmp_path, where):
    blocker = tmp_path / "results.txt"
    blocker.write_text("precious\n")
    out = blocker if where == "file" else blocker / "run"
    one_line_error(run_cli("run", *TINY, "--steps", "5", "--out", str(out)), str(blocker))
    assert blocker.read_text() == "precious\n"


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"data": {"name": "synthetic"}}))
    one_line_error(run_cli("run", "--resume", str(out)), "no checkpoint.pt", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--set", "regularizer.beta=4"], ["regularizer.beta 1.0 -> 4.0"]),
        (["--latent-dim", "8"], ["model.latent_dim 2 -> 8"]),
        (["--regularizer", "ncvae", "--set", "train.lr=0.01"], ["regularizer.name 'betavae' -> 'ncvae'", "train.lr"]),
    ],
)
def test_resume_refuses_every_change_to_what_the_run_learns(tmp_path, flags, named):
    out = tmp_path / "run"
    assert run_cli("run", *TINY, "--steps", "10", "--out", str(out)).returncode == 0
    before = snapshot(out)
    one_line_error(run_cli("run", "--resume", str(out), *flags), *named, "train.steps")
    assert snapshot(out) == before


def test_resume_records_what_it_changed_and_never_rewrites_the_config(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", *TINY, "--steps", "10", "--out", str(out)).returncode == 0
    config = (out / "config.json").read_bytes()
    longer = run_cli("run", "--resume", str(out), "--steps", "20", "--set", "eval.iw_samples=3", "--no-progress")
    assert longer.returncode == 0, longer.stderr
    assert (out / "config.json").read_bytes() == config
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    resumed = next(entry for entry in history if entry["event"] == "resumed")
    assert resumed["step"] == 10
    assert resumed["changed"] == {"train.steps": [10, 20], "eval.iw_samples": [5, 3]}
    # a later resume continues with the settings in force: 20 steps, not the 10 of config.json
    again = run_cli("run", "--resume", str(out), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "results.json").read_text())["steps"] == 20


def test_a_second_process_is_refused_while_one_trains_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "run"
    first = start(*ENDLESS, "--out", str(out))
    try:
        wait_for(lambda: checkpoint_step(out) >= 0, first)
        metrics_before = (out / "metrics.jsonl").read_bytes() if (out / "metrics.jsonl").exists() else b""
        overwrite = ["run", *TINY, "--out", str(out), "--overwrite"]
        for second in (["run", "--resume", str(out)], ["eval", str(out)], overwrite):
            line = one_line_error(run_cli(*second), "in use by process", str(first.pid))
            assert "training" in line
        after = (out / "metrics.jsonl").read_bytes() if (out / "metrics.jsonl").exists() else b""
        assert after.startswith(metrics_before)  # nothing written twice or removed by the refused processes
    finally:
        first.kill()
        first.wait()
    at_least = str(max(checkpoint_step(out), 20))  # a resume may not shorten the run
    resumed = run_cli("run", "--resume", str(out), "--steps", at_least, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr  # the lock of the killed process is taken over


@pytest.fixture(scope="module")
def straight_long(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    result = run_cli(*LONG, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_keeps_the_last_step_and_prints_the_whole_resume_command(
    tmp_path, straight_long, signum, code
):
    out = tmp_path / "run"
    process = start(*LONG, "--out", str(out))
    wait_for(lambda: (out / "history.jsonl").exists() and checkpoint_step(out) >= 0, process)
    time.sleep(3)  # well inside the 3000 steps
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    stopped = checkpoint_step(out)
    assert 0 < stopped < 3000, stderr
    assert f"step {stopped}" in stderr
    command = shlex.split(stderr.strip().splitlines()[-1].split("continue with: ", 1)[1])
    assert command[:4] == ["vaezoo", "run", "--resume", str(out)]
    assert command[4:] == ["--data-dir", os.environ["VAEZOO_DATA"]]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["event"] == "interrupted" and history[-1]["signal"] == signal.Signals(signum).name
    resumed = run_cli(*command[1:], "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "metrics.jsonl").read_text() == (straight_long / "metrics.jsonl").read_text()
    assert final_metrics(out) == final_metrics(straight_long)


def test_a_signal_during_the_final_evaluation_keeps_the_trained_model(tmp_path):
    out = tmp_path / "run"
    slow_eval = ["run", *TINY, "--steps", "20", "--set", "data.n_test=2000", "--set", "eval.iw_samples=5000"]
    process = start(*slow_eval, "--out", str(out))
    wait_for(lambda: checkpoint_step(out) == 20, process)
    time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "step 20" in stderr and not (out / "results.json").exists()
    finished = run_cli("run", "--resume", str(out), "--set", "eval.iw_samples=5", "--no-progress")
    assert finished.returncode == 0, finished.stderr
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    assert json.loads((out / "results.json").read_text())["steps"] == 20


def test_resume_alone_finds_the_recorded_data_directory(tmp_path, data_dir):
    out = tmp_path / "run"
    image = [
        "--data", "mnist", "--set", "data.limit=64", "--set", "decoder.likelihood=bernoulli", "--set", "eval.limit=32",
        "--set", "eval.iw_samples=2", "--batch-size", "16", "--steps", "10", "--no-progress",
    ]  # fmt: skip
    first = run_cli("run", *image, "--out", str(out), "--data-dir", str(data_dir))
    assert first.returncode == 0, first.stderr
    without_variable = {key: value for key, value in os.environ.items() if key != "VAEZOO_DATA"}
    resumed = subprocess.run(
        [sys.executable, "-m", "vaezoo", "run", "--resume", str(out), "--steps", "20", "--no-progress"],
        capture_output=True,
        text=True,
        env=without_variable,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    evaluated = subprocess.run(
        [sys.executable, "-m", "vaezoo", "eval", str(out), "--iw-samples", "0", "--json", "--no-progress"],
        capture_output=True,
        text=True,
        env=without_variable,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--device", "meta"], ["'meta'", "valid here: cpu"]),
        (["--device", "cuda:7"], ["'cuda:7'", "valid here: cpu"]),
        (["--batch-size", "300"], ["train.batch_size 300", "256 training examples", "at most 256"]),
        (["--test-prior", "optimal", "--regularizer", "l2code"], ["'optimal' is not offered", "'l2code'"]),
    ],
)
def test_mistakes_found_before_training_leave_no_run_directory(tmp_path, args, fragments):
    out = tmp_path / "run"
    plugin = {"PYTHONPATH": str(Path(__file__).parent / "fixtures" / "plugin_site")}  # l2code: no optimal prior
    one_line_error(run_cli("run", *TINY, "--steps", "5", "--out", str(out), *args, env=plugin), *fragments)
    assert not out.exists()


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    config = tmp_path / "run.toml"
    config.write_bytes(b"[train]\nsteps = 5 # \xff\xfe\n")
    one_line_error(run_cli("run", "--config", str(config), "--out", str(tmp_path / "run")), "not UTF-8", "0xff")


def test_a_prior_with_no_closed_form_kl_trains_and_evaluates(tmp_path):
    site = Path(__file__).parent / "fixtures" / "prior_site"
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    result = run_cli("run", "--prior", "two-bumps", *TINY, "--steps", "20", "--out", str(out), env=env)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(line["train"]["kl"] > 0 for line in lines)  # a Monte Carlo KL against the mixture


def test_list_shows_the_core_settings_with_their_bounds():
    result = run_cli("list", "train")
    assert result.returncode == 0, result.stderr
    assert "grad_clip (float | None, default None)" in result.stdout and "> 0" in result.stdout
    evaluation = run_cli("list", "eval").stdout
    assert "limit" in evaluation and ">= 1" in evaluation and "au_threshold" in evaluation
    assert "latent_dim" in run_cli("list", "model").stdout


def test_eval_takes_evaluation_settings_and_shows_progress(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", *TINY, "--steps", "10", "--out", str(out)).returncode == 0
    limited = run_cli("eval", str(out), "--set", "eval.limit=7", "--set", "eval.batch_size=4", "--iw-samples", "3")
    assert limited.returncode == 0, limited.stderr
    assert "eval test" in limited.stderr and "ex/s" in limited.stderr  # the bar, with its rate and time left
    assert "metric (nats per example)" in limited.stdout and "iw_nll = -log p(x)" in limited.stdout
    one_line_error(run_cli("eval", str(out), "--set", "regularizer.beta=2"), "evaluation settings only")
    one_line_error(run_cli("eval", str(out), "--set", "eval.limit=0"), "'limit' must be >= 1: 0")


def test_a_run_directory_that_is_a_file_is_refused_with_advice_for_the_command_at_hand(tmp_path):
    from vaezoo.base.errors import UsageError
    from vaezoo.runs.directory import RunDirectory

    file = tmp_path / "notes.txt"
    file.write_text("")
    with pytest.raises(UsageError, match=r"'.*notes.txt' is a file; name the directory of a run$"):
        RunDirectory(file).check_usable()  # what eval, sample and --resume read
    with pytest.raises(UsageError, match=r"lies under the file '.*notes.txt'; choose a directory with --out$"):
        RunDirectory(file / "run").check_new(overwrite=False)
