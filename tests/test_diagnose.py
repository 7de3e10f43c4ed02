"""vaezoo_bench.diagnose: where a model's information sits (means or scales of its posteriors), and its noise codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from tests.conftest import REPO, run_cli
from vaezoo_bench.diagnose import posterior_statistics
from vaezoo_plugins.metrics.information import he_groups

D, N = 4, 2000


def _groups(n: int = N) -> list[torch.Tensor]:
    return he_groups(n, 50)


def test_information_in_the_scales_alone_shows_in_the_scale_part_and_the_length_correlation():
    """Means all zero (no active unit), widths shrinking with the document's length: He et al.'s MI is far above
    its noise floor, all of it carried by the scales, and log sigma falls with the length."""
    torch.manual_seed(0)
    lengths = torch.randint(10, 200, (N,))
    scales = torch.exp(-0.02 * lengths.double()).unsqueeze(1).expand(N, D)
    stats = posterior_statistics(torch.zeros(N, D), scales, _groups(), lengths)
    floor = math.sqrt(D / (2 * 50))
    assert stats["au"] == 0 and max(stats["var_mean_dims"]) == 0
    assert stats["mi_he"] > 5 * floor and stats["mi_he_scales"] == pytest.approx(stats["mi_he"], abs=floor)
    assert abs(stats["mi_he_means"]) < 2 * floor, "constant means carry nothing"
    assert stats["length_corr_log_scale"] == pytest.approx(-1.0, abs=1e-9)
    assert min(stats["var_log_scale_dims"]) > 0.1


def test_information_in_the_means_alone_shows_in_the_mean_part_and_the_active_units():
    torch.manual_seed(1)
    means, scales = torch.randn(N, D), torch.full((N, D), 0.3)
    stats = posterior_statistics(means, scales, _groups())
    floor = math.sqrt(D / (2 * 50))
    assert stats["au"] == D and stats["mi_he"] > 5 * floor
    assert stats["mi_he_means"] == pytest.approx(stats["mi_he"], abs=floor) and abs(stats["mi_he_scales"]) < 2 * floor
    assert "length_corr_log_scale" not in stats and max(stats["var_log_scale_dims"]) == pytest.approx(0.0, abs=1e-12)
    for variance in (1.0, 1.9):
        stats = posterior_statistics(means, scales, _groups(), prior_variance=variance)
        prior = Independent(Normal(0.0, torch.full((D,), variance**0.5)), 1)
        expected = kl_divergence(Independent(Normal(means, scales), 1), prior)
        assert stats["kl"] == pytest.approx(expected.mean().item(), rel=1e-6)
        assert sum(stats["kl_dims"]) == pytest.approx(stats["kl"], rel=1e-9)


@pytest.mark.slow
def test_diagnose_reads_a_real_run_and_agrees_with_its_evaluation(tmp_path, data_dir):
    run = tmp_path / "run"
    tiny = ["--set", "data.limit=300", "--set", "data.max_len=30", "--set", "eval.iw_samples=0"]
    for side in ("encoder", "decoder"):
        tiny += ["--set", f"{side}.embed_dim=16", "--set", f"{side}.hidden=16"]
    trained = run_cli(
        "run", "--data", "ptb", "--encoder", "lstm", "--decoder", "lstm", "--regularizer", "ncvae", "--noise",
        "decoder", "--steps", "10", "--set", "train.eval_every=10", "--set", "eval.limit=200", *tiny,
        "--out", str(run), "--no-progress", "--data-dir", str(data_dir),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    command = [sys.executable, "-m", "vaezoo_bench.diagnose", str(run), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    (figures,) = [json.loads(line) for line in result.stdout.splitlines()]
    tested = json.loads((run / "results.json").read_text())["metrics"]
    assert figures["examples"] == 200 and len(figures["kl_dims"]) == 2  # the default latent_dim
    assert figures["kl"] == pytest.approx(tested["kl"], rel=1e-4) and figures["au"] == tested["au"]
    assert -1 <= figures["length_corr_log_scale"] <= 1
    noise = figures["noise"]
    assert noise["kl_contrastive"] >= 0 and noise["data_kl_contrastive"] >= 0 and 0 <= noise["separability"] <= 1
    table = subprocess.run([*command[:-1]], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert table.returncode == 0 and table.stdout.splitlines()[2].startswith(f"| {run} |")
    missing = subprocess.run([*command[:-2], str(tmp_path / "nothing")], capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "not a run directory" in missing.stderr and "Traceback" not in missing.stderr
