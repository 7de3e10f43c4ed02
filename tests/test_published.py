"""Published figures beside the measured rows (a suite's ``[suite] published = "NAME"``): the data file read and
checked, each published row placed after its measured method with its figures under the right columns, the time per
training step relative to the reference row, the orderings and their Spearman rank correlation, and the trade-off
figure drawing every method of such a suite. The result files are written by hand (``cell_record``) from a small
suite expanded as the runner expands it; the published figures are the shipped ``collapse.toml``'s.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.test_benchmarks import TINY_BASE
from vaezoo.base.errors import UsageError
from vaezoo_bench.aggregate import load_matrix
from vaezoo_bench.comparison import average_ranks, ranking, spearman
from vaezoo_bench.matrix.document import matrix_document
from vaezoo_bench.matrix.expansion import expand
from vaezoo_bench.matrix.model import choose_profile
from vaezoo_bench.matrix.reading import load_suite
from vaezoo_bench.plots import tradeoff_figure
from vaezoo_bench.published import PUBLISHED_DIR, load_published, published_names
from vaezoo_bench.report import main, write_report
from vaezoo_bench.results import CELL_NAME, MATRIX_NAME, cell_dir, cell_record, write_json

SUITE = """
[suite]
name = "remedies-fake"
test_priors = ["standard"]
rows = ["method"]
column_axis = "data"
columns = ["neg_elbo", "iw_nll", "kl", "mi_he", "au", "ppl_elbo"]
headers = { method = "Method", data = "Corpus" }
reference = { method = "vae" }
tradeoff = { mi = "mi_he", prior = "standard" }
published = "collapse"

