"""The vaezoo command in real child processes: a full run, eval, and usage errors (exit 2, no traceback)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

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
        (["list", "gizmo"], ["invalid choice: 'gizmo'", "regularizer"]),
    ],
)
def test_usage_errors_exit_2_with_a_message(args, fragments):
    assert_usage_error(run_cli(*args), *fragments)


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
