"""Image models on real data: a short Omniglot run learns, and 'vaezoo sample' draws PNG grids."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np
import pytest

from tests.conftest import run_cli

SHORT = [
    "--data", "omniglot", "--encoder", "resnet", "--decoder", "deconv", "--latent-dim", "8",
    "--set", "encoder.channels=8,16", "--set", "encoder.blocks_per_stage=1", "--set", "decoder.channels=16",
    "--set", "data.limit=1200", "--set", "eval.limit=240", "--set", "eval.iw_samples=10",
    "--set", "train.eval_every=40", "--steps", "160", "--batch-size", "32", "--no-progress",
]  # fmt: skip


@pytest.mark.slow
def test_a_short_omniglot_run_lowers_the_validation_loss_and_samples(data_dir, tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", *SHORT, "--data-dir", str(data_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["valid"]["neg_elbo"], lines[-1]["valid"]["neg_elbo"]
    assert last < first - 10, f"validation -ELBO went from {first:.1f} to {last:.1f}"

    sampled = run_cli("sample", str(out), "--count", "16", "--data-dir", str(data_dir))
    assert sampled.returncode == 0, sampled.stderr
    prior = matplotlib.image.imread(out / "samples_prior.png")
    pairs = matplotlib.image.imread(out / "samples_reconstruction.png")
    assert prior.shape[:2] == (4 * 28, 4 * 28)
    assert pairs.shape[:2] == (4 * 28, 4 * 28)  # two rows of originals, each above its reconstructions
    assert set(np.unique(prior[..., 0]).round(3)) <= {0.0, 1.0}, "Bernoulli samples are binary"
    assert 0.0 < prior[..., 0].mean() < 0.5, "samples should look like ink on a dark background"


@pytest.mark.slow
def test_sample_refuses_data_without_a_picture_form(tmp_path):
    out = tmp_path / "run"
    small = ["--set", "data.dim=6", "--set", "data.n_train=64", "--steps", "2", "--set", "eval.iw_samples=0"]
    assert run_cli("run", *small, "--no-progress", "--out", str(out)).returncode == 0
    result = run_cli("sample", str(out))
    assert result.returncode == 2 and "image data" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_reads_lake_et_al_png_zips_as_the_test_split(data_dir, tmp_path):
    """A run on the shipped npz, evaluated with one command on Omniglot PNGs (a zip of the standard layout; here a
    shipped "background small" zip, whose images the npz also holds: this checks the path, not a held-out score)."""
    out = tmp_path / "run"
    small = ["--encoder", "mlp", "--decoder", "mlp", "--steps", "4", "--batch-size", "32", "--set", "eval.limit=64"]
    trained = run_cli(
        "run", "--data", "omniglot", *small, "--set", "eval.iw_samples=0", "--no-progress", "--out", str(out)
    )
    assert trained.returncode == 0, trained.stderr
    zipped = data_dir / "omniglot" / "images_background_small2.zip"
    allow = ["--set", "data.allow_overlap=true"]  # knowingly: the zip's images are the npz's
    result = run_cli("eval", str(out), "--set", f"data.test_file={zipped}", *allow, "--iw-samples", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert "(allowed by data.allow_overlap=true)" in result.stderr
    assert f"data test: 3120 examples from '{zipped}' (all its 3120 examples; data.test_file)" in result.stderr
    assert "data valid: 480 examples from" in result.stderr, "valid keeps its characters"
    assert json.loads(result.stdout)["neg_elbo"] > 0
