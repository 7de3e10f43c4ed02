"""Run lifecycle hooks and the built-in callbacks: CSV and TensorBoard logs, cyclical KL annealing, early stopping."""

from __future__ import annotations

import csv
import json

import attrs
import pytest

from tests.conftest import run_cli, small_config
from vaezoo import hookimpl
from vaezoo.evaluation.evaluate import evaluate_split
from vaezoo.plugins.loading import load_plugins
from vaezoo.runs.checkpoint import load_checkpoint
from vaezoo.runs.session import load_trained
from vaezoo.training.best import BestSoFar
from vaezoo.training.callbacks import Callback, RunHooks
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.callbacks.standard import cyclical_factor


def read_csv(path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_cyclical_factor_rises_linearly_over_the_first_part_of_each_cycle():
    # 100 steps, 4 cycles of 25 steps, rising over the first half (12.5 steps)
    factors = [cyclical_factor(step, 100, 4, 0.5) for step in range(100)]
    assert factors[0] == 0 and factors[25] == 0 and factors[50] == 0 and factors[75] == 0
    assert factors[5] == pytest.approx(5 / 12.5) and factors[30] == pytest.approx(5 / 12.5)
    assert factors[13:25] == [1.0] * 12 and max(factors) == 1.0
    assert cyclical_factor(7, 100, 1, 1.0) == pytest.approx(0.07)  # one cycle rising all the way: linear warm-up


class Half(Callback):
    name = "half"

    def kl_scale(self, run, step: int) -> float:
        return 0.5


def test_kl_factors_of_several_callbacks_multiply(registry):
    plugins = load_plugins(extra=(_Registering(Half),))
    assert not plugins.failures, plugins.failures
    config = small_config(plugins.registry, callbacks={"half": {}, "cyclical_kl": {"cycles": 1, "ratio": 1.0}})
    hooks = RunHooks(config, plugins.registry)
    assert hooks.kl_scale(attrs.make_class("Run", {"total_steps": attrs.field(default=10)})(), 4) == 0.5 * 0.4


def test_a_misspelt_callback_method_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"step_finished, which is no method of a callback; its methods are .*step_do"):

        class Misspelt(Callback):
            name = "misspelt"

            def step_finished(self, run, step: int) -> None:
                pass

    class Private(Callback):  # helpers with a leading underscore are the callback's own business
        name = "private"

        def _helper(self) -> None:
            pass


class LifecycleHookAtPluginLevel:
    """A plugin implementing a run's lifecycle as a plugin hook: nobody would call it."""

    @hookimpl
    def vaezoo_step_done(self, run, step: int, logged: dict) -> None:
        pass


def test_a_plugin_implementing_a_hook_nobody_calls_is_refused_by_name():
    plugins = load_plugins(extra=(LifecycleHookAtPluginLevel(),))
    [failure] = plugins.failures
    # an entry-point plugin is named by its entry point (tests/test_plugins.py); this object, by its class
    assert "unknown hook 'vaezoo_step_done'" in failure.error and "LifecycleHookAtPluginLevel" in failure.error
    assert plugins.registry.names("regularizer"), "the other plugins still load"


class _Registering:
    """A plugin object registering the given component classes."""

    def __init__(self, *classes: type) -> None:
        self.classes = classes

    @hookimpl
    def vaezoo_register(self, register) -> None:
        for cls in self.classes:
            register(cls)


