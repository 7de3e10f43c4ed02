"""Everything knowable before training is checked before the run directory exists: callbacks that cannot act on
the run (early stopping on a metric its validation lines never hold, a KL schedule on a regulariser without a KL
weight), resumes that would shorten a run or train an early-stopped run on, and benchmark suites that ask for
metrics their runs will not report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch
from torch.distributions import Independent, Laplace

from tests.conftest import REPO, run_cli, small_config, small_raw
from vaezoo import hookimpl
from vaezoo.base.errors import UsageError
from vaezoo.cli.run import _check_resume_length
from vaezoo.components.interfaces import Encoder
from vaezoo.config.run_config import check_no_ignored_settings, merge_raw, resolve
from vaezoo.evaluation.evaluate import evaluation_metrics, validation_metrics
from vaezoo.plugins.loading import load_plugins
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, save_checkpoint
from vaezoo.runs.directory import STOPPED_EARLY, RunDirectory
from vaezoo.runs.session import open_session
from vaezoo.training.callbacks import RunHooks
from vaezoo_bench.matrix.reading import load_suite
from vaezoo_bench.validate import Validator, check_columns
from vaezoo_plugins.callbacks.standard import validations_left

pytestmark = pytest.mark.adversarial

ALWAYS = ("neg_elbo", "recon", "kl", "mi", "mi_he", "au")
PPL_STOP = {"early_stop": {"metric": "ppl_elbo"}}
SMALL_LSTMS = {"encoder": {"name": "lstm", "hidden": 16, "embed_dim": 8}, "decoder": {"name": "lstm", "hidden": 16}}


@pytest.fixture(scope="module")
def plugins():
    loaded = load_plugins()
    assert not loaded.failures, loaded.failures
    return loaded


@pytest.fixture(scope="module")
def synthetic(plugins):
    return open_session(small_config(plugins.registry), plugins.registry, None)


@pytest.fixture(scope="module")
def ptb(plugins, data_dir):
    """A session of PTB with small LSTMs, evaluated on 64 examples."""
    raw = small_raw(**SMALL_LSTMS, eval={"limit": 64})
    raw["data"] = {"name": "ptb"}
    return open_session(resolve(merge_raw(raw), plugins.registry), plugins.registry, data_dir)


def _refusal(plugins, session) -> str:
    """The UsageError a run of ``session`` gets from its callbacks' checks."""
    with pytest.raises(UsageError) as refused:
        RunHooks(session.config, plugins.registry).check(session, plugins.registry)
    return str(refused.value)


def _session(plugins, **sections):
    return open_session(small_config(plugins.registry, **sections), plugins.registry, None)


# -- which metrics an evaluation reports ------------------------------------------------------------------------
def test_a_validation_never_reports_iw_nll_and_a_test_evaluation_does_when_asked(synthetic):
    assert validation_metrics(synthetic) == (*ALWAYS, "test_prior_variance")
    assert evaluation_metrics(synthetic, "trained", iw_samples=5) == (
        *ALWAYS,
        *("iw_nll", "iw_nll_se", "iw_examples"),
        "separability",
        "test_prior_variance",
    )
    assert evaluation_metrics(synthetic, "trained", iw_samples=0, among=["iw_nll", "mi"]) == ("mi",)


def test_perplexities_are_reported_for_text_only(synthetic, ptb):
    assert "ppl_elbo" in validation_metrics(ptb) and "ppl_iw" not in validation_metrics(ptb)
    assert {"ppl_elbo", "ppl_iw"} <= set(evaluation_metrics(ptb, "standard", iw_samples=3))
    assert not {"ppl_elbo", "ppl_iw"} & set(evaluation_metrics(synthetic, "standard", iw_samples=3))


def test_test_prior_variance_only_under_an_isotropic_test_prior(plugins):
    mixture = _session(plugins, prior={"name": "mog"})
    assert "test_prior_variance" not in validation_metrics(mixture)  # the trained prior is a mixture
    assert "test_prior_variance" in evaluation_metrics(mixture, "2.5", iw_samples=0)


