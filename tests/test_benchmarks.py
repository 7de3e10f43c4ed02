"""The benchmark runner and report: matrix expansion and skip rules, resuming a partial matrix, a failing cell
recorded without stopping the others, and the report rendered from fixture results against a golden file.

The golden file is ``tests/fixtures/bench/table1.md``; after an intended change of the report, regenerate it with
``python -m benchmarks.report tests/fixtures/bench/table1 --out /tmp/r && cp /tmp/r/report.md tests/fixtures/bench/``
``table1.md`` and review the diff. The fixture results are hand-written cell.json files (made with
``vaezoo_bench.results.cell_record``): two seeds per row, one row partly pending, one failed, one skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from vaezoo import hookimpl
from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Data, DataSource, DataSpec
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.plugins.loading import load_plugins
from vaezoo_bench.matrix.document import matrix_document
from vaezoo_bench.matrix.expansion import effective_axes, expand, parse_selection, select
from vaezoo_bench.matrix.model import Cell, choose_profile
from vaezoo_bench.matrix.reading import load_suite
from vaezoo_bench.report import write_report
from vaezoo_bench.results import CELL_NAME, read_json
from vaezoo_bench.validate import Validator

FIXTURES = Path(__file__).parent / "fixtures" / "bench"

SUITE = """
[suite]
name = "expansion"
test_priors = ["standard", "optimal"]
rows = ["method", "regularizer.beta"]

[base.data]
name = "synthetic"
dim = 10

[base.regularizer]
name = "betavae"
warmup_steps = 5

[profile.quick]
train = { steps = 7 }
axes = { "train.seed" = [0] }

