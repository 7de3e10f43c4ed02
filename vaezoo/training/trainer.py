"""The training loop: checkpoints, validation lines, stopping and resuming.

A run directory (``vaezoo.runs.directory``) holds ``config.json``, ``history.jsonl``, ``metrics.jsonl`` (one line per
evaluation), ``checkpoint.pt`` and ``results.json`` (final test metrics, versions, seed, wall time), and what
evaluation plugins add (the synthetic task's ``latent_scatter.png``).

Nothing is lost: a checkpoint is written when a run starts (step 0), at every evaluation point before the
evaluation runs, and when SIGINT or SIGTERM stops the run (the checkpoint of the last finished step; a signal
during a step waits for the step to end). A checkpoint holds the training sums since the last validation line
and, at an evaluation point, the line still to be validated, so a resumed run writes exactly the lines and results
of a run straight through.

Determinism: the model is initialised after seeding, training batches are a pure function of (seed, epoch,
index), and evaluation runs under a forked RNG seeded from the run seed, so evaluating never perturbs training.

Launched by torchrun, the run is data-parallel (``vaezoo.training.distributed`` states the contract):
``train.batch_size``
is the global batch, each rank trains on its shard of it, and rank 0 alone evaluates, writes and prints.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
from tqdm import tqdm

from vaezoo.base.errors import TrainingDiverged, UsageError
from vaezoo.components.interfaces import Data
from vaezoo.config.run_config import RunConfig
from vaezoo.evaluation.evaluate import VALIDATION_IW_SAMPLES, evaluate_split
from vaezoo.evaluation.priors import check_test_prior_offered
from vaezoo.plugins.registry import Registry
from vaezoo.runs.checkpoint import (
    BEST_MODEL_NAME,
    CHECKPOINT_NAME,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from vaezoo.runs.directory import (
    METRICS_NAME,
    STOPPED_EARLY,
    RunDirectory,
    append_json_line,
    read_json_lines,
)
from vaezoo.runs.interrupts import Interrupted, StopSignals
from vaezoo.runs.session import Session, open_session, resolve_device, subnormals_flushed
from vaezoo.training.best import BestSoFar
from vaezoo.training.callbacks import RunHooks, RunInfo
from vaezoo.training.distributed import Context, StepFunction
from vaezoo.training.progress import TrainingProgress
from vaezoo.training.results import evaluate_and_write_results
from vaezoo.training.snapshot import checkpoint_state, restore_checkpoint_state, rng_state, seed_rank
from vaezoo.training.step import NonFiniteLoss
from vaezoo.training.strategy import TrainingBatch, TrainingStrategy, build_strategy

DEFAULT_STEPS = 3000


def total_steps(config: RunConfig, data: Data) -> int:
    if config.train.epochs is not None:
        return config.train.epochs * data.steps_per_epoch(config.train.batch_size)
    return config.train.steps if config.train.steps is not None else DEFAULT_STEPS


def _keep_metric_lines_up_to(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (they will be written again)."""
    if path.exists():
        kept = [record for record in read_json_lines(path) if record.get("step", step + 1) <= step]
        path.write_text("".join(f"{json.dumps(record)}\n" for record in kept))


def open_checked_session(
    config: RunConfig, registry: Registry, data_dir: Path | None, device: torch.device | None = None
) -> tuple[Session, RunHooks]:
    """The session of a run about to train and its callbacks, once every check a run makes before it creates
    anything has passed: its data and model build, its test prior is offered, and each callback can act on it."""
    session = open_session(config, registry, data_dir, device)
    check_test_prior_offered(session, config.eval.test_prior)
    hooks = RunHooks(config, registry)
    hooks.check(session, registry)
    return session, hooks