def test_the_reported_metrics_are_those_an_evaluation_reports(synthetic, ptb):
    from vaezoo.evaluation.evaluate import evaluate_split

    for session in (synthetic, ptb):
        for split, iw_samples in (("valid", 0), ("test", 2)):
            measured = evaluate_split(session, split, "trained", iw_samples=iw_samples)
            assert evaluation_metrics(session, "trained", iw_samples, split=split) == tuple(measured)


def test_separability_is_reported_for_a_split_with_noise_examples_only(synthetic, ptb):
    assert "separability" in evaluation_metrics(synthetic, "trained", 0, split="test")
    assert "separability" not in evaluation_metrics(ptb, "trained", 0, split="test")
    assert "separability" not in validation_metrics(synthetic)  # the synthetic task draws no validation noise


# -- callbacks that cannot act on the run ----------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["iw_nll", "iw_nll_se", "ppl_iw", "separability", "ppl_elbo"])
def test_early_stopping_on_a_metric_the_validation_lines_do_not_hold_is_refused(plugins, metric):
    session = _session(plugins, callbacks={"early_stop": {"metric": metric}})
    message = _refusal(plugins, session)
    assert f"callback 'early_stop' cannot act on this run: metric {metric!r}" in message
    assert message.endswith("they hold: neg_elbo, recon, kl, mi, mi_he, au, test_prior_variance")


def test_early_stopping_on_a_metric_of_text_is_accepted_for_text(plugins, ptb):
    config = attrs.evolve(ptb.config, callbacks=small_config(plugins.registry, callbacks=PPL_STOP).callbacks)
    RunHooks(config, plugins.registry).check(ptb, plugins.registry)


@pytest.mark.parametrize("regularizer", ["aae", "infovae"])
def test_a_kl_schedule_on_a_regularizer_without_a_kl_weight_is_refused(plugins, regularizer):
    session = _session(plugins, regularizer={"name": regularizer}, callbacks={"cyclical_kl": {}})
    message = _refusal(plugins, session)
    assert f"regularizer {regularizer!r} has no KL weight" in message
    assert message.endswith("regularizers that use it: betavae, fb_masked, ncvae")


@pytest.mark.parametrize("regularizer", ["betavae", "ncvae"])
def test_a_kl_schedule_on_a_regularizer_with_a_kl_weight_is_accepted(plugins, regularizer):
    session = _session(plugins, regularizer={"name": regularizer}, callbacks={"cyclical_kl": {}})
    RunHooks(session.config, plugins.registry).check(session, plugins.registry)


#: Settings under which a regulariser's KL term is not zero on the small model of these tests: fb_masked's default
#: target (8 nats over the latent dims) masks every KL term of it.
KL_COUNTS = {"fb_masked": {"target": 0.0}}


def test_each_regularizer_declares_truly_whether_it_reads_the_kl_scale(plugins):
    """The declaration is the behaviour: the loss changes with ``Step.kl_scale`` exactly when it is declared."""
    for name, entry in plugins.registry.entries("regularizer").items():
        session = _session(plugins, regularizer={"name": name, **KL_COUNTS.get(name, {})})
        x = next(session.batches("train"))
        losses = []
        for scale in (1.0, 0.25):
            torch.manual_seed(0)
            record = session.model.forward_step(x, step=10, data=session.data, kl_scale=scale)
            losses.append(session.model.loss(record)[0].item())
        assert (losses[0] != losses[1]) == entry.cls.uses_kl_scale, name


