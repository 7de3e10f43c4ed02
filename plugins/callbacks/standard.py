"""Callbacks on a run's lifecycle: a CSV and a TensorBoard logger, cyclical and linear KL annealing, early stopping.

Each is added to a run with ``--callback NAME`` and configured with ``--set callbacks.NAME.PARAM=VALUE``; see
``vaezoo.api.Callback`` for the methods and when they are called.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import (
    METRICS_NAME,
    BestSoFar,
    Callback,
    UsageError,
    metric_catalogue,
    param,
    read_json_lines,
    validation_metrics,
)


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of a metrics mapping (booleans and text left out)."""
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class CSVLogger(Callback):
    """``train.csv`` (the training loss terms every ``every`` steps) and ``eval.csv`` (every evaluation) in the
    run directory. A resumed run first drops the rows written after its checkpoint, so no step appears twice."""

    name = "csv"
    description = "training losses and evaluations as CSV files in the run directory"

    @attrs.frozen
    class Params:
        every: int = param(10, ge=1, le=10**9, help="steps between rows of train.csv")

    def run_started(self, run) -> None:
        for name in ("train.csv", "eval.csv"):
            _drop_rows_after(run.run_dir / name, run.start_step)

    def step_done(self, run, step: int, logged: dict) -> None:
        if step % self.params.every == 0:
            _append_row(run.run_dir / "train.csv", {"step": step, **logged})

    def evaluated(self, run, step: int, split: str, metrics: dict) -> None:
        _append_row(run.run_dir / "eval.csv", {"step": step, "split": split, **_numbers(metrics)})