[select]
axes = ["transform.gamma"]
where = { method = "bnvae" }
rule = "min"
metric = "neg_elbo"
split = "valid"
"""
SUITE += TINY_BASE
SUITE += """
[axes]
method = [
    { label = "VAE", id = "vae", regularizer = { name = "betavae" } },
    { label = "β-VAE (β = 0.2)", id = "beta0.2", regularizer = { name = "betavae", beta = 0.2 } },
    { label = "Aggressive", id = "aggressive", regularizer = { name = "betavae" } },
    { label = "BN-VAE", id = "bnvae", regularizer = { name = "betavae" }, transform = { name = "bnvae" } },
    { label = "NC-VAE CD", id = "ncvae-cd", regularizer = { name = "ncvae" }, test_priors = ["optimal"] },
]
data = [{ label = "Yahoo", id = "yahoo", data = { dim = 10 } }, { label = "PTB", id = "ptb", data = { dim = 12 } }]
"transform.gamma" = [0.5, 0.7]
"train.seed" = [0, 1]
"""

#: Measured test MI (He et al.) per method, ordered vae < aggressive < bnvae < beta0.2 (ncvae-cd has no published row).
MI_HE = {"VAE": 0.1, "β-VAE (β = 0.2)": 2.0, "Aggressive": 1.0, "BN-VAE": 1.5, "NC-VAE CD": 0.8}
#: Milliseconds per training step of seed 0; seed 1 takes 20 % longer.
STEP_MS = {"VAE": 10.0, "β-VAE (β = 0.2)": 11.0, "Aggressive": 45.0, "BN-VAE": 12.0, "NC-VAE CD": 16.0}


def figures_of(axes: dict[str, Any]) -> dict[str, float] | None:
    """A cell's test figures: BN-VAE's γ = 0.5 has the lower validation -ELBO, so γ = 0.7 never runs on seed 1."""
    method, seed, data = axes["method"], axes["train.seed"], axes["data"]
    if method == "BN-VAE" and axes["transform.gamma"] == 0.7 and seed == 1:
        return None
    shift = 0.2 * seed + (1.0 if data == "PTB" else 0.0) + (0.5 if axes.get("transform.gamma") == 0.7 else 0.0)
    order = list(MI_HE).index(method)
    return {
        "neg_elbo": 330.0 + order + shift,
        "iw_nll": 328.0 + order + shift,
        "kl": 1.0 + order,
        "mi_he": MI_HE[method] + 0.1 * seed,
        "mi": MI_HE[method],
        "au": float(order + seed),
        "ppl_elbo": 120.0 + order,
        "ppl_iw": 115.0 + order,
    }


def write_fake_results(tmp_path: Path, text: str = SUITE, figures: Any = None, step_ms: Any = None) -> Path:
    """A results directory of the suite ``text`` with a finished cell.json for every cell that ``figures`` (by
    default :func:`figures_of`) gives test figures for, its training taking ``step_ms[method]`` ms a step on seed 0
    and 20 % longer on seed 1."""
    figures, step_ms = figures or figures_of, step_ms or STEP_MS
    suite_path = tmp_path / "suite.toml"
    suite_path.write_text(text)
    suite = load_suite(suite_path)
    cells = expand(suite, choose_profile(suite, None))
    out = tmp_path / "results"
    write_json(out / MATRIX_NAME, matrix_document(suite, None, cells))
    for cell in cells:
        found = figures(cell.axes)
        if found is None:
            continue
        steps = 100 + 10 * cell.axes["train.seed"]
        seconds = step_ms[cell.axes["method"]] / 1000 * (1.2 if cell.axes["train.seed"] else 1.0) * steps
        train = {"steps": steps, "seed": 0, "wall_time_s": seconds, "test_prior": cell.test_priors[0]}
        record = cell_record(
            cell.id,
            cell.axes,
            "ok",
            attempts=1,
            train={**train, "metrics": found, "tested_step": steps},
            test_priors={p: found for p in cell.test_priors},
            valid={"step": steps, "test_prior": cell.test_priors[0], "metrics": found},
            latent_dim=32,
            examples={"valid": 100, "test": 100},
        )
        write_json(cell_dir(out, cell.id) / CELL_NAME, record)
    return out


@pytest.fixture
def report(tmp_path: Path) -> tuple[Path, str]:
    results = write_fake_results(tmp_path)
    write_report(results, tmp_path / "report", plots=False)
    return results, (tmp_path / "report" / "report.md").read_text()


def section(text: str, data: str) -> list[str]:
    """The lines of the published section's part on ``data``."""
    lines = text.split("## Published figures", 1)[1].splitlines()
    start = lines.index(f"### {data}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("### ")), len(lines))
    return lines[start:end]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_of(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    rows = [cells(line) for line in lines if line.startswith("| ")]
    return rows[0], rows[1:]


def test_each_published_row_follows_its_measured_method_with_its_figures_under_the_right_columns(report):
    _, text = report
    header, rows = table_of(section(text, "Yahoo")[:30])
    assert header[:4] == ["Method", "Source", "Setting", "time/step"]
    # the suite's columns, then PPL (IW) is not added: no published Yahoo row has a PPL
    assert header[4:] == ["-ELBO", "IW-NLL", "KL", "MI (He et al.)", "AU", "PPL"]
    ordering_start = next(i for i, row in enumerate(rows) if row[0] == "ranked by")
    rows = rows[:ordering_start]
    published = load_published("collapse")
    expected_order = []
    for method_id, label in (
        ("vae", "VAE"),
        ("beta0.2", "β-VAE (β = 0.2)"),
        ("aggressive", "Aggressive"),
        ("bnvae", "BN-VAE"),
        ("ncvae-cd", "NC-VAE CD"),
    ):
        expected_order.append((label, "measured"))
        expected_order += [("", r.source) for r in published.of(method_id, "yahoo")]
    assert [(r[0], r[1]) for r in rows] == expected_order
    # He et al.'s Aggressive rows: every figure with its sd, MI under MI (He et al.)
    aggressive = [r for r in rows if r[2] == "Ours, standard VAE objective"]
    figures = ["329.80 ± 0.20", "328.20 ± 0.20", "5.60 ± 0.20", "3.00 ± 0.00", "8.0 ± 0.0", ""]
    assert aggressive == [["", "he2019", "Ours, standard VAE objective", "", *figures]]
    # BN-VAE's runs print no sd and no -ELBO
    bn = next(r for r in rows if r[2] == "BN-VAE (0.7) *")
    assert bn[4:] == ["", "327.40", "8.80", "7.40", "32.0", ""]
    # the measured BN-VAE row names the chosen γ (0.5: the lower validation -ELBO)
    measured_bn = next(r for r in rows if r[0] == "BN-VAE")
    assert measured_bn[2] == "test prior 1; transform.gamma = 0.5 (chosen)"
    assert measured_bn[7] == f"{statistics.mean([1.5, 1.6]):.2f} ± {statistics.stdev([1.5, 1.6]):.2f}"
    assert next(r for r in rows if r[0] == "NC-VAE CD")[2] == "test prior f(K,β,δ)"


def test_published_ppl_goes_under_the_column_of_its_bound_and_the_notes_say_where(report):
    _, text = report
    header, rows = table_of(section(text, "PTB"))
    # Optimus's PPL comes from the IW bound: a PPL (IW) column is added after the suite's columns
    assert header[-2:] == ["PPL", "PPL (IW)"]
    optimus = next(r for r in rows if r[1] == "li2020optimus")
    assert (optimus[2], optimus[-2], optimus[-1]) == ("Aggressive", "", "99.83")
    assert optimus[header.index("MI (He et al.)")] == "0.83" and optimus[header.index("-ELBO")] == "101.19"
    # the measured rows fill the added column from their records (the suite's columns lack it)
    measured = next(r for r in rows if r[0] == "Aggressive")
    assert measured[-1] == f"{115.0 + 2:.2f} ± 0.00"
    # a published AU is a mean over runs, printed with its decimal
    assert optimus[header.index("AU")] == "4.0"
    assert "- Published MI is under MI (He et al.): the papers' MI is He et al.'s estimate, vaezoo's `mi_he`" in text
    assert "Published PPL (per word) is under the column of the bound it comes from: under PPL (IW)" in text
    assert "for li2020optimus" in text


def test_time_per_step_is_each_methods_mean_over_seeds_relative_to_the_reference_row(report):
    results, text = report
    matrix = load_matrix(results)

    def per_step(method: str, data: str) -> float:
        found = [
            r["train"]["wall_time_s"] / r["train"]["steps"]
            for r in matrix.records.values()
            if r is not None
            and r["axes"]["method"] == method
            and r["axes"]["data"] == data
            and r["axes"].get("transform.gamma", 0.5) == 0.5
        ]
        assert len(found) == 2
        return statistics.mean(found)

    for data in ("Yahoo", "PTB"):
        _, rows = table_of(section(text, data))
        for row in (r for r in rows if r[1] == "measured"):
            ratio = per_step(row[0], data) / per_step("VAE", data)
            assert row[3] == f"{ratio:.2f} ({1000 * per_step(row[0], data):.1f} ms)"
    assert "train.wall_time_s / train.steps), relative to the VAE row of the same data set" in text
    assert "it includes the validation evaluations" in text


def test_the_ordering_block_ranks_measured_and_published_and_gives_spearman(report):
    _, text = report
    _, rows = table_of(section(text, "Yahoo"))
    ordering = {r[0]: r for r in rows[next(i for i, r in enumerate(rows) if r[0] == "ranked by") :]}
    mi = ordering["MI (He et al.), largest first"]
    assert mi[1] == "β-VAE (β = 0.2) > BN-VAE > Aggressive > NC-VAE CD > VAE"
    assert mi[2] == "β-VAE (β = 0.2) > BN-VAE > Aggressive > VAE"
    # published MI: β = 0.2 and BN-VAE (0.5, the first row) both 3.3, Aggressive 3.0, VAE 0.0
    assert mi[3] == "β-VAE (β = 0.2) = BN-VAE > Aggressive > VAE"
    # ranks (VAE, β0.2, Aggressive, BN-VAE): measured 1, 4, 2, 3; published 1, 3.5, 2, 3.5:
    # deviations from 2.5: (-1.5, 1.5, -0.5, 0.5) and (-1.5, 1, -0.5, 1); ρ = 4.5 / √(5 · 4.5) = 3 / √10
    assert mi[4] == f"{3 / math.sqrt(10):.2f} (4)"
    # every published Yahoo row has an IW-NLL, so the likelihood ordering is by IW-NLL
    assert "IW-NLL, smallest first" in ordering
    # PTB: of these methods only Aggressive has published figures
    ptb = "\n".join(section(text, "PTB"))
    assert "Ordering: only 1 of the measured methods has published figures on this data set, fewer than 3" in ptb


def test_spearman_with_ties_is_the_correlation_of_average_ranks():
    assert average_ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = rank differences (0, 0, 1, -1): 1 - 6 Σd² / (n (n² - 1)) = 1 - 12 / 60 without ties
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [5, 5, 5]) is None, "no variation in one ordering: undefined"
    assert ranking({"a": 1.0, "b": 3.0, "c": 1.0}, largest=True) == "b > a = c"
    assert ranking({"a": 1.0, "b": 3.0, "c": 2.0}, largest=False) == "a > c > b"


def damaged(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "collapse.toml"
    text = (PUBLISHED_DIR / "collapse.toml").read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "iw_nll = 332.2",
            'iw_nll = "332.2"',
            r"\[\[figure\]\] 3 \(method 'beta0.2', data 'yahoo'\): iw_nll must be a finite number, got '332.2'",
        ),
        ("iw_nll = 332.2", "iw_nll = nan", r"\[\[figure\]\] 3 .*iw_nll must be a finite number, got nan"),
        ('method = "beta0.2"', "method = 2", r"\[\[figure\]\] 3: method must be a non-empty text, got 2"),
        (
            'source = "he2019"',
            'source = "he2020"',
            r"\[\[figure\]\] 1 .*source 'he2020' is not in \[sources\]: he2019, zhu2020",
        ),
        ("au = 20.4", "aus = 20.4", r"\[\[figure\]\] 3 has unknown key 'aus'; valid keys: method, data"),
        ("sd = { iw_nll = 0.6,", "sd = { ppl = 0.6,", r"\[\[figure\]\] 3 .*sd 'ppl' is not a figure of the row"),
        ('ppl_bound = "iw"\n', "", r"ppl_bound must be one of iw, elbo with ppl and absent without"),
        ("[sources]", "[source]", r"unknown entry 'source'; valid entries: \[sources\], \[\[figure\]\]"),
        ('[[figure]]\nmethod = "vae"', '[[figure]\nmethod = "vae"', r"malformed TOML"),
    ],
)
def test_a_damaged_published_file_is_refused_in_one_line_naming_the_file_and_the_entry(tmp_path, old, new, message):
    path = damaged(tmp_path, old, new)
    with pytest.raises(UsageError) as raised:
        load_published("collapse", path)
    text = str(raised.value)
    assert text.startswith(f"published figures {str(path)!r}: ") and len(text.splitlines()) == 1
    assert re.search(message, text), text


