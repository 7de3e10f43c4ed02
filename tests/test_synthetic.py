"""The paper's synthetic experiment (Fig. 2) and the test priors of a trained NC-VAE."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli, small_config
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.regularizers.ncvae import optimal_test_variance


def separability(registry, tmp_path, regularizer):
    config = small_config(
        registry,
        regularizer={"name": regularizer},
        data={"n_train": 2000, "n_test": 1000},
        train={"steps": 400, "eval_every": 200, "batch_size": 64},
        eval={"iw_samples": 0},
    )
    return Trainer(config, registry, tmp_path / regularizer, None).run()["metrics"]["separability"]


@pytest.mark.slow
def test_ncvae_separates_data_and_noise_codes_where_betavae_does_not(registry, tmp_path):
    beta = separability(registry, tmp_path, "betavae")
    nc = separability(registry, tmp_path, "ncvae")
    assert beta < 0.62, "beta-VAE codes of data and noise should overlap (Fig. 2, left)"
    assert nc > beta + 0.1, "NC-VAE should push noise codes away from data codes (Fig. 2, right)"
    assert (tmp_path / "ncvae" / "latent_scatter.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def ncvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ncvae") / "run"
    result = run_cli(
        "run", "--regularizer", "ncvae", "--set", "regularizer.beta=1.5", "--set", "regularizer.delta=0.5",
        "--set", "regularizer.K=3", "--set", "data.dim=10", "--set", "data.n_train=512", "--steps", "30",
        "--set", "train.eval_every=15", "--set", "eval.iw_samples=0", "--no-progress", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "separability" in result.stdout
    return out


def eval_json(run_dir, test_prior):
    result = run_cli("eval", str(run_dir), "--test-prior", test_prior, "--json", "--iw-samples", "0")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_eval_with_the_optimal_and_tuned_test_priors(ncvae_run):
    f = optimal_test_variance(3.0, 1.5, 0.5)
    standard, optimal, tuned = (eval_json(ncvae_run, p) for p in ("standard", "optimal", "tuned"))
    assert standard["test_prior_variance"] == 1.0
    assert optimal["test_prior_variance"] == pytest.approx(f)
    assert 1.0 <= tuned["test_prior_variance"] <= f
    # tuning maximises the ELBO over [1, f], so it is at least as good as both ends
    assert tuned["neg_elbo"] <= min(standard["neg_elbo"], optimal["neg_elbo"]) + 1e-6
    assert standard["recon"] == optimal["recon"] == tuned["recon"], "only the KL depends on the test prior"


@pytest.mark.slow
def test_several_test_priors_in_one_pass_equal_each_alone(ncvae_run):
    """``--test-prior a,b,c`` evaluates once with shared posterior samples: each prior's line equals its own
    evaluation, IW-NLL included (which only log p(z) makes differ)."""
    choices = ["standard", "optimal", "2.5"]
    command = ["eval", str(ncvae_run), "--test-prior", ",".join(choices), "--iw-samples", "20"]
    together = run_cli(*command, "--json")
    assert together.returncode == 0, together.stderr
    lines = [json.loads(line) for line in together.stdout.splitlines()]
    assert [line["test_prior"] for line in lines] == choices
    for line in lines:
        alone = run_cli("eval", str(ncvae_run), "--test-prior", line["test_prior"], "--iw-samples", "20", "--json")
        assert alone.returncode == 0, alone.stderr
        expected = json.loads(alone.stdout)
        assert line.keys() == expected.keys()
        for name, value in expected.items():
            assert line[name] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), name
    assert len({line["iw_nll"] for line in lines}) == 3 and len({line["kl"] for line in lines}) == 3
    table = run_cli(*command)
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "(nats", "per", "example)", *choices]
    wrong = run_cli("eval", str(ncvae_run), "--test-prior", "standard,wide")
    assert wrong.returncode == 2 and "test prior 'wide'" in wrong.stderr and "Traceback" not in wrong.stderr