def test_momentum_with_an_optimizer_that_ignores_it_is_refused(plugins):
    with pytest.raises(UsageError, match=r"train.momentum 0.5 applies to train.optimizer 'sgd' only; with 'adam'"):
        check_no_ignored_settings(small_config(plugins.registry, train={"momentum": 0.5}))
    check_no_ignored_settings(small_config(plugins.registry, train={"momentum": 0.5, "optimizer": "sgd"}))
    check_no_ignored_settings(small_config(plugins.registry))
    assert "train.momentum 0.5" in Validator(plugins.registry, None).skip_reason(
        merge_raw(small_raw(train={"momentum": 0.5}))
    )


@pytest.mark.parametrize(
    ("start", "total", "every", "left"),
    [(0, 40, 10, 4), (0, 12, 5, 3), (10, 12, 5, 1), (10, 10, 5, 0), (12, 12, 5, 0), (3, 4, 5, 1), (0, 5, 5, 1)],
)
def test_the_validations_left_are_those_the_trainer_writes(start, total, every, left):
    assert validations_left(start, total, every) == left
    assert left == sum(1 for step in range(start + 1, total + 1) if step % every == 0 or step == total)


# -- resumes ---------------------------------------------------------------------------------------------------
def _checkpointed_run(path: Path, step: int, stopped_early: bool = False):
    directory = RunDirectory(path)
    path.mkdir()
    save_checkpoint(directory.file(CHECKPOINT_NAME), {"step": step})
    if stopped_early:
        directory.record(STOPPED_EARLY, step)
    return directory


def test_a_resume_may_not_shorten_a_run(plugins, tmp_path):
    directory = _checkpointed_run(tmp_path / "run", step=20)
    config = small_config(plugins.registry)
    with pytest.raises(UsageError, match=r"cannot shorten run .*checkpoint is at step 20 .*asked is 19 steps"):
        _check_resume_length(directory, config, 19, {}, plugins)
    epochs = small_config(plugins.registry, train={"epochs": 1})
    with pytest.raises(UsageError, match=r"asked is train.epochs 1 \(16 steps\)"):
        _check_resume_length(directory, epochs, 16, {}, plugins)
    _check_resume_length(directory, config, 20, {}, plugins)
    _check_resume_length(directory, config, 21, {}, plugins)


def test_a_resume_may_not_train_an_early_stopped_run_on(plugins, tmp_path):
    directory = _checkpointed_run(tmp_path / "run", step=20, stopped_early=True)
    config = small_config(plugins.registry, callbacks={"early_stop": {}})
    lengthened = {"train.steps": [40, 60]}
    with pytest.raises(UsageError, match=r"stopped early at step 20 by its callbacks \(early_stop\)"):
        _check_resume_length(directory, config, 60, lengthened, plugins)
    _check_resume_length(directory, config, 40, {}, plugins)  # the length left alone: the trainer only evaluates
    _check_resume_length(directory, config, 20, {"train.steps": [40, 20]}, plugins)  # trains nothing more
    later = _checkpointed_run(tmp_path / "later", step=30)
    later.record(STOPPED_EARLY, 20)  # a stop the run has trained past is not in force
    _check_resume_length(later, config, 60, lengthened, plugins)


# -- suites ----------------------------------------------------------------------------------------------------
SUITE = """
[suite]
name = "checks"
columns = {columns}

[base.data]
name = "synthetic"
n_train = 128
n_valid = 64
n_test = 64
dim = 10

[base.train]
steps = 10
eval_every = 5

[axes]
"regularizer.beta" = [0.5, 1.0]
"train.seed" = [0]
"""


def _suite(tmp_path: Path, columns: list[str]) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(columns=json.dumps(columns)))
    return path


def test_a_suite_column_no_cell_reports_is_refused(plugins, tmp_path):
    from vaezoo_bench.matrix.expansion import expand

    suite = load_suite(_suite(tmp_path, ["mi", "ppl_elbo", "iw_nll"]))
    validator = Validator(plugins.registry, None)
    with pytest.raises(UsageError) as refused:
        check_columns(suite, expand(suite, None), validator)
    message = str(refused.value)
    assert "[suite] columns ppl_elbo: no cell reports it (ppl_elbo: only for token data (text))" in message
    assert "iw_nll, iw_nll_se, iw_examples, separability" in message  # what a cell does report
    reported = load_suite(_suite(tmp_path, ["mi", "separability", "iw_nll"]))
    check_columns(reported, expand(reported, None), validator)