def test_the_shipped_file_reads_and_an_unknown_name_or_an_unfit_suite_is_refused(tmp_path):
    assert "collapse" in published_names()
    assert {r.data for r in load_published("collapse").rows} == {"yahoo", "ptb", "omniglot"}
    assert load_suite(Path("benchmarks/suites/remedies-text.toml")).table.published == "collapse"
    for text, message in (
        (
            SUITE.replace('published = "collapse"', 'published = "colapse"'),
            "[suite] published 'colapse' is not a file of published figures (benchmarks/published/NAME.toml); "
            "choose one of: collapse",
        ),
        (
            SUITE.replace('published = "collapse"', "published = 3"),
            "[suite] published must name a file of published figures, got 3",
        ),
        (
            SUITE.replace('rows = ["method"]\ncolumn_axis = "data"', 'rows = ["method", "data"]'),
            '[suite] published needs rows = ["method"] and a column_axis (the data set): its figures are keyed by both',
        ),
    ):
        path = tmp_path / "suite.toml"
        path.write_text(text)
        with pytest.raises(UsageError) as raised:
            load_suite(path)
        assert str(raised.value) == f"suite {str(path)!r}: {message}"


# Twelve methods, as many as remedies-text has: eleven under the standard test prior, NC-VAE under its own.
MANY = {f"M{i}": 0.3 * i for i in range(11)} | {"NC-VAE CD": 1.0}
MANY_METHODS = [f'{{ label = "M{i}", id = "m{i}", regularizer = {{ name = "betavae" }} }},' for i in range(11)]
MANY_SUITE = SUITE[: SUITE.index("method = [")] + "method = [\n" + "\n".join(MANY_METHODS) + "\n"
MANY_SUITE += SUITE[SUITE.index('    { label = "NC-VAE CD"') :]
MANY_SUITE = MANY_SUITE.replace('reference = { method = "vae" }', 'reference = { method = "m0" }')
MANY_SUITE = MANY_SUITE.replace('where = { method = "bnvae" }', 'where = { method = "m3" }')


