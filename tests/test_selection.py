"""Selection in the benchmark runner (a suite's ``[select]``): the rule applied to result files, its TOML checks, the
expansion into a sweep (phase 1) and the chosen value on the other seeds (phase 2), the report's chosen values,
Selection section and appendix, the "(n.d.)" mark of MI differences within an estimator's noise, and a real
two-phase run resumed after an interruption (slow).

The result files of the fast tests are written by hand with ``vaezoo_bench.results.cell_record``, from a suite in
``tmp_path`` expanded as the runner expands it (``write_results``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.test_benchmarks import TINY_BASE
from vaezoo.base.errors import UsageError
from vaezoo_bench.aggregate import CHOSEN, NO_CHOICE, WAITING, choose, load_matrix
from vaezoo_bench.matrix.document import matrix_document
from vaezoo_bench.matrix.expansion import effective_axes, expand, parse_selection, select
from vaezoo_bench.matrix.model import choose_profile
from vaezoo_bench.matrix.reading import load_suite
from vaezoo_bench.report import write_report
from vaezoo_bench.results import CELL_NAME, MATRIX_NAME, cell_dir, cell_record, write_json

SUITE = """
[suite]
name = "selection"
test_priors = ["standard", "optimal"]
rows = ["regularizer.beta", "method"]
columns = ["mi_he", "mi", "neg_elbo", "iw_nll"]
headers = { method = "Method" }
reference = { method = "vae" }
tradeoff = {}

[select]
axes = ["regularizer.delta"]
where = { method = "ncvae" }
rule = "max"
metric = "mi_he"
split = "valid"
within = { metric = "neg_elbo", nats = 2.0, of = { method = "vae" } }

"""
SUITE += TINY_BASE
SUITE += """
[profile.short]
axes = { "regularizer.delta" = [0.3, 3.0], "train.seed" = [0] }