def test_a_suite_column_no_plugin_registered_is_refused_with_every_metric_named(plugins, tmp_path):
    from vaezoo_bench.validate import check_metric_names

    suite = load_suite(_suite(tmp_path, ["mi", "ppl"]))
    with pytest.raises(UsageError) as refused:
        check_metric_names(suite, plugins.registry)
    message = str(refused.value)
    assert "[suite] columns ['ppl'] are not metrics a run reports; choose from: neg_elbo, recon, kl, mi," in message
    assert "ppl_elbo" in message and "separability" in message and len(message.splitlines()) == 1


def test_a_selection_metric_a_cell_does_not_report_skips_the_cell(plugins):
    from vaezoo_bench.matrix.model import Selection

    selection = Selection(("regularizer.beta",), {}, "max", "ppl_elbo", "valid", 1, None)
    validator = Validator(plugins.registry, None, (selection,))
    raw = merge_raw(small_raw())
    reason = validator.skip_reason(raw, select=0)
    assert reason is not None and reason.startswith("[select] metric 'ppl_elbo' is not in this cell's validation")
    assert validator.skip_reason(raw) is None  # an untuned cell does not need it
    early = merge_raw(small_raw(callbacks={"early_stop": {"metric": "iw_nll"}}))
    assert "callback 'early_stop' cannot act on this run: metric 'iw_nll'" in validator.skip_reason(early)


# -- real runs -------------------------------------------------------------------------------------------------
SMALL = ["--set", "data.n_train=256", "--set", "data.n_valid=64", "--set", "data.n_test=64", "--set", "data.dim=10"]
SMALL += ["--set", "train.eval_every=5", "--set", "eval.iw_samples=5", "--no-progress"]


def _one_line_refusal(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaezoo: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


STOP_ON = ["--callback", "early_stop", "--set"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        pytest.param([*STOP_ON, "callbacks.early_stop.metric=iw_nll"], ["metric 'iw_nll'"], id="early-stop-iw-nll"),
        pytest.param(
            [*STOP_ON, "callbacks.early_stop.metric=iw_nll", "--set", "eval.iw_samples=0"],
            ["metric 'iw_nll'", "never by a validation"],
            id="early-stop-iw-nll-without-iw",
        ),
        pytest.param(
            [*STOP_ON, "callbacks.early_stop.metric=ppl_elbo"], ["only for token data"], id="early-stop-ppl-of-vectors"
        ),
        pytest.param(
            ["--regularizer", "aae", "--callback", "cyclical_kl"],
            ["regularizer 'aae'", "use it: betavae, fb_masked, ncvae"],
            id="cyclical-kl-aae",
        ),
        pytest.param(
            ["--regularizer", "infovae", "--callback", "cyclical_kl"],
            ["regularizer 'infovae'"],
            id="cyclical-kl-infovae",
        ),
        pytest.param(
            ["--set", "train.momentum=0.9"], ["train.momentum 0.9 applies to train.optimizer 'sgd' only"], id="momentum"
        ),
    ],
)
def test_a_run_with_a_setting_that_cannot_act_is_refused_before_its_directory_exists(tmp_path, options, fragments):
    out = tmp_path / "run"
    for dry_run in ([], ["--dry-run"]):
        result = run_cli("run", "--steps", "20", *SMALL, *options, "--out", str(out), *dry_run)
        _one_line_refusal(result, *fragments)
        assert not out.exists()