def many_figures(axes: dict[str, Any]) -> dict[str, float] | None:
    """Test figures of the twelve methods: MI (He et al.) and -ELBO by method, and their seeds differ."""
    if axes.get("transform.gamma") == 0.7 and axes["train.seed"] == 1:
        return None
    mi, seed = MANY[axes["method"]], axes["train.seed"]
    prior_shift = -5.0 if axes["method"] == "NC-VAE CD" else 0.0
    return {"mi_he": mi + 0.1 * seed, "au": float(seed), "neg_elbo": 330.0 + mi + seed + prior_shift}


def test_the_tradeoff_figure_draws_every_method_with_its_own_test_prior_one_marker_each(tmp_path):
    results = write_fake_results(tmp_path, MANY_SUITE, many_figures, dict.fromkeys(MANY, 10.0))
    drawn = tradeoff_figure(load_matrix(results), tmp_path / "tradeoff.png", "mi_he", "standard")
    panel = [d for d in drawn if (d["panel"], d["x"], d["y"]) == ("Yahoo", "neg_elbo", "mi_he") and d["chosen"]]
    assert sorted(d["series"] for d in panel) == sorted(MANY)
    for d in panel:
        mi, shift = MANY[d["series"]], -5.0 if d["series"] == "NC-VAE CD" else 0.0
        assert d["points"] == [pytest.approx((330.5 + mi + shift, mi + 0.05))], "means over the two seeds"
        assert d["yerr"] == pytest.approx([statistics.stdev([mi, mi + 0.1])])
        assert d["xerr"] == pytest.approx([statistics.stdev([0.0, 1.0])])
        assert d["priors"] == (("optimal",) if d["series"] == "NC-VAE CD" else ("standard",))
    assert len({d["marker"] for d in panel}) == 12, "a marker of its own for each method"
    assert len({(d["colour"], d["marker"]) for d in panel}) == 12
    write_report(results, tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert (
        "-ELBO and IW-NLL under the test prior 1, but NC-VAE CD under f(K,β,δ): the cells' first test prior, the only "
        "one they were evaluated under." in text
    )


def test_the_report_refuses_a_matrix_naming_a_file_of_published_figures_that_is_not_shipped(report, tmp_path, capsys):
    results, _ = report
    document = json.loads((results / MATRIX_NAME).read_text())
    document["table"]["published"] = "gone"
    write_json(results / MATRIX_NAME, document)
    assert main([str(results), "--out", str(tmp_path / "again"), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "python -m benchmarks.report: error: published 'gone' is not a file of published figures "
        "(benchmarks/published/NAME.toml); choose one of: collapse"
    )