def _append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` under the file's header, writing the header first in a new file. Columns are fixed by the
    first row; a later row's extra keys are left out and its missing ones are empty."""
    header = _header(path) or list(row)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        if handle.tell() == 0:
            writer.writeheader()
        writer.writerow(row)


def _header(path: Path) -> list[str] | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(newline="") as handle:
        return next(csv.reader(handle), None)


def _drop_rows_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = _header(path) or []
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(row for row in rows if int(row["step"]) <= step)


class TensorBoardLogger(Callback):
    """TensorBoard event files in ``RUN_DIR/tensorboard``: ``train/TERM`` every ``every`` steps, ``valid/METRIC``
    and ``test/METRIC`` at every evaluation. Needs the ``tensorboard`` package (``pip install 'vaezoo[tensorboard]'``).
    A resumed run purges the events written after its checkpoint."""

    name = "tensorboard"
    description = "training losses and evaluations as TensorBoard scalars (needs the tensorboard extra)"

    @attrs.frozen
    class Params:
        every: int = param(10, ge=1, le=10**9, help="steps between training scalars")

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(
                "callback 'tensorboard' needs the tensorboard package: pip install 'vaezoo[tensorboard]'"
            ) from None
        self._writer_class = SummaryWriter
        self.writer = None

    def run_started(self, run) -> None:
        self.writer = self._writer_class(log_dir=str(run.run_dir / "tensorboard"), purge_step=run.start_step + 1)

    def step_done(self, run, step: int, logged: dict) -> None:
        if step % self.params.every == 0:
            for name, value in logged.items():
                self.writer.add_scalar(f"train/{name}", value, step)

    def evaluated(self, run, step: int, split: str, metrics: dict) -> None:
        for name, value in _numbers(metrics).items():
            self.writer.add_scalar(f"{split}/{name}", value, step)
        self.writer.flush()

    def run_finished(self, run, results: dict) -> None:
        self.writer.close()


class CyclicalKLAnnealing(Callback):
    """The cyclical schedule of Fu et al. (2019) on the KL weight β of any regulariser that has one.

    The run's steps are cut into ``cycles`` equal cycles; within each, the factor on β rises linearly from 0 to 1
    over the first ``ratio`` of the cycle and stays at 1 for the rest (docs/maths.md section 1). A run whose
    regulariser reads no KL scale (``Regularizer.uses_kl_scale`` False: aae, infovae) is refused before training."""

    name = "cyclical_kl"
    description = "cyclical annealing of the KL weight beta (Fu et al. 2019)"
    changes_training = True

    @attrs.frozen
    class Params:
        cycles: int = param(4, ge=1, le=10**6, help="cycles over the run's steps")
        ratio: float = param(0.5, ge=1e-6, le=1, help="fraction of each cycle over which beta rises from 0 to 1")

    def incompatibility(self, session, registry) -> str | None:
        return _unscaled_kl(session, registry)

    def kl_scale(self, run, step: int) -> float:
        return cyclical_factor(step, run.total_steps, self.params.cycles, self.params.ratio)


def _unscaled_kl(session, registry) -> str | None:
    """Why a KL schedule cannot act on the run of ``session``: its regulariser reads no ``Step.kl_scale``."""
    chosen = session.config.regularizer.name
    if session.model.regularizer.uses_kl_scale:
        return None
    users = [name for name, entry in registry.entries("regularizer").items() if entry.cls.uses_kl_scale]
    return (
        f"regularizer {chosen!r} has no KL weight that a schedule scales (it does not read Step.kl_scale), so "
        f"the schedule would change nothing; regularizers that use it: {', '.join(users) or '(none registered)'}"
    )


def cyclical_factor(step: int, total_steps: int, cycles: int, ratio: float) -> float:
    """The factor on β at ``step`` (from 0) of ``total_steps``: ``min(1, tau / ratio)`` with ``tau`` the position
    within the current cycle, from 0 to 1."""
    period = total_steps / cycles
    tau = math.fmod(step, period) / period
    return min(1.0, tau / ratio)


class LinearKLAnnealing(Callback):
    """Linear KL annealing: the factor on β rises from ``start`` at step ``begin`` to 1 at step ``begin + steps`` and
    stays at 1; before ``begin`` it is ``start`` (docs/maths.md "Autoencoder pretraining and free bits").

    This is the warm-up of He et al. (2019) and Li et al. (2019), ``kl_weight = min(1, kl_weight + rate)`` once
    per batch with ``rate = (1 - kl_start) / (warm_up * N / batch_size)``: their ``kl_start`` is ``start`` (0 in
    Li et al.'s recipe, 0.1 in He et al.'s), and ``warm_up`` epochs are ``steps = warm_up * steps_per_epoch``
    (``steps_per_epoch`` = ceil(N / train.batch_size) here; their N / batch_size is the nominal count, so their
    ramp ends a little before ``warm_up`` epochs of bucketed batches). Kim et al. (2018) add
    ``1 / (warmup * n_batches)`` from 0.1, which is ``start = 0.1`` with ``steps = 0.9 * warmup * n_batches``. All
    three add the increment before each step, so their k-th step of the ramp (from 0) has the factor ours has at
    step ``begin + k + 1``: theirs is one step ahead. Steps are counted from 0 (the step of ``kl_scale``); after
    autoencoder pretraining (strategy ``pretrain`` with ``steps = S``) the first step of the VAE is step S, so
    ``begin = S``. A run whose regulariser reads no KL scale is refused before training."""

    name = "linear_kl"
    description = "linear annealing of the KL weight beta from start to 1 (He et al., Li et al. 2019)"
    changes_training = True

    @attrs.frozen
    class Params:
        start: float = param(0.0, ge=0, le=1, help="factor on beta up to and at step begin (their kl_start)")
        steps: int = param(1000, ge=1, le=10**9, help="steps over which the factor rises from start to 1")
        begin: int = param(0, ge=0, le=10**9, help="first step of the ramp (after a pretraining phase: its steps)")

    def incompatibility(self, session, registry) -> str | None:
        return _unscaled_kl(session, registry)

    def kl_scale(self, run, step: int) -> float:
        return linear_factor(step, self.params.start, self.params.steps, self.params.begin)


def linear_factor(step: int, start: float, steps: int, begin: int) -> float:
    """The factor on β at ``step`` (from 0): ``start + (1 - start) * min(1, (step - begin) / steps)`` from
    ``begin`` on, ``start`` before."""
    if step < begin:
        return start
    return start + (1.0 - start) * min(1.0, (step - begin) / steps)


class EarlyStopping(Callback):
    """Stops training when a validation metric has not improved for ``patience`` evaluations in a row, watching the
    validation lines from step ``begin`` on. A pretraining phase (strategy ``pretrain``, ``steps = S``) ends with a
    decoder reset that makes the validation loss jump, so its lines must not be watched: the line of step S, after S
    steps, is still the pretrained model's, and ``begin = S + 1`` leaves it out. A resumed run counts from its
    validation lines, so it stops where the run straight through would have. With ``train.test_model = "best"`` the
    test metrics are those of the best validation -ELBO's model. A metric the run's validation lines will not hold
    (IW-NLL, perplexities of images, ...) is refused before training."""

    name = "early_stop"
    description = "stop training when a validation metric stops improving"
    changes_training = True

    @attrs.frozen
    class Params:
        metric: str = param("neg_elbo", help="validation metric to watch (any registered metric: vaezoo list metric)")
        mode: str = param(
            "auto",
            choices=("auto", "min", "max"),
            help="whether lower (min) or higher (max) is better; auto: as the metric declares",
        )
        patience: int = param(3, ge=1, le=10**6, help="evaluations without improvement before stopping")
        min_delta: float = param(0.0, ge=0, le=10**6, help="smallest change that counts as an improvement")
        begin: int = param(
            0,
            ge=0,
            le=10**9,
            help="validation lines of steps before this one neither count towards patience nor set the best value; "
            "after a pretraining phase of S steps, S + 1 (the line of step S is the model before its decoder reset)",
        )

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.mode = "min" if params.mode == "auto" else params.mode  # auto: decided from the metric, before training
        self.best = BestSoFar(params.metric, self.mode, params.min_delta)

    def incompatibility(self, session, registry) -> str | None:
        """Refuse, before training, a metric no plugin registered or one the run's validation lines will not hold;
        resolve ``mode = auto`` from the metric's direction."""
        metric = self.params.metric
        catalogue = metric_catalogue(session.metrics)
        if metric not in catalogue:
            return f"metric {metric!r} is not a metric vaezoo reports; choose one of: {', '.join(catalogue)}"
        if self.params.mode == "auto":
            self.mode = "max" if catalogue[metric]["higher_is_better"] else "min"
        if validation_metrics(session, among=[metric]):  # asks only what this metric depends on
            return None
        reported = validation_metrics(session)
        return (
            f"metric {metric!r} is not in its validation lines (it is reported {catalogue[metric]['when']}); they "
            f"hold: {', '.join(reported)}"
        )

    def run_started(self, run) -> None:
        """Rebuild the count from the run's validation lines, and say so on stderr when the validations left are
        too few to ever stop (a note, not an error: a suite's short profile may keep the callback of its long one)."""
        self.best = BestSoFar(self.params.metric, self.mode, self.params.min_delta)
        lines = read_json_lines(run.run_dir / METRICS_NAME)
        self.best.replay([line for line in lines if line.get("step", 0) >= self.params.begin], run.start_step)
        watched_from = max(run.start_step, self.params.begin - 1)  # the lines this callback will still be shown
        left = validations_left(watched_from, run.total_steps, run.config.train.eval_every)
        # the first validation sets the best; each one after it without improvement counts towards patience
        needed = self.params.patience + (1 if self.best.value is None else -self.best.waited)
        if left < needed:
            print(
                f"vaezoo: note: callback 'early_stop' cannot stop this run: it stops after {self.params.patience} "
                f"validations without improvement, and {left} of the run's validations are left "
                f"(train.eval_every {run.config.train.eval_every}, {run.total_steps} steps)",
                file=sys.stderr,
            )

    def evaluated(self, run, step: int, split: str, metrics: dict) -> bool:
        if split != "valid" or step < self.params.begin:
            return False
        if self.params.metric not in metrics:
            raise UsageError(
                f"callback 'early_stop': metric {self.params.metric!r} is not reported; choose one of: "
                f"{', '.join(sorted(_numbers(metrics)))}"
            )
        self.best.offer(step, metrics)
        return self.best.waited >= self.params.patience


def validations_left(start_step: int, total_steps: int, eval_every: int) -> int:
    """How many validation lines a run writes after ``start_step``: one at every multiple of ``eval_every`` up to
    ``total_steps``, and one at ``total_steps``."""
    if total_steps <= start_step:
        return 0
    return total_steps // eval_every - start_step // eval_every + (1 if total_steps % eval_every else 0)