[axes]
method = [
    { label = "β-VAE", id = "vae", regularizer = { name = "betavae" }, test_priors = ["standard"] },
    { label = "NC-VAE GN", regularizer = { name = "ncvae", delta = 0.5 }, noise = { name = "gaussian" } },
]
regularizer.beta = [0.8, 1.0, 5.0]
"train.seed" = [0, 1]
"""


def write(tmp_path: Path, text: str, name: str = "suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def by_id(cells: list[Cell]) -> dict[str, Cell]:
    return {cell.id: cell for cell in cells}


# -- matrix expansion ------------------------------------------------------------------------------------------


def test_expansion_is_the_product_in_axis_order_with_stable_unique_ids(tmp_path):
    suite = load_suite(write(tmp_path, SUITE))
    cells = expand(suite, None)
    assert len(cells) == 2 * 3 * 2
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids[:3] == ["method=vae_beta=0.8_seed=0", "method=vae_beta=0.8_seed=1", "method=vae_beta=1.0_seed=0"]
    assert ids[-1] == "method=nc-vae-gn_beta=5.0_seed=1"
    assert ids == [c.id for c in expand(load_suite(write(tmp_path, SUITE, "again.toml")), None)]
    assert cells[-1].axes == {"method": "NC-VAE GN", "regularizer.beta": 5.0, "train.seed": 1}


def test_variant_fragments_merge_after_base_and_profile_and_before_parameter_axes(tmp_path):
    suite = load_suite(write(tmp_path, SUITE))
    cells = by_id(expand(suite, choose_profile(suite, "quick")))
    assert len(cells) == 6, "the profile keeps one seed"
    vae, nc = cells["method=vae_beta=0.8_seed=0"], cells["method=nc-vae-gn_beta=0.8_seed=0"]
    assert vae.raw["regularizer"] == {"name": "betavae", "warmup_steps": 5, "beta": 0.8}
    # naming another component drops the base's betavae parameters; the beta axis applies to ncvae as well
    assert nc.raw["regularizer"] == {"name": "ncvae", "delta": 0.5, "beta": 0.8}
    assert nc.raw["noise"] == {"name": "gaussian"} and vae.raw["noise"] == {}
    assert vae.raw["data"] == nc.raw["data"] == {"name": "synthetic", "dim": 10}
    assert vae.raw["train"] == {"steps": 7, "seed": 0}
    assert vae.test_priors == ("standard",) and nc.test_priors == ("standard", "optimal")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (("regularizer.beta = [", "optimizer.lr = ["), ["optimizer.lr", "SECTION.PARAM"]),
        (("regularizer.beta = [", '"callbacks.early_stop" = ['), ["callbacks.early_stop", "callbacks.NAME.PARAM"]),
        (("regularizer.beta = [", '"regularizer.beta.x.y" = ['), ["regularizer.beta.x.y", "SECTION.PARAM"]),
        (('rows = ["method", "regularizer.beta"]', 'rows = ["method"]'), ["rows", "regularizer.beta"]),
        (('"train.seed" = [0, 1]', '"train.seed" = []'), ["train.seed", "non-empty list"]),
        (('{ label = "β-VAE", id = "vae",', '{ label = "β-VAE", id = "vae", colour = 1,'), ["unknown key 'colour'"]),
        (('id = "vae"', 'id = "nc-vae-gn"'), ["several values with the id 'nc-vae-gn'"]),
        (('test_priors = ["standard", "optimal"]', 'test_priors = ["-2"]'), ["test prior '-2'"]),
        (('"train.seed" = [0] }', '"model.seed" = [0] }'), ["'model.seed', which is not an axis"]),
        (
            ("[suite]\n", '[suite]\ndefault_profile = ["quick"]\n'),
            ["default_profile ['quick'] is not a [profile.NAME]"],
        ),
    ],
)
def test_suite_mistakes_are_usage_errors_naming_the_entry(tmp_path, change, fragments):
    old, new = change
    assert old in SUITE
    with pytest.raises(UsageError) as raised:
        load_suite(write(tmp_path, SUITE.replace(old, new)))
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_an_unknown_profile_names_the_choices(tmp_path):
    suite = load_suite(write(tmp_path, SUITE))
    with pytest.raises(UsageError, match="no profile 'paper'; choose one of: quick"):
        choose_profile(suite, "paper")


# -- skip rules ------------------------------------------------------------------------------------------------


class FixtureTokens(DataSource):
    """A tiny token data set with no default noise sampler and no noise split (what text data will be)."""

    name = "fixture_tokens"
    needs_data_dir = False

    def load(self, data_dir: Path | None, seed: int) -> Data:
        ids = torch.randint(10, (8, 5), generator=torch.Generator().manual_seed(0))
        return Data(DataSpec((5,), "tokens", vocab_size=10), ids, ids, ids)


@hookimpl
def vaezoo_register(register) -> None:
    register(FixtureTokens)


@pytest.fixture(scope="module")
def validator() -> Validator:
    plugins = load_plugins(extra=(sys.modules[__name__],))
    assert not plugins.failures, plugins.failures
    return Validator(plugins.registry, data_dir=None)


TOKENS = {"data": {"name": "fixture_tokens"}}


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"regularizer": {"name": "nope"}}, ["unknown regularizer 'nope'", "betavae"]),
        ({"regularizer": {"name": "infovae", "beta": 1.0}}, ["unknown parameter 'beta'"]),
        ({"regularizer": {"name": "betavae", "beta": -1.0}}, ["beta", ">= 0"]),
        ({**TOKENS, "regularizer": {"name": "ncvae"}}, ["needs contrastive noise"]),
        ({**TOKENS, "regularizer": {"name": "ncvae"}, "noise": {"name": "gaussian"}}, ["gaussian", "token ids"]),
        ({**TOKENS, "regularizer": {"name": "ncvae"}, "noise": {"name": "dataset"}}, ["no noise distribution"]),
        (TOKENS, ["not token ids"]),  # the MLP encoder refuses token ids
    ],
)
def test_invalid_combinations_are_skipped_with_vaezoo_s_reason(validator, raw, fragments):
    from vaezoo.config.run_config import merge_raw

    reason = validator.skip_reason(merge_raw(raw))
    assert reason is not None
    for fragment in fragments:
        assert fragment in reason, reason


def test_problems_of_the_machine_are_not_skip_reasons(validator):
    from vaezoo.config.run_config import merge_raw

    assert validator.skip_reason(merge_raw({"regularizer": {"name": "ncvae"}})) is None
    assert validator.skip_reason(merge_raw({"train": {"device": "cuda:99"}})) is None
    # files that cannot be read: the cell runs and fails with vaezoo's own message
    assert validator.skip_reason(merge_raw({"data": {"name": "omniglot"}, "encoder": {"name": "resnet"}})) is None
    assert any("omniglot" in problem for problem in validator.data_problems.values())


# -- running, failing and resuming a real matrix ---------------------------------------------------------------

#: The base of the small test suites: a few steps of an MLP VAE on the synthetic task.
TINY_BASE = """
[base.data]
name = "synthetic"
dim = 10
n_train = 256
n_valid = 128
n_test = 128