@pytest.mark.slow
def test_csv_and_tensorboard_logs_and_the_cyclical_schedule_in_a_real_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = run_cli(
        "run", "--steps", "40", "--out", str(out), "--no-progress", "--set", "data.dim=10", "--set", "data.n_train=256",
        "--set", "data.n_valid=64", "--set", "data.n_test=64", "--set", "eval.iw_samples=5", "--set",
        "train.eval_every=20", "--set", "train.threads=1", "--callback", "csv", "--callback", "tensorboard",
        "--callback", "cyclical_kl", "--set", "callbacks.csv.every=4", "--set", "callbacks.tensorboard.every=4",
        "--set", "callbacks.cyclical_kl.cycles=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = read_csv(out / "train.csv")
    assert [int(row["step"]) for row in rows] == list(range(4, 41, 4))
    for row in rows:  # betavae with beta = 1: beta_kl / kl is the schedule's factor at the step's index
        expected = cyclical_factor(int(row["step"]) - 1, 40, 2, 0.5)
        assert float(row["beta_kl"]) == pytest.approx(expected * float(row["kl"]), rel=1e-5, abs=1e-7)
    evaluations = [(int(row["step"]), row["split"]) for row in read_csv(out / "eval.csv")]
    assert evaluations == [(20, "valid"), (40, "valid"), (40, "test")]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    loss = [(event.step, event.value) for event in events.Scalars("train/loss")]
    assert [step for step, _ in loss] == list(range(4, 41, 4))
    assert [v for _, v in loss] == pytest.approx([float(row["loss"]) for row in rows], rel=1e-6)
    valid = [(event.step, event.value) for event in events.Scalars("valid/neg_elbo")]
    assert valid == [(line["step"], pytest.approx(line["valid"]["neg_elbo"], rel=1e-6)) for line in lines]
    test = json.loads((out / "results.json").read_text())["metrics"]
    assert events.Scalars("test/iw_nll")[0].value == pytest.approx(test["iw_nll"], rel=1e-6)


@pytest.mark.slow
def test_a_resumed_run_drops_log_rows_written_after_its_checkpoint(registry, tmp_path):
    logged = {"callbacks": {"csv": {"every": 5}}}
    Trainer(small_config(registry, **logged), registry, tmp_path / "straight", None).run()
    stopped = tmp_path / "stopped"
    Trainer(small_config(registry, train={"steps": 20}, **logged), registry, stopped, None).run()
    with (stopped / "train.csv").open("a") as handle:  # rows a killed run wrote after its last checkpoint
        handle.write("25,1,1,1,1\n30,1,1,1,1\n")
    Trainer(small_config(registry, **logged), registry, stopped, None).run(resume=True)
    assert read_csv(stopped / "train.csv") == read_csv(tmp_path / "straight" / "train.csv")


@pytest.mark.slow
def test_early_stopping_ends_training_and_the_run_still_finishes(registry, tmp_path):
    never_good_enough = {"early_stop": {"patience": 1, "min_delta": 1e6}}
    config = small_config(registry, train={"steps": 40, "eval_every": 10}, callbacks=never_good_enough)
    results = Trainer(config, registry, tmp_path, None).run()
    assert results["steps"] == 20  # the second evaluation did not improve on the first by 1e6
    events = [json.loads(line)["event"] for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert events == ["started", "stopped_early", "finished"]


@pytest.mark.slow
def test_a_resume_may_add_a_logger_but_not_a_schedule(tmp_path):
    out = tmp_path / "run"
    tiny = [
        "--set", "data.dim=10", "--set", "data.n_train=128", "--set", "data.n_valid=32", "--set", "data.n_test=32",
        "--set", "eval.iw_samples=2", "--set", "train.threads=1", "--set", "train.eval_every=10", "--no-progress",
    ]  # fmt: skip
    assert run_cli("run", *tiny, "--steps", "10", "--out", str(out)).returncode == 0
    refused = run_cli("run", "--resume", str(out), "--callback", "cyclical_kl")
    assert refused.returncode == 2 and "callbacks.cyclical_kl None -> {'cycles': 4, 'ratio': 0.5}" in refused.stderr
    logged = run_cli("run", "--resume", str(out), "--steps", "20", "--callback", "csv", "--no-progress")
    assert logged.returncode == 0, logged.stderr
    assert [int(row["step"]) for row in read_csv(out / "train.csv")] == [20]


def test_best_so_far_takes_only_real_improvements_and_replays_lines_in_step_order():
    lowest = BestSoFar("neg_elbo", "min", min_delta=0.5)
    assert lowest.offer(10, {"neg_elbo": 100.0}) and (lowest.value, lowest.step, lowest.waited) == (100.0, 10, 0)
    assert not lowest.offer(20, {"neg_elbo": 99.6})  # better, but not by more than min_delta
    assert not lowest.offer(30, {"neg_elbo": float("nan")}) and not lowest.offer(40, {})  # never an improvement
    assert lowest.waited == 3 and lowest.offer(50, {"neg_elbo": 99.0}) and (lowest.step, lowest.waited) == (50, 0)
    highest = BestSoFar("mi", "max")
    assert highest.offer(1, {"mi": 0.1}) and not highest.offer(2, {"mi": 0.05}) and highest.offer(3, {"mi": 0.2})
    lines = [{"step": 30, "valid": {"mi": 0.3}}, {"step": 10, "valid": {"mi": 0.2}}, {"step": 20, "valid": {"mi": 0.1}}]
    lines.append({"step": 40, "valid": {"mi": 9.0}})  # after the checkpoint resumed from: not replayed
    replayed = BestSoFar("mi", "max").replay([*lines, {"step": 5, "train": {}}], up_to_step=30)
    assert (replayed.value, replayed.step, replayed.waited) == (-0.3, 30, 0)
    assert BestSoFar("mi", "max").replay(lines[1:3], up_to_step=30).waited == 1  # 10 was best, 20 did not improve


def _valid_lines(run_dir) -> list[dict]:
    return [line for line in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "valid" in line]


@pytest.mark.slow
def test_the_best_validation_model_is_tested_and_kept_and_eval_reads_it(registry, tmp_path):
    # 64 training examples at a high learning rate: the validation -ELBO turns up again before the last step
    overfitting = {"data": {"n_train": 64}, "train": {"steps": 60, "eval_every": 10, "lr": 3e-2, "test_model": "best"}}
    results = Trainer(small_config(registry, **overfitting), registry, tmp_path, None).run()
    lowest = min(_valid_lines(tmp_path), key=lambda line: line["valid"]["neg_elbo"])
    assert results["tested_step"] == lowest["step"] == load_checkpoint(tmp_path / "best.pt")["step"]
    assert results["tested_step"] < results["steps"] == load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 60
    session = load_trained(tmp_path, registry, None)  # what vaezoo eval evaluates
    again = evaluate_split(session, "test", "trained", iw_samples=session.config.eval.iw_samples)
    assert again["neg_elbo"] == pytest.approx(results["metrics"]["neg_elbo"], rel=1e-6)
    last = load_trained(tmp_path, registry, None, {"train": {"test_model": "last"}})
    assert evaluate_split(last, "test", "trained", iw_samples=0)["neg_elbo"] != pytest.approx(again["neg_elbo"])


@pytest.mark.slow
def test_a_resumed_run_stops_early_and_keeps_the_best_model_as_the_straight_run_does(registry, tmp_path):
    # min_delta 1e6: no line counts as an improvement on the first, so training stops at the third (step 30)
    stop = {"early_stop": {"patience": 2, "min_delta": 1e6}}

    def config(steps: int):
        return small_config(registry, train={"steps": steps, "eval_every": 10, "test_model": "best"}, callbacks=stop)

    straight = Trainer(config(60), registry, tmp_path / "straight", None).run()
    Trainer(config(20), registry, tmp_path / "resumed", None).run()  # one evaluation without improvement so far
    resumed = Trainer(config(60), registry, tmp_path / "resumed", None).run(resume=True)
    assert resumed["steps"] == straight["steps"] == 30
    assert resumed["tested_step"] == straight["tested_step"] and resumed["metrics"] == straight["metrics"]


@pytest.mark.slow
def test_the_command_line_says_which_step_it_tested(tmp_path):
    overfitting = ["data.n_train=64", "data.dim=20", "model.latent_dim=2", "encoder.hidden=32", "decoder.hidden=32"]
    overfitting += ["train.eval_every=10", "train.lr=3e-2", "train.test_model=best", "eval.iw_samples=20"]
    settings = [item for setting in overfitting for item in ("--set", setting)]
    done = run_cli("run", *settings, "--steps", "60", "--batch-size", "32", "--no-progress", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    tested = json.loads((tmp_path / "results.json").read_text())["tested_step"]
    assert tested < 60, "the validation -ELBO of this run turns up again before its last step"
    header = next(line for line in done.stdout.splitlines() if line.startswith("test metrics"))
    assert header.startswith("test metrics after 60 steps (")
    assert header.endswith(f" s of training), of the best model (step {tested}, train.test_model = best):")