class Trainer:
    """Trains one run in ``run_dir``; ``run`` returns the final results (also written to results.json).

    ``context`` places the process in a data-parallel run (default: the only process). Everything that can be
    checked before training (data, model, devices, batch sizes, test prior, whether each callback can act on
    the run) is checked on construction.
    """

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        run_dir: Path,
        data_dir: Path | None,
        context: Context | None = None,
    ) -> None:
        self.context = context or Context()
        device = self.context.device(resolve_device(config.train.device))
        self.session, self.hooks = open_checked_session(config, registry, data_dir, device)
        self.config, self.data_dir, self.registry = config, data_dir, registry
        self.directory = RunDirectory(run_dir)
        self.context.check_batches(config.train.batch_size, self.session.data.size("train"))
        self.strategy = build_strategy(config, registry, self.session.model, self.session.data, self.context)
        self.run_info = RunInfo(run_dir, config, self.session.model, self.session.data, self.total_steps)
        self.progress = TrainingProgress()
        # Whether a callback stopped this run's training early at the step it resumes from.
        self.stopped_early = False
        # The lowest validation -ELBO so far, whose model best.pt holds (train.test_model = "best").
        self.best = BestSoFar("neg_elbo")
        seed_rank(self.context, config.train.seed, step=0)

    @property
    def run_dir(self) -> Path:
        return self.directory.path

    @property
    def total_steps(self) -> int:
        return total_steps(self.config, self.session.data)

    # -- checkpoints -------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint of the current step (every rank takes part; rank 0 writes)."""
        rank_rngs = self.context.gather(rng_state())
        if self.context.is_main:
            state = checkpoint_state(self.progress, self.session.model, self.strategy, rank_rngs)
            save_checkpoint(self.directory.file(CHECKPOINT_NAME), state)
        self.progress.saved_step = self.progress.step

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from the checkpoint ``state`` (see :func:`restore_checkpoint_state`)."""
        restore_checkpoint_state(
            state, self.progress, self.session.model, self.strategy, self.context, self.config.train.seed
        )

    # -- the run -----------------------------------------------------------------------------------
    def run(
        self, resume: bool = False, overwrite: bool = False, changes: dict[str, list[Any]] | None = None
    ) -> dict[str, Any]:
        """Train to the configured length and evaluate; the results on rank 0, else {}.

        ``resume`` continues from the directory's checkpoint (recording ``changes``, the settings changed for
        this resume, in the history); otherwise the directory must be empty, or ``overwrite`` replaces its run
        files. Rank 0 holds the directory's lock throughout. SIGINT or SIGTERM stops the run with a checkpoint
        of the last finished step and raises :class:`~vaezoo.runs.interrupts.Interrupted`.
        """
        lock = self.directory.locked("training") if self.context.is_main else contextlib.nullcontext()
        with lock, subnormals_flushed(self.config.train.flush_denormal), StopSignals() as signals:
            with signals.deferred():
                self._open(resume, overwrite, changes)
            with _stops_recorded(self._record, self.progress, self.run_dir):
                if signals.requested is not None:
                    raise Interrupted(signals.requested)
                if self._train(signals):
                    self._record(STOPPED_EARLY)
                results = self.finish() if self.context.is_main else {}
            self._record("finished")
            return results

    def _record(self, event: str, **fields: Any) -> None:
        if self.context.is_main:
            self.directory.record(event, self.progress.step, **fields)

    def _open(self, resume: bool, overwrite: bool, changes: dict[str, list[Any]] | None) -> None:
        """Check the directory under the lock, restore or start the run, and write its first files."""
        main, directory = self.context.is_main, self.directory
        if main:
            _prepare_directory(directory, resume, overwrite)
        if resume:
            self.restore(load_checkpoint(directory.file(CHECKPOINT_NAME)))
            # an early-stopped run has only its final evaluation left
            self.stopped_early = directory.stopped_early_at(self.progress.step)
        if main:
            _keep_metric_lines_up_to(directory.file(METRICS_NAME), self.progress.step if resume else -1)
            lines = read_json_lines(directory.file(METRICS_NAME))
            self.best.replay(lines, self.progress.step)
            _hand_over(self.strategy, lines)
            directory.write_config(self.config.as_dict())
            _record_start(directory, self.session, self.data_dir, self.progress.step, resume, changes)
        if not resume:
            self.save()
        self.run_info = attrs.evolve(self.run_info, start_step=self.progress.step)
        if main:
            self.hooks.started(self.run_info)

    def _train(self, signals: StopSignals) -> bool:
        """Train from the current step to the configured length, validating and checkpointing on the way;
        whether a callback stopped the training early."""
        show = self.config.train.progress and self.context.is_main
        started = time.perf_counter() - self.progress.wall_time
        self.session.model.train()
        # The DDP wrapper lives only while training, not in a traceback either: the process group must outlive it.
        forward = self.context.wrap(self.session.model)
        bar = tqdm(
            total=self.total_steps, initial=self.progress.step, desc="train", disable=not show, dynamic_ncols=True
        )
        try:
            if (
                self.context.is_main
                and self.progress.pending is not None
                and not _has_metrics_line(self.directory, self.progress.pending["step"])
            ):
                self._validate(self.progress.pending)  # a checkpoint written before its evaluation, which was cut short
            # Deferred throughout, between steps too: there the state is ahead of the checkpoint as well.
            with signals.deferred():
                while self.progress.step < self.total_steps and not self.stopped_early:
                    if self._advance(forward, signals, started, bar):
                        return True
            if signals.requested is not None:  # came after the last step's check; its checkpoint is written
                raise Interrupted(signals.requested)
            return False
        finally:
            bar.close()
            del forward

    def _advance(self, forward: StepFunction, signals: StopSignals, started: float, bar: tqdm) -> bool:
        """One training step and, at an evaluation point, a checkpoint and the validation line, in a deferred block
        of ``signals``. A stop signal waits until the step and its checkpoint are written, then raises Interrupted;
        every rank stops at the same step. Whether a callback asks to stop training early."""
        main = self.context.is_main
        logged = self._train_step(forward)
        bar.update(1)
        bar.set_postfix(loss=f"{logged['loss']:.2f}", kl=f"{logged['kl']:.3f}", refresh=False)
        if main:
            self.hooks.step_done(self.run_info, self.progress.step, logged)
        stop = self.context.any_rank(signals.requested is not None)
        at_eval = self.progress.step % self.config.train.eval_every == 0 or self.progress.step == self.total_steps
        if at_eval:
            self._close_interval()
        if at_eval or stop:
            self.progress.wall_time = time.perf_counter() - started
            self.save()
        if stop:
            raise Interrupted(signals.requested or signal.SIGTERM)
        if not at_eval:
            return False
        with signals.immediate():  # the checkpoint holds this state: a validation may be cut short
            return self.context.any_rank(main and self._validate(self.progress.pending))

    def _train_step(self, forward: StepFunction) -> dict[str, float]:
        """One training step on the next batch; the logged terms (also added to the interval's sums)."""
        step = self.progress.step
        kl_scale = self.hooks.kl_scale(self.run_info, step)
        try:
            logged = self.strategy.update(forward, training_batch(self.session, self.context, step, kl_scale))
        except NonFiniteLoss as error:
            checkpoint = self.directory.file(CHECKPOINT_NAME)
            raise TrainingDiverged(
                f"{error} at step {step}; stopped. The last good checkpoint (step "
                f"{load_checkpoint(checkpoint)['step']}) is kept in {str(checkpoint)!r}"
            ) from None
        self.progress.count_step(logged)
        return logged

    def _close_interval(self) -> None:
        """Turn the training sums since the last line into the next line, awaiting its validation."""
        sums_everywhere = self.context.mean_over_ranks(dict(self.progress.sums))
        self.progress.close_interval(sums_everywhere, self.session.data.steps_per_epoch(self.config.train.batch_size))

    def _validate(self, line: dict[str, Any]) -> bool:
        """Evaluate the validation split and append ``line`` with it to metrics.jsonl (rank 0's work); whether a
        callback asks to stop training.

        Rank 0 evaluates alone, exactly as one process would (same batches and seeded RNG, so MI's aggregate
        posterior is the same evaluation batch); the other ranks wait in their next collective."""
        valid = evaluate_split(self.session, "valid", self.config.eval.test_prior, iw_samples=VALIDATION_IW_SAMPLES)
        # best.pt before the line: a line on disk always has its model kept when it is the best
        if self.best.offer(line["step"], valid) and self.config.train.test_model == "best":
            save_checkpoint(
                self.directory.file(BEST_MODEL_NAME), {"step": line["step"], "model": self.session.model.state_dict()}
            )
        append_json_line(self.directory.file(METRICS_NAME), {**line, "valid": valid})
        self.strategy.evaluated(line["step"], valid)
        return self.hooks.evaluated(self.run_info, line["step"], "valid", valid)

    def finish(self) -> dict[str, Any]:
        """Test the model, write results.json and tell the callbacks (rank 0's work): the results."""
        results = evaluate_and_write_results(self.session, self.directory, self.config, self.progress)
        self.hooks.evaluated(self.run_info, self.progress.step, "test", results["metrics"])
        self.hooks.finished(self.run_info, results)
        return results


def training_batch(session: Session, context: Context, step: int, kl_scale: float) -> TrainingBatch:
    """Global step ``step`` of ``session``'s run for its training strategy: this process's shard of the step's
    batch on the run's device, and of each extra batch the strategy draws."""
    data, train = session.data, session.config.train

    def on_device(batch: torch.Tensor) -> torch.Tensor:
        return context.shard(batch).to(session.device)

    def extra(draw: int) -> torch.Tensor:
        return on_device(data.extra_train_batch(step, draw, train.batch_size, train.seed))

    epoch, index = divmod(step, data.steps_per_epoch(train.batch_size))
    x = on_device(data.train_batch(epoch, index, train.batch_size, train.seed))
    return TrainingBatch(x, step, data, kl_scale, extra)


def _hand_over(strategy: TrainingStrategy, lines: list[dict[str, Any]]) -> None:
    """Hand the validation ``lines`` a resumed run has to its training strategy: the state the strategy derives from
    them is rebuilt from them, not checkpointed."""
    for line in lines:
        strategy.evaluated(line["step"], line["valid"])


def _has_metrics_line(directory: RunDirectory, step: int) -> bool:
    return any(record.get("step") == step for record in read_json_lines(directory.file(METRICS_NAME)))


def _prepare_directory(directory: RunDirectory, resume: bool, overwrite: bool) -> None:
    """A resumed run's directory must hold a resumable run; a new run's must be empty (or ``overwrite`` it)."""
    if resume:
        directory.check_resumable()
    else:
        directory.check_new(overwrite)
        directory.clear_run_files()
    remove_stale_temporaries(directory.path)


def _record_start(
    directory: RunDirectory,
    session: Session,
    data_dir: Path | None,
    step: int,
    resume: bool,
    changes: dict[str, list[Any]] | None,
) -> None:
    """The history's line of a run that starts or resumes at ``step``, and the data's source lines on stderr."""
    data = session.data
    sources = {"data_sources": data.sources} if data.sources else {}
    where = str(data_dir.resolve()) if data_dir is not None else None
    event = "resumed" if resume else "started"
    directory.record(event, step, argv=sys.argv[1:], data_dir=where, changed=changes or {}, **sources)
    for line in data.source_lines():
        print(f"vaezoo: {line}", file=sys.stderr)


@contextlib.contextmanager
def _stops_recorded(record: Callable[..., None], progress: TrainingProgress, run_dir: Path) -> Iterator[None]:
    """``record`` in the history why training stopped short, and say in the error what is kept on disk."""
    where = str(run_dir)
    try:
        yield
    except Interrupted as stop:
        record("interrupted", signal=signal.Signals(stop.signum).name, checkpoint=progress.saved_step)
        raise
    except TrainingDiverged as diverged:
        record("diverged", error=str(diverged))
        if "checkpoint" in str(diverged):
            raise
        raise TrainingDiverged(
            f"{diverged} after step {progress.step}; stopped. Its checkpoint is in {where!r}"
        ) from None
    except UsageError as error:  # found after training began: say that the training is kept
        raise UsageError(
            f"{error}; the checkpoint of step {progress.step} is kept in {where!r} (evaluate it with vaezoo eval "
            f"{run_dir}, or continue it with --resume)"
        ) from None