@pytest.mark.slow
def test_a_resume_that_would_shorten_the_run_changes_nothing(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", "--steps", "20", *SMALL, "--out", str(out)).returncode == 0
    before = _snapshot(out)
    _one_line_refusal(run_cli("run", "--resume", str(out), "--steps", "10"), "checkpoint is at step 20", "10 steps")
    _one_line_refusal(run_cli("run", "--resume", str(out), "--epochs", "1"), "train.epochs 1 (4 steps)")
    assert _snapshot(out) == before


@pytest.mark.slow
def test_extending_an_early_stopped_run_is_refused_and_a_plain_resume_only_evaluates_it(tmp_path):
    out = tmp_path / "run"
    never_better = ["--callback", "early_stop", "--set", "callbacks.early_stop.patience=1"]
    never_better += ["--set", "callbacks.early_stop.min_delta=1e6"]
    assert run_cli("run", "--steps", "40", *SMALL, *never_better, "--out", str(out)).returncode == 0
    stopped = [e for e in RunDirectory(out).history() if e["event"] == STOPPED_EARLY]
    assert [e["step"] for e in stopped] == [10]
    before = _snapshot(out)
    result = run_cli("run", "--resume", str(out), "--steps", "100")
    _one_line_refusal(result, "stopped early at step 10 by its callbacks (early_stop)", "and no new length")
    assert _snapshot(out) == before
    (out / "results.json").unlink()  # as if its final evaluation had been interrupted
    finished = run_cli("run", "--resume", str(out), "--no-progress")  # the way out it names: only evaluates
    assert finished.returncode == 0, finished.stderr
    assert json.loads((out / "results.json").read_text())["steps"] == 10
    assert [e["event"] for e in RunDirectory(out).history()][-2:] == ["resumed", "finished"], "no training, no stop"
    assert max(line["step"] for line in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())) == 10


@pytest.mark.slow
def test_the_benchmark_runner_refuses_a_column_no_cell_reports(tmp_path):
    suite = _suite(tmp_path, ["mi", "ppl_elbo"])
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "vaezoo_bench.run", str(suite), "--out", str(out), "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[suite] columns ppl_elbo: no cell reports it" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_early_stopping_that_cannot_stop_the_run_is_noted_and_the_run_trains(tmp_path):
    out = tmp_path / "run"
    result = run_cli("run", "--steps", "12", *SMALL, "--callback", "early_stop", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "vaezoo: note: callback 'early_stop' cannot stop this run: it stops after 3 validations without "
        "improvement, and 3 of the run's validations are left (train.eval_every 5, 12 steps)"
    ) in result.stderr
    longer = run_cli("run", "--steps", "40", *SMALL, "--callback", "early_stop", "--out", str(tmp_path / "longer"))
    assert longer.returncode == 0 and "note: callback" not in longer.stderr


class LaplaceEncoder(Encoder):
    """A posterior that is not a diagonal Gaussian (He et al.'s MI estimator needs one)."""

    name = "laplace_test"

    def __init__(self, params, spec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        self.linear = torch.nn.Linear(spec.shape[0], 2 * latent_dim)

    def forward(self, x: torch.Tensor) -> Independent:
        loc, log_scale = self.linear(x).chunk(2, dim=-1)
        return Independent(Laplace(loc, log_scale.exp()), 1)


@hookimpl
def vaezoo_register(register) -> None:
    register(LaplaceEncoder)


def test_mi_he_only_for_diagonal_gaussian_posteriors_as_an_evaluation_finds():
    from vaezoo.evaluation.evaluate import evaluate_split

    with_laplace = load_plugins(extra=(sys.modules[__name__],))
    raw = small_raw()
    raw["encoder"] = {"name": "laplace_test"}
    session = open_session(resolve(merge_raw(raw), with_laplace.registry), with_laplace.registry, None)
    assert "mi_he" not in validation_metrics(session)
    assert set(validation_metrics(session)) == set(evaluate_split(session, "valid", "trained", iw_samples=0))