[axes]
"regularizer.beta" = [0.5, 1.0]
method = [
    { label = "β-VAE", id = "vae", regularizer = { name = "betavae" }, test_priors = ["standard"] },
    { label = "NC-VAE", id = "ncvae", regularizer = { name = "ncvae", K = 5.0 }, noise = { name = "dataset" } },
]
"regularizer.delta" = [0.1, 0.3, 1.0, 3.0]
"train.seed" = [0, 1]
"""

Metrics = Callable[[dict[str, Any]], dict[str, float] | None]


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def write_results(
    tmp_path: Path,
    text: str,
    metrics: Metrics,
    profile: str | None = None,
    status: Callable | None = None,
    shift: dict[str, float] | None = None,
) -> Path:
    """A results directory of the suite ``text`` as the runner leaves it: matrix.json, and a cell.json for every
    cell that ``metrics(cell axes)`` gives metrics for (the same figures as validation and test metrics, under
    every test prior, but -ELBO and IW-NLL moved by ``shift[prior]``); ``status(axes)`` may make a cell ``failed``
    or ``skipped``."""
    suite = load_suite(write(tmp_path, text))
    chosen = choose_profile(suite, profile)
    cells = expand(suite, chosen)
    out = tmp_path / "results"
    write_json(out / MATRIX_NAME, matrix_document(suite, chosen, cells))
    for cell in cells:
        found = metrics(cell.axes)
        if found is None:
            continue
        state = status(cell.axes) if status else "ok"
        ok = state == "ok"
        record = cell_record(
            cell.id,
            cell.axes,
            state,
            attempts=1,
            error=None if ok or state == "skipped" else "vaezoo: error: loss became nan",
            reason="a reason" if state == "skipped" else None,
            stage=None if ok or state == "skipped" else "train",
            test_priors={p: moved(found, (shift or {}).get(p, 0.0)) for p in cell.test_priors} if ok else {},
            valid={"step": 20, "test_prior": "trained", "metrics": found} if ok else None,
            latent_dim=32 if ok else None,
            examples={"valid": 1000, "test": 1000} if ok else None,
        )
        write_json(cell_dir(out, cell.id) / CELL_NAME, record)
    return out


def moved(metrics: dict[str, float], shift: float) -> dict[str, float]:
    """``metrics`` with -ELBO and IW-NLL (the metrics a test prior changes) moved by ``shift``."""
    return {k: v + shift if k in ("neg_elbo", "iw_nll") else v for k, v in metrics.items()}


def figures(mi_he: float, neg_elbo: float, **more: float) -> dict[str, float]:
    return {"mi_he": mi_he, "mi": more.pop("mi", mi_he), "neg_elbo": neg_elbo, "iw_nll": neg_elbo - 1, **more}


# -- the rule on result files ------------------------------------------------------------------------------------


def group_and_rule(values: list[float], rule: str = "max", within: dict | None = None) -> tuple[dict, dict]:
    candidates = [{"values": {"regularizer.delta": v}, "sweep": [f"d{v}"], "phase2": [f"d{v}-s1"]} for v in values]
    group = {"id": "g", "select": 0, "axes": {}, "candidates": candidates, "reference": ["ref"] if within else []}
    return group, {"axes": ["regularizer.delta"], "rule": rule, "metric": "mi_he", "within": within}


def ok(mi_he: float, neg_elbo: float = 100.0, seed: int = 0) -> dict:
    metrics = {"mi_he": mi_he, "neg_elbo": neg_elbo}
    return {"status": "ok", "valid": {"step": 10, "metrics": metrics}, "seed": seed}


def test_the_max_rule_picks_the_largest_validation_metric_and_a_tie_goes_to_the_value_listed_first():
    group, rule = group_and_rule([0.1, 0.3, 1.0, 3.0])
    records = {"d0.1": ok(0.2), "d0.3": ok(0.9), "d1.0": ok(0.9), "d3.0": ok(0.5)}
    choice = choose(group, rule, records)
    assert choice.state == CHOSEN and choice.values == {"regularizer.delta": 0.3}
    assert choice.phase2_cells() == ("d0.3-s1",) and choice.table_cells() == ("d0.3", "d0.3-s1")
    assert [c.score for c in choice.candidates] == [0.2, 0.9, 0.9, 0.5]
    # the same records in another order of the dictionary: the same choice
    assert choose(group, rule, dict(reversed(records.items()))).values == {"regularizer.delta": 0.3}
    # listed the other way round, the tie goes to 1.0
    group["candidates"].reverse()
    assert choose(group, rule, records).values == {"regularizer.delta": 1.0}


def test_the_min_rule_picks_the_smallest():
    group, rule = group_and_rule([0.1, 0.3], rule="min")
    assert choose(group, rule, {"d0.1": ok(0.2), "d0.3": ok(0.1)}).values == {"regularizer.delta": 0.3}


def test_the_constrained_rule_picks_the_best_value_within_the_limit_of_the_reference():
    within = {"metric": "neg_elbo", "nats": 2.0, "of": {"method": "β-VAE"}}
    group, rule = group_and_rule([0.1, 0.3, 1.0], within=within)
    records = {"ref": ok(0.0, 100.0), "d0.1": ok(0.5, 101.0), "d0.3": ok(0.8, 102.0), "d1.0": ok(2.0, 102.5)}
    choice = choose(group, rule, records)
    assert choice.state == CHOSEN and choice.values == {"regularizer.delta": 0.3}, "2.0 nats above is still within"
    assert choice.reference == 100.0
    assert [c.eligible for c in choice.candidates] == [True, True, False]
    assert [c.excess for c in choice.candidates] == [1.0, 2.0, 2.5]


def test_a_constraint_nobody_meets_is_no_choice_with_the_closest_value_named(tmp_path):
    within = {"metric": "neg_elbo", "nats": 2.0, "of": {"method": "β-VAE"}}
    group, rule = group_and_rule([0.1, 0.3], within=within)
    choice = choose(group, rule, {"ref": ok(0.0, 100.0), "d0.1": ok(0.5, 103.5), "d0.3": ok(0.8, 105.0)})
    assert choice.state == NO_CHOICE and choice.problem == "constraint" and choice.values is None
    assert choice.table_cells() == () and choice.phase2_cells() == ()

    # In a results directory: the row reads "no choice", the Selection section says why, nothing crashes.
    def metrics(axes: dict) -> dict:
        if axes["method"] == "β-VAE":
            return figures(0.0, 100.0)
        return figures(1.0, 100.0 + 3.0 * axes["regularizer.delta"] + 2.5)

    results = write_results(tmp_path, SUITE, metrics, profile="short")
    write_report(results, tmp_path / "report", plots=False)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "|  | NC-VAE | 1 | none | no choice | no choice | no choice | no choice |" in text
    assert "- no choice: no swept value of the row qualified under the selection rule" in text
    line = next(line for line in text.splitlines() if line.startswith("- β=0.5, NC-VAE (no choice)"))
    assert "no value has a valid -ELBO at most 2 nats above β-VAE's (100.00); the closest, δ=0.3, is 3.40 above" in line
    assert "Selection groups: 2, 0 chosen, 0 waiting for their sweep, 2 without a choice." in text


def test_the_rule_waits_for_every_sweep_and_reference_cell_and_leaves_failed_values_out():
    within = {"metric": "neg_elbo", "nats": 2.0, "of": {"method": "β-VAE"}}
    group, rule = group_and_rule([0.1, 0.3, 1.0], within=within)
    records = {"ref": ok(0.0, 100.0), "d0.1": ok(0.5, 101.0), "d0.3": None, "d1.0": ok(0.1, 100.0)}
    waiting = choose(group, rule, records)
    assert waiting.state == WAITING and waiting.waiting_for == ("d0.3",)
    records["d0.3"] = {"status": "failed", "valid": None}
    choice = choose(group, rule, records)
    assert choice.state == CHOSEN and choice.values == {"regularizer.delta": 0.1}
    assert [c.status for c in choice.candidates] == ["ok", "failed", "ok"]
    records.update({"d0.1": {"status": "skipped"}, "d1.0": {"status": "failed"}})
    nothing = choose(group, rule, records)
    assert nothing.state == NO_CHOICE and nothing.problem == "unfinished"
    records["ref"] = {"status": "failed"}
    assert choose(group, rule, records).problem == "reference"


def test_a_sweep_on_several_seeds_is_scored_by_its_mean():
    group, rule = group_and_rule([0.1, 0.3])
    group["candidates"][0]["sweep"] = ["a0", "a1"]
    group["candidates"][1]["sweep"] = ["b0", "b1"]
    records = {"a0": ok(1.0), "a1": ok(0.0), "b0": ok(0.6), "b1": ok(0.6)}
    choice = choose(group, rule, records)
    assert [c.score for c in choice.candidates] == [0.5, 0.6] and choice.values == {"regularizer.delta": 0.3}


# -- the suite file ----------------------------------------------------------------------------------------------


def test_tuned_axes_vary_only_where_the_selection_applies_in_two_phases(tmp_path):
    suite = load_suite(write(tmp_path, SUITE))
    cells = {c.id: c for c in expand(suite, None)}
    # β-VAE: 2 β x 2 seeds, no δ; NC-VAE: 2 β x 4 δ x 2 seeds, of which seed 0 is the sweep
    assert len(cells) == 4 + 16
    vae = cells["beta=0.5_method=vae_seed=1"]
    assert "regularizer.delta" not in vae.axes and "delta" not in vae.raw["regularizer"] and vae.phase is None
    nc = cells["beta=0.5_method=ncvae_delta=0.3_seed=0"]
    assert nc.raw["regularizer"] == {"name": "ncvae", "K": 5.0, "beta": 0.5, "delta": 0.3}
    assert (nc.group, nc.phase) == ("beta=0.5_method=ncvae", 1)
    assert cells["beta=0.5_method=ncvae_delta=0.3_seed=1"].phase == 2
    document = matrix_document(suite, None, list(cells.values()))
    (rule,) = document["selection"]["rules"]
    assert rule["where"] == {"method": ["ncvae"]} and rule["within"]["of"] == {"method": "β-VAE"}
    first = document["selection"]["groups"][0]
    assert first["id"] == "beta=0.5_method=ncvae" and first["axes"] == {"regularizer.beta": 0.5, "method": "NC-VAE"}
    assert [c["values"] for c in first["candidates"]] == [{"regularizer.delta": v} for v in (0.1, 0.3, 1.0, 3.0)]
    assert first["candidates"][1] == {
        "values": {"regularizer.delta": 0.3},
        "sweep": ["beta=0.5_method=ncvae_delta=0.3_seed=0"],
        "phase2": ["beta=0.5_method=ncvae_delta=0.3_seed=1"],
    }
    assert first["reference"] == ["beta=0.5_method=vae_seed=0"]
    assert document["table"]["reference"] == {"method": "β-VAE"} and document["table"]["tradeoff"] == {
        "mi": "mi_he",
        "prior": "optimal",
    }


def test_exclude_leaves_cells_out_and_only_restricts_a_tuned_axis(tmp_path):
    text = SUITE.replace("tradeoff = {}", 'tradeoff = {}\nexclude = [{ "regularizer.beta" = 0.5, method = "ncvae" }]')
    suite = load_suite(write(tmp_path, text))
    cells = expand(suite, None)
    assert not [c for c in cells if c.axes["regularizer.beta"] == 0.5 and c.axes["method"] == "NC-VAE"]
    assert len(cells) == 4 + 8
    allowed = parse_selection(["delta=0.3"], effective_axes(suite, None))
    assert [c.id for c in select(cells, allowed)] == [
        "beta=1.0_method=ncvae_delta=0.3_seed=0",
        "beta=1.0_method=ncvae_delta=0.3_seed=1",
    ], "a restriction of a tuned axis keeps only cells that have it"


SELECT_BLOCK = """[select]
axes = ["regularizer.delta"]
where = { method = "ncvae" }
rule = "max"
metric = "mi_he"
split = "valid"
within = { metric = "neg_elbo", nats = 2.0, of = { method = "vae" } }"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('rule = "max"', 'rule = "median"', "[select] rule 'median' is not one of max, min"),
        ('metric = "mi_he"', "metric = 3", "[select] metric must name a validation metric (vaezoo list metric), got 3"),
        ('split = "valid"', 'split = "test"', "[select] split 'test': a value is chosen on the validation split only"),
        ('rule = "max"', 'rule = "max"\ncolour = 1', "[select] has unknown key 'colour'; valid keys: axes, where"),
        ('axes = ["regularizer.delta"]', 'axes = ["regularizer.gamma"]', "unknown axis 'regularizer.gamma'; axes:"),
        ('axes = ["regularizer.delta"]', "axes = []", "[select] axes must name at least one axis to tune"),
        (
            'axes = ["regularizer.delta"]',
            'axes = ["train.seed"]',
            "cannot tune 'train.seed': it is the suite's seed_axis",
        ),
        ('where = { method = "ncvae" }', 'where = { method = "aae" }', "axis 'method' has no value 'aae'; values: vae"),
        ('where = { method = "ncvae" }', 'where = { "regularizer.delta" = 0.1 }', "it may name neither a tuned axis"),
        ('rule = "max"', "sweep_seeds = 0", "sweep_seeds must be a whole number of seeds, at least 1, got 0"),
        ('metric = "neg_elbo", nats', 'metric = "mi", nats', "within metric 'mi' is not one a constraint bounds"),
        ("nats = 2.0", "nats = nan", "within nats must be a number of nats, at least 0, got nan"),
        ("nats = 2.0", "nats = -1", "within nats must be a number of nats, at least 0, got -1"),
        (', of = { method = "vae" }', "", "[select] within has no 'of'; it needs metric, nats, of"),
        ('of = { method = "vae" }', 'of = { method = ["vae", "ncvae"] }', "axis 'method' must have one value"),
        ('reference = { method = "vae" }', 'reference = { method = "x" }', "[suite] reference: axis 'method' has no"),
        ("tradeoff = {}", 'tradeoff = { mi = "mutual" }', "tradeoff mi 'mutual' is not an MI estimator; choose from"),
        ("tradeoff = {}", 'tradeoff = { prior = "-1" }', "test prior '-1'"),
        ("tradeoff = {}", 'exclude = { method = "vae" }', "[suite] exclude must be a list of tables"),
        (
            'rows = ["regularizer.beta", "method"]',
            'rows = ["regularizer.beta", "method", "regularizer.delta"]',
            "tuned",
        ),
    ],
)
def test_selection_mistakes_are_usage_errors_naming_the_value_and_the_choices(tmp_path, old, new, message):
    assert old in SUITE
    with pytest.raises(UsageError) as raised:
        load_suite(write(tmp_path, SUITE.replace(old, new)))
    assert message in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_a_reference_outside_the_matrix_or_tuned_and_overlapping_selections_are_refused(tmp_path):
    excluded = SUITE.replace("tradeoff = {}", 'tradeoff = {}\nexclude = [{ method = "vae", "regularizer.beta" = 1.0 }]')
    suite = load_suite(write(tmp_path, excluded))
    with pytest.raises(UsageError, match=r"selection group 'beta=1.0_method=ncvae', the cell .* is not in the matrix"):
        matrix_document(suite, None, expand(suite, None))
    both = SUITE.replace('where = { method = "ncvae" }', "").replace(SELECT_BLOCK.split("\n")[0], "[[select]]")
    both = both.replace('of = { method = "vae" }', 'of = { "regularizer.beta" = 0.5 }')
    suite = load_suite(write(tmp_path, both))
    with pytest.raises(UsageError, match=r"is tuned itself; within\.of must name untuned cells"):
        matrix_document(suite, None, expand(suite, None))
    twice = SUITE + '\n[[select]]\naxes = ["regularizer.K"]\nmetric = "mi"\n'
    twice = twice.replace("[select]\n", "[[select]]\n", 1)
    deltas = '"regularizer.delta" = [0.1, 0.3, 1.0, 3.0]'
    twice = twice.replace(deltas, deltas + '\n"regularizer.K" = [2.0, 5.0]')
    with pytest.raises(UsageError, match=r"matched by the where of \[\[select\]\] 1 and 2"):
        expand(load_suite(write(tmp_path, twice)), None)


