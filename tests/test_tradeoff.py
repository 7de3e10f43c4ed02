"""The report's trade-off figure (tradeoff.png): MI and AU against -ELBO and IW-NLL, one point per cell but the
seed with error bars over seeds, one series per method; checked on the data it plots, read back from the figure's
error-bar artists, not on pixels. The result files are written by hand (``tests.test_selection.write_results``).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.test_selection import SUITE, figures, write_results
from vaezoo.base.errors import UsageError
from vaezoo_bench.aggregate import load_matrix, tradeoff_points
from vaezoo_bench.plots import tradeoff_figure
from vaezoo_bench.report import main, write_report

# Two data sets as the column axis, so that the figure has a row of panels for each.
TWO_DATA = SUITE.replace(
    'rows = ["regularizer.beta", "method"]', 'rows = ["regularizer.beta", "method"]\ncolumn_axis = "data"'
)
TWO_DATA = TWO_DATA.replace(
    "[axes]\n",
    '[axes]\ndata = [{ label = "A", id = "a", data = { dim = 10 } }, { label = "B", id = "b", data = { dim = 12 } }]\n',
)


def metrics(axes: dict) -> dict | None:
    """β-VAE: MI falls with β; NC-VAE: MI and -ELBO grow with δ, all within 2 nats, so δ = 3 is chosen and only it
    runs on seed 1. Seeds differ, so that points of two seeds have error bars."""
    seed, beta = axes["train.seed"], axes["regularizer.beta"]
    if axes["method"] == "β-VAE":
        return figures(1.0 / beta + 0.1 * seed, 100.0 + beta + 0.4 * seed, mi=2.0 / beta, au=4.0 + seed)
    delta = axes["regularizer.delta"]
    if seed == 1 and delta != 3.0:
        return None  # a value that was not chosen never runs on the other seeds
    return figures(0.5 + delta + 0.2 * seed, 100.0 + 0.5 * delta + 0.3 * seed, mi=delta, au=delta + seed)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    # -ELBO and IW-NLL under f(K,β,δ) are 5 nats below those under 1
    return write_results(tmp_path, SUITE, metrics, shift={"optimal": -5.0})


def test_every_cell_but_the_seed_is_a_point_with_its_spread_over_seeds(results):
    points = tradeoff_points(load_matrix(results))
    # β-VAE at 2 β; NC-VAE at 2 β x 4 δ (the chosen δ on 2 seeds, the others on 1)
    assert len(points) == 2 + 8
    assert [p.seeds for p in points if p.series == "β-VAE"] == [2, 2]
    nc = {(p.label, p.chosen, p.seeds) for p in points if p.series == "NC-VAE"}
    assert nc == {(f"β={b}, δ={d}", d == 3.0, 2 if d == 3.0 else 1) for b in (0.5, 1.0) for d in (0.1, 0.3, 1.0, 3.0)}
    vae = next(p for p in points if p.label == "β=0.5")
    assert vae.stats["mi_he"] == pytest.approx((2.05, statistics.stdev([2.0, 2.1])))
    assert vae.stats["au"] == pytest.approx((4.5, statistics.stdev([4.0, 5.0])))
    # β-VAE was evaluated under 1 only: its -ELBO is read there; NC-VAE's under f(K,β,δ)
    assert vae.stats["neg_elbo"][0] == pytest.approx(100.7) and vae.priors == ("standard",)
    chosen = next(p for p in points if p.label == "β=0.5, δ=3.0")
    assert chosen.stats["neg_elbo"][0] == pytest.approx(100.0 + 1.5 + 0.15 - 5.0) and chosen.priors == ("optimal",)
    assert chosen.stats["iw_nll"][0] == pytest.approx(100.0 + 1.5 + 0.15 - 5.0 - 1.0)
    assert tradeoff_points(load_matrix(results), prior="standard")[-1].stats["neg_elbo"][0] == pytest.approx(101.65)
    with pytest.raises(UsageError, match="MI estimator 'mutual' is not one of mi_he, mi"):
        tradeoff_points(load_matrix(results), mi_metric="mutual")


def test_the_figure_plots_every_point_with_its_error_bars_one_series_per_method(results, tmp_path):
    path = tmp_path / "tradeoff.png"
    drawn = tradeoff_figure(load_matrix(results), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # panels: MI and AU against -ELBO and IW-NLL (every cell computed IW-NLL)
    assert {(d["x"], d["y"]) for d in drawn} == {(x, y) for x in ("neg_elbo", "iw_nll") for y in ("mi_he", "au")}
    for x, y in {(d["x"], d["y"]) for d in drawn}:
        mine = [d for d in drawn if (d["x"], d["y"]) == (x, y)]
        assert sum(len(d["points"]) for d in mine) == 10
        assert {(d["series"], d["chosen"], len(d["points"])) for d in mine} == {
            ("β-VAE", True, 2),
            ("NC-VAE", True, 2),
            ("NC-VAE", False, 6),
        }
    vae = next(d for d in drawn if (d["x"], d["y"], d["series"]) == ("neg_elbo", "mi_he", "β-VAE"))
    assert [c for point in vae["points"] for c in point] == pytest.approx([100.7, 2.05, 101.2, 1.05])
    assert vae["yerr"] == pytest.approx([statistics.stdev([2.0, 2.1]), statistics.stdev([1.0, 1.1])])
    assert vae["xerr"] == pytest.approx([statistics.stdev([100.5, 100.9]), statistics.stdev([101.0, 101.4])])
    hollow = next(d for d in drawn if (d["x"], d["y"], d["chosen"]) == ("neg_elbo", "mi_he", False))
    assert hollow["yerr"] == [0.0] * 6, "one seed: no spread"


def test_the_mi_estimator_is_selectable_and_iw_nll_panels_appear_only_where_computed(tmp_path):
    def without_iw(axes: dict) -> dict | None:
        found = metrics(axes)
        return None if found is None else {k: v for k, v in found.items() if k != "iw_nll"}

    results = write_results(tmp_path, SUITE, without_iw)
    drawn = tradeoff_figure(load_matrix(results), tmp_path / "mi.png", mi_metric="mi")
    assert {(d["x"], d["y"]) for d in drawn} == {("neg_elbo", "mi"), ("neg_elbo", "au")}
    nc = next(d for d in drawn if (d["y"], d["series"], d["chosen"]) == ("mi", "NC-VAE", False))
    assert sorted(y for _, y in nc["points"]) == pytest.approx([0.1, 0.1, 0.3, 0.3, 1.0, 1.0]), "mi, not mi_he"


def test_each_data_set_has_a_row_of_panels(tmp_path):
    results = write_results(tmp_path, TWO_DATA, metrics)
    drawn = tradeoff_figure(load_matrix(results), tmp_path / "two.png")
    assert {d["panel"] for d in drawn} == {"A", "B"}
    for panel in ("A", "B"):
        mine = [d for d in drawn if d["panel"] == panel and (d["x"], d["y"]) == ("neg_elbo", "mi_he")]
        assert sum(len(d["points"]) for d in mine) == 10


def test_the_report_renders_and_references_the_figure_and_its_options_are_checked(results, tmp_path, capsys):
    written = write_report(results, tmp_path / "report")
    assert tmp_path / "report" / "tradeoff.png" in written
    text = (tmp_path / "report" / "report.md").read_text()
    assert "![MI (He et al.) and AU against -ELBO](tradeoff.png)" in text
    assert (
        "Trade-off: MI (He et al.) and AU against -ELBO (and IW-NLL where computed), one point per cell but the "
        "seed (10 points)" in text
    )
    assert main([str(results), "--out", str(tmp_path / "mi"), "--tradeoff-mi", "mi"]) == 0
    assert "Trade-off: MI and AU against -ELBO" in (tmp_path / "mi" / "report.md").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit) as raised:
        main([str(results), "--tradeoff-mi", "mutual"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tradeoff-mi: invalid choice: 'mutual'" in err and len(err.strip().splitlines()) == 1
    assert main([str(results), "--out", str(tmp_path / "bad"), "--tradeoff-prior", "-3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.report: error: test prior '-3'") and len(err.strip().splitlines()) == 1
