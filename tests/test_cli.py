"""The vaezoo command in real child processes: a full run, eval, and usage errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from vaezoo_plugins.data.text import PTB

pytestmark = pytest.mark.slow  # every test here trains or starts processes

SMALL = [
    "--set", "data.n_train=256", "--set", "data.n_valid=128", "--set", "data.n_test=128", "--set", "data.dim=10",
    "--set", "train.eval_every=10", "--set", "eval.iw_samples=10", "--steps", "20", "--no-progress",
]  # fmt: skip


def assert_usage_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "--regularizer", "nope"], ["unknown regularizer 'nope'", "betavae"]),
        (["run", "--encoder", "cnn"], ["unknown encoder 'cnn'", "mlp"]),
        (["run", "--set", "regularizer.beta=-1"], ["beta", ">= 0", "-1"]),
        (["run", "--set", "regularizer.gamma=1"], ["unknown parameter 'gamma'", "beta, free_bits, warmup_steps"]),
        (["run", "--set", "train.lr=fast"], ["train.lr", "expected a number", "fast"]),
        (["run", "--set", "nosection"], ["SECTION.PARAM=VALUE", "nosection"]),
        (["run", "--set", "optimizer.lr=1"], ["unknown config section 'optimizer'", "train"]),
        (["run", "--data-dir", "/no/such/dir"], ["data directory '/no/such/dir'", "does not exist"]),
        (["run", "--test-prior", "wide"], ["test prior 'wide'", "standard, optimal, tuned"]),
        (["run", "--device", "cuda:0"], ["cuda:0", "not available"]),
        (["run", "--device", "toaster"], ["toaster", "not a torch device"]),
        (["run", "--steps", "0"], ["steps", "must be >= 1", "0"]),
        (["run", "--resume", "/no/such/run"], ["not a run directory"]),
        (["eval", "/no/such/run"], ["not a run directory"]),
        (["run", "--steps", "many"], ["invalid int value: 'many'"]),
        (["run", "--steps", "5", "--epochs", "1"], ["--steps 5 and --epochs 1", "give one"]),
        (["list", "gizmo"], ["unknown kind 'gizmo'", "regularizer", "metric", "executor"]),
    ],
)
def test_usage_errors_exit_2_with_a_message(args, fragments):
    assert_usage_error(run_cli(*args), *fragments)


@pytest.mark.parametrize(("regularizer", "noted"), [("betavae", True), ("ncvae", False)])
def test_a_noise_sampler_that_the_regularizer_never_draws_from_is_noted(regularizer, noted):
    done = run_cli("run", "--regularizer", regularizer, "--noise", "gaussian", "--dry-run")
    assert done.returncode == 0, done.stderr
    note = f"vaezoo: note: regularizer {regularizer!r} uses no contrastive noise; noise 'gaussian' is not used"
    assert (note in done.stderr) == noted, done.stderr


def test_malformed_config_file(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[regularizer\nname = 'betavae'\n")
    assert_usage_error(run_cli("run", "--config", str(config)), "malformed", str(config))
    assert_usage_error(run_cli("run", "--config", str(tmp_path / "missing.toml")), "cannot read config file")


def test_run_eval_and_resume_through_the_installed_command(tmp_path):
    vaezoo = Path(sys.executable).parent / "vaezoo"
    command = str(vaezoo) if vaezoo.exists() else shutil.which("vaezoo")
    assert command, "the console script 'vaezoo' is not installed"
    config = tmp_path / "run.toml"
    config.write_text('[regularizer]\nname = "betavae"\nbeta = 0.5\n\n[model]\nlatent_dim = 3\n')
    out = tmp_path / "run"
    first = run_cli("run", "--config", str(config), *SMALL, "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "neg_elbo" in first.stdout and "iw_nll" in first.stdout
    saved = json.loads((out / "config.json").read_text())
    assert saved["regularizer"]["beta"] == 0.5 and saved["model"]["latent_dim"] == 3

    again = run_cli("run", *SMALL, "--out", str(out))
    assert_usage_error(again, "is not empty", "--resume", "--overwrite")

    extended = run_cli("run", "--resume", str(out), "--steps", "30", "--no-progress")
    assert extended.returncode == 0, extended.stderr
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]

    evaluated = run_cli("eval", str(out), "--test-prior", "2.5", "--json", "--iw-samples", "5")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout)
    assert metrics["test_prior_variance"] == 2.5 and metrics["split"] == "test"
    assert metrics["neg_elbo"] == pytest.approx(metrics["recon"] + metrics["kl"])


def test_list_shows_components_origins_and_parameters():
    result = run_cli("list")
    assert result.returncode == 0, result.stderr
    for kind in ("data:", "encoder:", "decoder:", "prior:", "regularizer:", "noise:"):
        assert kind in result.stdout
    assert "betavae" in result.stdout and "(distribution vaezoo)" in result.stdout
    assert "beta (float, default 1.0)" in result.stdout
    only = run_cli("list", "prior")
    assert "standard" in only.stdout and "betavae" not in only.stdout


def test_runs_without_out_never_overwrite_each_other(tmp_path):
    for _ in range(2):
        result = run_cli("run", *SMALL, "--set", "eval.iw_samples=0", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert made == ["synthetic-betavae-s0", "synthetic-betavae-s0-2"]
    assert all((tmp_path / "runs" / name / "results.json").exists() for name in made)


TINY_PTB = [
    "--data", "ptb", "--encoder", "lstm", "--decoder", "lstm", "--latent-dim", "4",
    "--set", "encoder.embed_dim=16", "--set", "encoder.hidden=16", "--set", "decoder.embed_dim=16",
    "--set", "decoder.hidden=16", "--set", "decoder.dropout=0", "--set", "data.limit=48", "--set", "data.max_len=20",
    "--steps", "4", "--batch-size", "16", "--set", "train.eval_every=4", "--set", "eval.iw_samples=2",
    "--set", "eval.limit=32", "--no-progress",
]  # fmt: skip


def test_eval_on_a_test_file_named_or_added_after_training(data_dir, tmp_path):
    """A run trained without PTB's test file is evaluated on one with one command: named by --set data.test_file,
    or found in the run's data directory (its data.source=auto); both say which file made each split."""
    folder = tmp_path / "data" / "ptb"
    folder.mkdir(parents=True)
    for name in ("ptb.train.txt.gz", "ptb.valid.txt.gz"):
        (folder / name).symlink_to(data_dir / "ptb" / name)
    out = tmp_path / "run"
    one_thread = {"OMP_NUM_THREADS": "1"}
    trained = run_cli("run", *TINY_PTB, "--data-dir", str(tmp_path / "data"), "--out", str(out), env=one_thread)
    assert trained.returncode == 0, trained.stderr
    train_file = folder / "ptb.train.txt.gz"
    assert f"vaezoo: data train: 48 examples from '{train_file}'" in trained.stderr  # data.limit = 48
    recorded = json.loads((out / "results.json").read_text())["data_sources"]
    assert recorded["train"]["file"] == str(train_file) and recorded["test"]["examples"] > 0
    started = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert started["data_sources"] == recorded, "the history records the files the run started from"
    sentences = PTB(PTB.Params()).read(tmp_path / "data")["test"][:40]  # of the run's test part, in Mikolov's format
    test_file = tmp_path / "ptb.test.txt"
    test_file.write_text("\n".join(sentences) + "\n")
    quick = ["--iw-samples", "2", "--no-progress", "--json"]

    named = run_cli("eval", str(out), "--set", f"data.test_file={test_file}", *quick, env=one_thread)
    assert named.returncode == 0, named.stderr
    assert f"data test: 40 examples from '{test_file}' (all its 40 examples; data.test_file)" in named.stderr
    valid = f"data valid: 1685 examples from '{folder / 'ptb.valid.txt.gz'}' (the valid part of its 3370 examples"
    assert valid in named.stderr, "the run's own validation split, whatever the test file"
    metrics = json.loads(named.stdout)
    assert metrics["split"] == "test" and math.isfinite(metrics["iw_nll"])
    assert metrics["neg_elbo"] != json.loads((out / "results.json").read_text())["metrics"]["neg_elbo"]

    shutil.copy(test_file, folder / "ptb.test.txt")
    found = run_cli("eval", str(out), *quick, env=one_thread)
    assert found.returncode == 0, found.stderr
    assert "(all its 40 examples; data.source=auto, as it is present)" in found.stderr and valid in found.stderr
    assert json.loads(found.stdout) == metrics, "the same sentences give the same metrics"
    table = run_cli("eval", str(out), "--iw-samples", "2", "--no-progress", env=one_thread)
    assert f"test split (40 examples from '{folder / 'ptb.test.txt'}') of {out}, by test prior:" in table.stdout

    refused = run_cli("eval", str(out), "--set", "data.max_vocab=10")
    assert_usage_error(refused, "'data.max_vocab=10'", "for data 'ptb': data.test_file, data.check_sha256")