[base.encoder]
name = "mlp"
hidden = [16]

[base.decoder]
name = "mlp"
hidden = [16]

[base.train]
steps = 20
eval_every = 10

[base.eval]
iw_samples = 10
batch_size = 128
"""
TINY = """
[suite]
name = "tiny"
test_priors = ["standard", "optimal"]
"""
TINY += TINY_BASE
TINY += """
[axes]
case = [
    { label = "seed 0", id = "s0", train = { seed = 0 } },
    { label = "seed 1", id = "s1", train = { seed = 1 } },
    # valid for vaezoo, refused by the child on every machine with fewer than 100 GPUs: a run-time failure
    { label = "no such device", id = "bad-device", train = { device = "cuda:99" } },
    { label = "negative beta", id = "bad-beta", regularizer = { beta = -1.0 } },
]
"""


def run_suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vaezoo_bench.run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,  # as documented: python -m benchmarks.run from the repository root
        timeout=300,
    )


def cells_of(out: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in (out / "cells").glob(f"*/{CELL_NAME}")}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess, dict[str, dict]]:
    """The tiny suite run once with two jobs: (suite file, results dir, the runner's process, its cell.json files)."""
    root = tmp_path_factory.mktemp("matrix")
    suite, out = write(root, TINY), root / "out"
    result = run_suite(str(suite), "--jobs", "2", "--out", str(out))
    return suite, out, result, cells_of(out)


@pytest.mark.slow
def test_a_failing_cell_is_recorded_and_the_others_finish(matrix):
    _, out, result, cells = matrix
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert set(cells) == {"case=s0", "case=s1", "case=bad-device", "case=bad-beta"}
    failed = cells["case=bad-device"]
    assert failed["status"] == "failed" and failed["stage"] == "train"
    assert "exit status" in failed["error"]
    if not torch.cuda.is_available():
        assert "cuda:99" in failed["error"] and "exit status 2" in failed["error"], "vaezoo's usage error"
    for cell in ("case=s0", "case=s1"):
        assert cells[cell]["status"] == "ok", cells[cell]
        assert set(cells[cell]["test_priors"]) == {"standard", "optimal"}
        for metrics in cells[cell]["test_priors"].values():
            assert {"mi", "neg_elbo", "recon", "kl", "au", "iw_nll", "test_prior_variance"} <= set(metrics)
        assert (out / "cells" / cell / cells[cell]["scatter"]).is_file()
        run_lines = (out / "cells" / cell / "run" / "metrics.jsonl").read_text().splitlines()
        assert cells[cell]["curve"] == [json.loads(line) for line in run_lines], "the whole validation curve"
        assert cells[cell]["valid"]["metrics"] == cells[cell]["curve"][-1]["valid"], "the tested (last) model's"
    skipped = cells["case=bad-beta"]
    assert skipped["status"] == "skipped" and "beta" in skipped["reason"] and ">= 0" in skipped["reason"]
    assert not (out / "cells" / "case=bad-beta" / "run").exists(), "a skipped cell never runs"
    assert cells["case=s0"]["test_priors"]["standard"]["test_prior_variance"] == 1.0

    report = out.parent / "report"
    written = {path.name for path in write_report(out, report)}
    text = (report / "report.md").read_text()
    assert "| case=bad-device | failed | train |" in text and "| case=bad-beta | skipped |" in text
    assert "curves.png" in written and "![Validation curves](curves.png)" in text


@pytest.mark.slow
def test_resuming_a_partial_matrix_reruns_only_what_did_not_finish(matrix):
    suite, out, _, before = matrix
    finished = out / "cells" / "case=s0" / CELL_NAME
    finished_mtime = finished.stat().st_mtime_ns
    # Make case=s1 half-finished: a checkpoint but no results.json and no cell.json.
    (out / "cells" / "case=s1" / CELL_NAME).unlink()
    (out / "cells" / "case=s1" / "run" / "results.json").unlink()

    planned = run_suite(str(suite), "--out", str(out), "--dry-run")
    assert planned.returncode == 0, planned.stderr
    actions = dict(line.split()[:2][::-1] for line in planned.stdout.splitlines()[1:])
    assert actions == {"case=s0": "done", "case=s1": "resume", "case=bad-device": "train", "case=bad-beta": "skip"}

    again = run_suite(str(suite), "--out", str(out))
    assert again.returncode == 1, again.stdout + again.stderr
    after = cells_of(out)
    assert finished.stat().st_mtime_ns == finished_mtime and after["case=s0"]["attempts"] == 1
    assert after["case=s1"]["status"] == "ok"
    assert "run --resume" in (out / "cells" / "case=s1" / "log.txt").read_text()
    assert after["case=s1"]["test_priors"] == before["case=s1"]["test_priors"], "resuming is deterministic"
    assert after["case=bad-device"]["attempts"] == 2, "failed cells are run again"


@pytest.mark.slow
def test_a_changed_configuration_is_refused_rather_than_mixed(matrix, tmp_path):
    suite, out, _, _ = matrix
    changed = write(tmp_path, suite.read_text().replace("steps = 20", "steps = 30"))
    result = run_suite(str(changed), "--out", str(out), "--dry-run")
    assert result.returncode == 2
    assert "different configuration" in result.stderr and "case=s0" in result.stderr


# -- the report ------------------------------------------------------------------------------------------------


def test_report_from_fixture_results_matches_the_golden_markdown(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(FIXTURES / "table1", results)
    written = write_report(results, tmp_path / "report")
    assert (tmp_path / "report" / "report.md").read_bytes() == (FIXTURES / "table1.md").read_bytes()
    assert {p.name for p in written} == {"report.md", "table.csv", "mi_vs_beta.png", "au_vs_beta.png"}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "report" / "table.csv").read_text())))
    first = rows[0]
    assert (first["regularizer.beta"], first["method"], first["test_prior"]) == ("0.8", "β-VAE", "standard")
    assert float(first["mi_mean"]) == pytest.approx(3.77)
    assert float(first["mi_std"]) == pytest.approx(0.0989949, rel=1e-5), "sample standard deviation (n - 1)"
    assert [r["status"] for r in rows].count("skipped") == 3 and rows[-1]["mi_mean"] == ""