def test_the_runner_refuses_a_bad_selection_in_one_line(tmp_path, capsys):
    from vaezoo_bench.run import main

    suite = write(tmp_path, SUITE.replace('metric = "mi_he"', 'metric = "elbo"'))
    assert main([str(suite), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.run: error: suite ")
    assert "[select] metric 'elbo' is not a metric a run reports; choose from: neg_elbo, recon, kl, mi, mi_he" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_dry_run_decides_phase_two_from_the_records_and_waits_for_cells_it_will_run_again(tmp_path, capsys):
    from vaezoo_bench.run import main

    def metrics(axes: dict) -> dict | None:
        if axes["train.seed"] == 1:
            return None  # phase 2 and β-VAE's second seed have not run
        return figures(0.1 * axes.get("regularizer.delta", 0.0), 100.0)

    text = SUITE.replace('"train.seed" = [0] }', '"train.seed" = [0, 1] }')
    suite = write(tmp_path, text)
    results = write_results(tmp_path, text, metrics, profile="short")
    assert main([str(suite), "--profile", "short", "--out", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "suite selection (profile short): 10 cells; 4 train, 6 done"
    assert "selected  beta=0.5_method=ncvae: δ=3.0: valid MI (He et al.) 0.300, the largest of 2 values" in out
    actions = dict(line.split()[:2][::-1] for line in out.splitlines() if "=" in line.split()[1])
    assert actions["beta=1.0_method=ncvae_delta=3.0_seed=1"] == "train", "the chosen value on the other seed"
    assert "beta=1.0_method=ncvae_delta=0.3_seed=1" not in actions, "a value that was not chosen never runs again"
    # a failed sweep cell is run again, so its group waits until it has ended
    failed = cell_dir(results, "beta=1.0_method=ncvae_delta=0.3_seed=0") / CELL_NAME
    record = json.loads(failed.read_text())
    failed.write_text(json.dumps({**record, "status": "failed", "error": "x", "stage": "train"}))
    assert main([str(suite), "--profile", "short", "--out", str(results), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "train     beta=1.0_method=ncvae_delta=0.3_seed=0" in [line.rstrip() for line in lines]
    assert "train     beta=0.5_method=ncvae_delta=3.0_seed=1" in [line.rstrip() for line in lines]
    (wait,) = [line for line in lines if line.startswith("wait")]
    assert wait.split()[1] == "beta=1.0_method=ncvae" and "beta=1.0_method=ncvae_delta=0.3_seed=0" in wait


# -- the report --------------------------------------------------------------------------------------------------


def test_the_report_shows_the_chosen_value_beside_each_row_and_every_swept_value_in_an_appendix(tmp_path):
    def metrics(axes: dict) -> dict:
        if axes["method"] == "β-VAE":
            return figures(0.05, 100.0)
        delta = axes["regularizer.delta"]
        # MI grows with δ, -ELBO too: at β 0.5 δ = 1 is the largest within 2 nats, at β 1 δ = 3 (a smaller slope)
        slope = 1.5 if axes["regularizer.beta"] == 0.5 else 0.5
        return figures(0.1 + delta, 100.0 + slope * delta + 0.02 * axes["train.seed"])

    results = write_results(tmp_path, SUITE, metrics)
    matrix = load_matrix(results)
    assert {g: c.values for g, c in matrix.choices.items()} == {
        "beta=0.5_method=ncvae": {"regularizer.delta": 1.0},
        "beta=1.0_method=ncvae": {"regularizer.delta": 3.0},
    }
    write_report(results, tmp_path / "report", plots=False)
    text = (tmp_path / "report" / "report.md").read_text()
    # 4 β-VAE cells, 8 of the sweep, 2 of the chosen δ on seed 1 (not the 6 phase-2 cells of other values)
    assert "Cells: 14 planned, 14 ok, 0 failed, 0 skipped, 0 pending." in text
    assert "| β | Method | Test prior | δ (chosen) | MI (He et al.) | MI | -ELBO | IW-NLL |" in text
    assert "| 0.5 | β-VAE | 1 | – | 0.05 ± 0.00 | 0.05 ± 0.00 | 100.00 ± 0.00 | 99.00 ± 0.00 |" in text
    assert "|  | NC-VAE | 1 | 1.0 | 1.10 ± 0.00 | 1.10 ± 0.00 | 101.51 ± 0.01 | 100.51 ± 0.01 |" in text
    assert "- β=1.0, NC-VAE (chosen): δ=3.0: valid MI (He et al.) 3.100, the largest of 4 values among the 4" in text
    appendix = text.split("## Appendix: every swept value")[1].strip().splitlines()
    assert appendix[0] == (
        "| β | Method | δ | seeds | valid MI (He et al.) | valid -ELBO | Δ -ELBO vs β-VAE | chosen | Test prior | "
        "MI (He et al.) | MI | -ELBO | IW-NLL |"
    )
    assert appendix[2] == "| 0.5 | NC-VAE | 0.1 | 1 | 0.200 | 100.15 | +0.15 |  | 1 | 0.20 | 0.20 | 100.15 | 99.15 |"
    assert appendix[3] == "|  |  |  |  |  |  |  |  | f(K,β,δ) | 0.20 | 0.20 | 100.15 | 99.15 |"
    assert "|  |  | 1.0 | 1 | 1.100 | 101.50 | +1.50 | ✓ | 1 |" in text
    assert "|  |  | 3.0 | 1 | 3.100 | 104.50 | +4.50 |  | 1 |" in text
    assert len(appendix) == 2 + 2 * 4 * 2, "every swept value of both groups under both test priors"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "table.csv").read_text())))
    assert [r["chosen_regularizer.delta"] for r in rows] == ["–", "1.0", "1.0", "–", "3.0", "3.0"]


def test_the_report_says_how_many_test_examples_the_figures_and_iw_nll_average_over(tmp_path):
    def metrics(axes: dict) -> dict:
        return figures(0.1, 100.0, iw_examples=100, iw_nll_se=0.5 + axes["train.seed"])

    write_report(write_results(tmp_path, SUITE, metrics), tmp_path / "report", plots=False)
    text = (tmp_path / "report" / "report.md").read_text()
    assert (
        "- Test figures average over 1,000 test examples per cell; IW-NLL over 100 of them, spread evenly over the "
        "split, with a standard error over those examples of 0.50 to 1.50 nats per cell."
    ) in text


def test_a_row_waiting_for_its_sweep_reads_pending(tmp_path):
    def metrics(axes: dict) -> dict | None:
        return None if axes.get("regularizer.delta") == 3.0 else figures(0.1, 100.0)

    results = write_results(tmp_path, SUITE, metrics, profile="short")
    write_report(results, tmp_path / "report", plots=False)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "|  | NC-VAE | 1 | ? | pending | pending | pending | pending |" in text
    assert "- β=0.5, NC-VAE (waiting): waiting for 1 cell(s) of its sweep or reference" in text


def test_an_mi_within_the_estimators_noise_of_the_reference_row_is_marked_not_distinguishable(tmp_path):
    # D = 32, n = 1000 (as the cells record them): mi_he's spread on a collapsed encoder is √(32/2000) = 0.126
    assert math.sqrt(32 / 2000) == pytest.approx(0.1265, abs=1e-4)

    def metrics(axes: dict) -> dict:
        if axes["method"] == "β-VAE":
            return figures(1.0, 100.0, mi=1.0 + 0.1 * axes["train.seed"])
        gap = 0.1 if axes["regularizer.beta"] == 0.5 else 0.2  # below and above 0.126
        return figures(1.0 + gap, 100.0, mi=1.0 + gap)

    results = write_results(tmp_path, SUITE, metrics)
    write_report(results, tmp_path / "report", plots=False)
    text = (tmp_path / "report" / "report.md").read_text()
    # the NC-VAE rows under test prior 1, β 0.5 then β 1; columns: β, Method, Test prior, δ, MI (He et al.), MI
    below, above = [line.split("|") for line in text.splitlines() if "| NC-VAE | 1 |" in line]
    assert below[5].strip() == "1.10 ± 0.00 (n.d.)", "0.1 nats apart: within mi_he's noise"
    assert above[5].strip() == "1.20 ± 0.00", "0.2 nats apart: resolved"
    # mi has no noise floor on a collapsed encoder: the spread over seeds decides, √(0² + 0.071²) = 0.071 (β-VAE's
    # mi is 1.0 and 1.1 over its seeds, mean 1.05: differences 0.05 and 0.15)
    assert below[6].strip() == "1.10 ± 0.00 (n.d.)", "0.05 is below 0.071"
    assert above[6].strip() == "1.20 ± 0.00", "0.15 is above 0.071"
    assert "0.126 nats for D = 32, n = 1000" in text and "(4 entries)" in text, "β 0.5 under both test priors"


# -- a real two-phase run, interrupted and resumed ---------------------------------------------------------------

TINY = SUITE.replace('"regularizer.beta" = [0.5, 1.0]', '"regularizer.beta" = [1.0]').replace(
    '"regularizer.delta" = [0.1, 0.3, 1.0, 3.0]', '"regularizer.delta" = [0.3, 3.0]'
)


def run_suite(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "vaezoo_bench.run", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def records(out: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in (out / "cells").glob(f"*/{CELL_NAME}")}


@pytest.mark.slow
def test_a_two_phase_run_resumes_in_either_phase_and_runs_the_chosen_value_on_the_other_seeds(tmp_path):
    suite, out = write(tmp_path, TINY), tmp_path / "out"
    sweep = ["beta=1.0_method=ncvae_delta=0.3_seed=0", "beta=1.0_method=ncvae_delta=3.0_seed=0"]
    # Phase 1 cut short: one δ only (--only); the group waits for the rest of its sweep and its reference.
    first = run_suite(str(suite), "--out", str(out), "--only", "delta=0.3")
    assert first.returncode == 0, first.stdout + first.stderr
    assert set(records(out)) == {sweep[0]}
    assert "wait      beta=1.0_method=ncvae: waiting for 2 cell(s)" in first.stdout
    finished = cell_dir(out, sweep[0]) / CELL_NAME
    mtime = finished.stat().st_mtime_ns

    # The whole command, interrupted (SIGINT, as Ctrl-C) once phase 2 has started. SIGINT is set back to its default
    # in the child: a shell starts background commands with it ignored, and the child would inherit that.
    command = [sys.executable, "-m", "vaezoo_bench.run", str(suite), "--out", str(out)]
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    phase2 = None
    deadline = time.monotonic() + 240
    while phase2 is None and process.poll() is None and time.monotonic() < deadline:
        started = [p.parent.name for p in (out / "cells").glob("*_seed=1/config-in.json") if "ncvae" in str(p)]
        phase2 = started[0] if started else None
        time.sleep(0.02)
    assert phase2 is not None, "phase 2 never started"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "interrupted; rerun the same command" in stderr and "Traceback" not in stderr
    after = records(out)
    assert phase2 not in after, "the interrupted phase-2 cell stays pending"
    assert set(sweep) <= set(after) and finished.stat().st_mtime_ns == mtime, "finished cells are untouched"

    # The choice is the rule applied to the sweep's validation lines (the constraint: within 2 nats of β-VAE).
    reference = after["beta=1.0_method=vae_seed=0"]["valid"]["metrics"]["neg_elbo"]
    valid = {c: after[c]["valid"]["metrics"] for c in sweep}
    eligible = [c for c in sweep if valid[c]["neg_elbo"] - reference <= 2.0]
    best = max(eligible, key=lambda c: (valid[c]["mi_he"], -sweep.index(c)))
    assert phase2 == best.replace("seed=0", "seed=1")
    assert after[sweep[0]]["latent_dim"] == 2 and after[sweep[0]]["examples"] == {"valid": 128, "test": 128}
    assert after[sweep[0]]["valid"]["step"] == 20 and after[sweep[0]]["valid"]["test_prior"] == "trained"

    # Rerunning the same command resumes phase 2 only.
    again = run_suite(str(suite), "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.fullmatch(
        r"suite selection \(profile none\): 5 cells; 1 (train|resume), 4 done", again.stdout.split("\n")[0]
    )
    final = records(out)
    assert final[phase2]["status"] == "ok" and finished.stat().st_mtime_ns == mtime
    assert {c for c in final if "ncvae" in c} == {*sweep, phase2}, "the other value never ran on seed 1"
    write_report(out, tmp_path / "report", plots=False)
    text = (tmp_path / "report" / "report.md").read_text()
    delta = final[phase2]["axes"]["regularizer.delta"]
    assert f"|  | NC-VAE | 1 | {delta} |" in text and "Cells: 5 planned, 5 ok" in text
    done = run_suite(str(suite), "--out", str(out), "--dry-run")
    assert done.stdout.splitlines()[0] == "suite selection (profile none): 5 cells; 5 done"
    assert os.path.getsize(out / MATRIX_NAME) > 0