def test_report_refuses_a_directory_that_is_not_a_matrix(tmp_path):
    with pytest.raises(UsageError, match=r"matrix\.json"):
        write_report(tmp_path, tmp_path / "report")
    assert read_json(tmp_path / "nothing.json") is None


# -- restricting a run to some cells (--only) ------------------------------------------------------------------


def test_only_keeps_the_cells_with_the_chosen_values_of_each_axis(tmp_path):
    suite = load_suite(write(tmp_path, SUITE))
    cells = expand(suite, None)
    # an axis by its suite name or its name in cell ids; values of one axis add up, axes intersect
    allowed = parse_selection(["method=vae", "beta=0.8", "regularizer.beta=5.0"], effective_axes(suite, None))
    assert allowed == {"method": {"vae"}, "regularizer.beta": {"0.8", "5.0"}}
    assert [c.id for c in select(cells, allowed)] == [
        "method=vae_beta=0.8_seed=0",
        "method=vae_beta=0.8_seed=1",
        "method=vae_beta=5.0_seed=0",
        "method=vae_beta=5.0_seed=1",
    ]
    assert select(cells, parse_selection(["method=nc-vae-gn,vae"], suite.axes)) == cells
    assert select(cells, {}) == cells


@pytest.mark.parametrize(
    ("only", "message"),
    [
        ("colour=red", "--only 'colour=red': unknown axis 'colour'; axes: method, regularizer.beta, train.seed"),
        ("method=aae", "--only 'method=aae': axis 'method' has no value 'aae'; values: vae, nc-vae-gn"),
        ("seed=0,7", "--only 'seed=0,7': axis 'train.seed' has no value '7'; values: 0, 1"),
        ("method", "--only 'method' must be AXIS=VALUE[,VALUE...]"),
    ],
)
def test_only_with_an_unknown_axis_or_value_is_a_usage_error_naming_the_choices(tmp_path, capsys, only, message):
    from vaezoo_bench.run import main

    assert main([str(write(tmp_path, SUITE)), "--only", only, "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.run: error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_runs_restricted_to_different_cells_share_one_results_directory(tmp_path, capsys):
    from vaezoo_bench.run import main

    suite, out = write(tmp_path, SUITE), tmp_path / "out"
    assert main([str(suite), "--profile", "quick", "--only", "method=vae", "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "suite expansion (profile quick): 3 of 6 cells (--only); 3 train"
    assert {line.split()[1] for line in printed[1:]} == {f"method=vae_beta={b}_seed=0" for b in ("0.8", "1.0", "5.0")}


# -- the zoo suite and a third-party plugin in it --------------------------------------------------------------

ZOO = REPO / "benchmarks" / "suites" / "zoo.toml"
PLUGIN_SITE = Path(__file__).parent / "fixtures" / "plugin_site"


def test_zoo_crosses_every_regulariser_with_every_network_and_a_sensible_noise_for_each():
    suite = load_suite(ZOO)
    cells = by_id(expand(suite, choose_profile(suite, None)))
    regularizers = ("betavae", "infovae", "aae", "ncvae", "l2code")
    assert set(cells) == {f"regularizer={r}_network={n}" for r in regularizers for n in ("mlp", "pixelcnn", "lstm")}
    lstm = cells["regularizer=ncvae_network=lstm"].raw
    assert lstm["noise"]["name"] == "decoder" and lstm["encoder"]["name"] == lstm["decoder"]["name"] == "lstm"
    assert cells["regularizer=ncvae_network=pixelcnn"].raw["noise"]["name"] == "gaussian"
    assert cells["regularizer=l2code_network=mlp"].raw["regularizer"] == {"name": "l2code"}


@pytest.mark.slow
def test_a_third_party_plugin_s_regulariser_is_a_cell_of_the_zoo_and_runs(tmp_path, capsys):
    # The zoo suite itself, with the MLP cells' budget cut to a few seconds.
    budget = "train = { steps = 300, batch_size = 64, eval_every = 150 }\neval = { iw_samples = 50 }"
    text = ZOO.read_text()
    assert budget in text
    suite = write(tmp_path, text.replace(budget, "train = { steps = 10, eval_every = 10 }\neval = { iw_samples = 5 }"))
    out = tmp_path / "out"
    options = [str(suite), "--out", str(out), "--only", "network=mlp", "--only", "regularizer=l2code"]
    # Without the plugin's distribution on the path its cell is skipped with vaezoo's reason.
    from vaezoo_bench.run import main

    assert main([*options, "--dry-run"]) == 0
    assert "skip      regularizer=l2code_network=mlp  unknown regularizer 'l2code'" in capsys.readouterr().out
    # With it (its dist-info on PYTHONPATH: found through its entry point, as if installed), the cell runs.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_SITE), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "vaezoo_bench.run", *options]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = cells_of(out)
    assert set(cells) == {"regularizer=l2code_network=mlp"}
    cell = cells["regularizer=l2code_network=mlp"]
    assert cell["status"] == "ok" and cell["axes"] == {"regularizer": "L2 code (plugin)", "network": "MLP"}
    assert cell["train"]["steps"] == 10 and "neg_elbo" in cell["test_priors"]["standard"]
    config = json.loads((out / "cells" / cell["id"] / "run" / "config.json").read_text())
    assert config["regularizer"]["name"] == "l2code", "the plugin's component trained, not a default"
    assert "l2code_norm" in (out / "cells" / cell["id"] / "run" / "metrics.jsonl").read_text()
    # matrix.json holds the whole matrix, so the report shows the cells other runs left pending
    matrix = json.loads((out / "matrix.json").read_text())
    assert len(matrix["cells"]) == 15


# -- the paper's suites: δ tuned on validation MI, β-VAE below β 1, three seeds ---------------------------------

SUITES = REPO / "benchmarks" / "suites"


@pytest.mark.parametrize("name", ["table1", "table2"])
def test_the_table_suites_tune_delta_on_validation_mi_as_the_paper_did(name):
    suite = load_suite(SUITES / f"{name}.toml")
    (selection,) = suite.selections
    assert (selection.axes, selection.rule, selection.metric, selection.split) == (
        ("regularizer.delta",),
        "max",
        "mi_he",
        "valid",
    )
    assert selection.within is None and selection.sweep_seeds == 1
    assert suite.table.reference == {"method": "vae"} and suite.table.tradeoff == {"mi": "mi_he", "prior": "optimal"}
    for profile in ("cpu", "paper"):
        chosen = choose_profile(suite, profile)
        cells = expand(suite, chosen)
        deltas = {c.axes["regularizer.delta"] for c in cells if "regularizer.delta" in c.axes}
        assert {0.1, 0.3, 1.0, 3.0} <= deltas
        assert {c.axes["train.seed"] for c in cells} == {0, 1, 2}, f"{profile}: three seeds"
        vae = {c.axes["regularizer.beta"] for c in cells if c.axes["method"] == "β-VAE"}
        nc = {c.axes["regularizer.beta"] for c in cells if c.axes["method"].startswith("NC-VAE")}
        assert ({0.2, 0.5} if profile == "paper" else {0.2}) <= vae and not {0.2, 0.5} & nc, "β < 1 for β-VAE only"
        for cell in cells:
            tuned = "regularizer.delta" in cell.axes
            assert tuned == cell.axes["method"].startswith("NC-VAE")
            assert ("delta" in cell.raw["regularizer"]) == tuned, "δ is set only where it is tuned"
            assert cell.phase == (None if not tuned else 1 if cell.axes["train.seed"] == 0 else 2)
        if profile == "cpu":  # trained until the validation -ELBO stops improving, tested on the whole split
            for cell in cells:
                assert cell.raw["train"]["test_model"] == "best" and cell.raw["callbacks"]["early_stop"]["patience"]
                assert cell.raw["eval"].get("limit") is None
        document = matrix_document(suite, chosen, cells)
        groups = document["selection"]["groups"]
        assert all(len(g["candidates"]) == len(deltas) and not g["reference"] for g in groups)
        assert all(len(c["phase2"]) == 2 for g in groups for c in g["candidates"]), "the chosen δ on seeds 1 and 2"


@pytest.mark.parametrize(("name", "cells"), [("table1", 10), ("table2", 14)])
def test_the_smoke_profiles_exercise_selection_in_a_few_steps(name, cells):
    suite = load_suite(SUITES / f"{name}.toml")
    profile = choose_profile(suite, "smoke")
    expanded = expand(suite, profile)
    groups = matrix_document(suite, profile, expanded)["selection"]["groups"]
    phase2 = {len(c["phase2"]) for g in groups for c in g["candidates"]}
    assert groups and phase2 == {1} and all(len(g["candidates"]) == 2 for g in groups)
    chosen_seeds = len(next(iter(groups))["candidates"][0]["sweep"]) + 1
    # the runner counts a group's phase 2 once (the chosen value's), not once per swept value
    assert len([c for c in expanded if c.phase != 2]) + len(groups) * (chosen_seeds - 1) == cells
    assert profile.config["train"]["steps"] <= 20


def test_the_smoke_and_synthetic_suites_mark_mi_against_beta_vae_and_draw_the_tradeoff():
    smoke = load_suite(SUITES / "smoke.toml")
    (selection,) = smoke.selections
    assert selection.within is not None and selection.within.of == {"method": "betavae"}
    assert smoke.base["eval"]["test_prior"] == "optimal", "the constraint compares -ELBO under each fitted prior"
    document = matrix_document(smoke, None, expand(smoke, None))
    (group,) = document["selection"]["groups"]
    assert group["reference"] == ["method=betavae_seed=0"] and len(group["candidates"]) == 3
    synthetic = load_suite(SUITES / "synthetic.toml")
    assert synthetic.table.reference == {"method": "betavae"} and synthetic.table.tradeoff is not None
    assert not synthetic.selections


# -- the speed benchmarks' entry point -------------------------------------------------------------------------


@pytest.mark.slow
def test_perf_entry_point_prints_every_chosen_figure_as_json_then_markdown():
    # A tiny configuration: no timing is checked, only that each part runs in its own process and reports.
    command = [sys.executable, "-m", "vaezoo_bench.perf", "--parts", "steps,iwnll", "--networks", "mlp", "--quick"]
    command += ["--variants", "betavae,ncvae+gaussian", "--repeats", "1", "--batch", "4", "--threads", "1"]
    command += ["--chunks", "5", "--iw-k", "10", "--iw-batch", "4", "--precisions", "fp32"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text, _, markdown = result.stdout.partition("\n\n")
    document = json.loads(text)
    assert set(document) == {"machine", "quick", "steps", "iwnll", "wall_time_s"}
    (mlp,) = document["steps"]
    assert mlp["network"] == "mlp" and set(mlp["ratio_to_betavae"]) == {"betavae", "ncvae+gaussian"}
    assert (mlp["arch"], mlp["precision"]) == ("he2019", "fp32"), "the steps part takes --arch and --precisions"
    assert mlp["ratio_to_betavae"]["betavae"] == 1.0 and mlp["skipped"] == {}
    (iwnll,) = document["iwnll"]
    assert (iwnll["chunk"], iwnll["k"], iwnll["batch"]) == (5, 10, 4) and iwnll["examples_per_s"] > 0
    assert iwnll["peak_rss_mb"] >= iwnll["extra_rss_mb"] >= 0
    assert "### Step time relative to betavae" in markdown and "| ncvae+gaussian | " in markdown
    assert "### IW-NLL evaluation by chunk size" in markdown
    assert "sampling" not in document and "PixelCNN sampling" not in markdown


@pytest.mark.slow
def test_lstm_step_times_come_with_token_throughput_and_refused_variants_with_their_reason(data_dir):
    from vaezoo_bench.perf.steps import measure_step_ratios

    result = measure_step_ratios(
        "lstm", batch=4, repeats=1, threads=1, variants=["ncvae+gaussian"], text_sizes=(8, 8), data_dir=data_dir
    )
    assert (result["embed_dim"], result["hidden"], result["vocab_size"]) == (8, 8, 20000)
    assert set(result["seconds_per_step"]) == set(result["tokens_per_s"]) == {"betavae"}, "betavae is the baseline"
    assert "token ids" in result["skipped"]["ncvae+gaussian"], "Gaussian noise is refused on text, with vaezoo's reason"
    assert result["tokens_per_step"] > 4, "predicted tokens of the batch, not sequences"
    seconds = result["seconds_per_step"]["betavae"]
    assert result["tokens_per_s"]["betavae"] == pytest.approx(result["tokens_per_step"] / seconds)


def test_subnormal_measurement_times_both_modes_and_leaves_the_callers_mode_alone():
    from vaezoo.runs.session import flushing_subnormals
    from vaezoo_bench.perf.__main__ import markdown
    from vaezoo_bench.perf.subnormals import measure_subnormals

    before = flushing_subnormals()
    result = measure_subnormals(batch=2, length=40, embed_dim=8, hidden=16, repeats=2, threads=1)
    assert flushing_subnormals() == before
    assert result["seconds_kept"] > 0 and result["seconds_flushed"] > 0
    assert result["ratio"] == pytest.approx(result["seconds_kept"] / result["seconds_flushed"])
    assert 0 <= result["subnormal_gradient_share"] <= 1
    machine = {"cores": 2, "threads": 1, "load_average_before": [0, 0, 0], "load_average_after": [0, 0, 0]}
    text = markdown({"machine": machine, "quick": True, "subnormals": result})
    assert "### LSTM encoder backward pass, subnormal floats kept against flushed" in text
    assert f"| 2 x 40 | 8/16 | {result['seconds_kept']:.2f} |" in text


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--parts", "steps,speed"],
            "argument --parts: unknown part 'speed'; choose from: steps, sampling, iwnll, subnormals",
        ),
        (["--networks", "gru"], "argument --networks: unknown network 'gru'; choose from: pixelcnn, deconv, mlp, lstm"),
        (["--lstm-sizes", "512"], "argument --lstm-sizes: LSTM size '512' must be EMBEDxHIDDEN, e.g. 64x64"),
    ],
)
def test_perf_entry_point_refuses_a_bad_option_in_one_line_naming_the_choices(capsys, option, message):
    from vaezoo_bench.perf.__main__ import main

    with pytest.raises(SystemExit) as raised:
        main(option)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.perf: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["", '[suite]\nname = "bare"\n', '[suite]\nname = "bare"\n[axes]\n'])
def test_a_suite_without_axes_is_refused_rather_than_run_as_a_cell_without_an_id(tmp_path, text):
    with pytest.raises(UsageError, match=r"has no \[axes\]"):
        load_suite(write(tmp_path, text))


THIRD_PARTY_SUITE = REPO / "tests" / "fixtures" / "bench" / "third_party.toml"


@pytest.mark.slow
def test_a_third_party_metric_is_a_column_a_selection_metric_and_an_early_stopping_metric(tmp_path):
    # the fixture distribution's metric code_norm, found through its dist-info as if installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_SITE), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "out"
    for tool in (
        ["run", str(THIRD_PARTY_SUITE), "--out", str(out), "--jobs", "2", "--threads", "1"],
        ["report", str(out), "--no-plots"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "vaezoo", "bench", *tool], capture_output=True, text=True, env=env, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
    report = (out / "report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| Method | Test prior"))
    assert header.rstrip().endswith("| code_norm |")
    sweep = {
        cell["id"]: json.loads((out / "cells" / cell["id"] / "run" / "metrics.jsonl").read_text().splitlines()[-1])
        for cell in cells_of(out).values()
        if cell["id"].startswith("method=l2code")
    }
    valid = {cell_id: line["valid"]["code_norm"] for cell_id, line in sweep.items()}
    chosen = min(valid, key=valid.get)  # rule "min" on the last validation line (no better line is kept)
    assert f"regularizer.weight={chosen.rpartition('=')[2]}: valid code_norm" in report
    # early stopping watched code_norm (lower is better, as the metric declares): a run that stopped early did so
    # where the metric had not improved for two validations, and at least one did
    assert any(cell["train"]["steps"] < 100 for cell in cells_of(out).values())
    for cell in cells_of(out).values():
        lines = [
            json.loads(line) for line in (out / "cells" / cell["id"] / "run" / "metrics.jsonl").read_text().splitlines()
        ]
        norms = [line["valid"]["code_norm"] for line in lines if "valid" in line]
        best = norms.index(min(norms))
        assert cell["train"]["steps"] == 100 or len(norms) - 1 - best >= 2, (cell["id"], norms)


# -- the remedies suites: every remedy, its own knob tuned by its stated rule, three seeds -----------------------

#: The knob each remedy tunes, and the rule: NC-VAE's δ for the largest validation MI, every other for the
#: smallest validation -ELBO.
REMEDY_KNOBS = {
    "ncvae-cd": ("regularizer.delta", "max", "mi_he"),
    "bnvae": ("transform.gamma", "min", "neg_elbo"),
    "deltavae": ("transform.delta", "min", "neg_elbo"),
    "ae-fb": ("regularizer.target", "min", "neg_elbo"),
    "anneal": ("callbacks.linear_kl.steps", "min", "neg_elbo"),
    "cyclical": ("callbacks.cyclical_kl.cycles", "min", "neg_elbo"),
}


@pytest.mark.parametrize(
    ("name", "skip_decoder"), [("remedies-text", "skip_lstm"), ("remedies-images", "skip_pixelcnn")]
)
def test_the_remedies_suites_run_every_remedy_with_its_knob_tuned_on_three_seeds(name, skip_decoder, registry):
    suite = load_suite(SUITES / f"{name}.toml")
    tuned = {next(iter(s.where["method"])): (*s.axes, s.rule, s.metric) for s in suite.selections}
    assert tuned == REMEDY_KNOBS and all(s.split == "valid" and s.sweep_seeds == 1 for s in suite.selections)
    cells = expand(suite, choose_profile(suite, "cpu"))
    methods = {c.value_ids["method"] for c in cells}
    assert methods >= {"vae", "aggressive", "savae", "skip", *REMEDY_KNOBS}
    for cell in cells:
        config = resolve(merge_raw(cell.raw), registry)  # every cell is a valid run of the registered components
        method = cell.value_ids["method"]
        assert config.train.seed in (0, 1, 2) and (method in REMEDY_KNOBS) == (cell.phase is not None)
        if method == "skip":  # the data axis's network sizes reach the skip decoder too
            plain = next(c for c in cells if c.value_ids["method"] == "vae")
            assert config.decoder.name == skip_decoder
            assert {k: v for k, v in cell.raw["decoder"].items() if k != "name"} == {
                k: v for k, v in plain.raw["decoder"].items() if k != "name"
            }
    anneal = [c for c in cells if c.value_ids["method"] == "anneal"]
    steps = {c.raw["callbacks"]["linear_kl"]["steps"] for c in anneal}
    assert len(steps) == 2 and all(c.raw["callbacks"]["linear_kl"]["start"] == 0.1 for c in anneal)
    assert all("linear_kl" not in c.raw.get("callbacks", {}) for c in cells if c.value_ids["method"] == "vae")
