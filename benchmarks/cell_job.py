"""One cell carried out, wherever an executor runs it: its vaezoo child processes, its cell.json, its job.

:class:`CellRunner` runs a cell through vaezoo's command line (``vaezoo run``, ``vaezoo run --resume``,
``vaezoo eval``) and writes its ``cell.json``. :class:`CellJob` is the unit every executor runs, in the runner's
process (``local``) or in a job on another host (``slurm``, ``ray``; the results directory is then on a file
system that host shares): it re-reads the run directory when it starts, so a job requeued after a preemption or
a time limit resumes from the checkpoint its previous attempt left (one that had finished training only
evaluates), and it runs the cell in a thread of its own so that the calling thread stays free to be told to
stop. Told to stop (a ``KeyboardInterrupt``: Ctrl-C or Ray's cancel; or submitit's checkpoint call on a
scheduler's signal), it interrupts its child, which writes a checkpoint of its last finished step and exits, and
ends without a cell.json: the cell stays pending and its next job resumes it, so nothing is trained twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import CHECKPOINT_NAME, METRICS_NAME, RESULTS_NAME, SCATTER_NAME, STOP_WITH_PARENT_ENV, read_json_lines
from vaezoo_bench.matrix.model import Cell
from vaezoo_bench.results import (
    CELL_NAME,
    CONFIG_IN_NAME,
    FAILED,
    JOB_NAME,
    LOG_NAME,
    OK,
    RUN_DIR,
    cell_dir,
    cell_record,
    read_job,
    read_results,
    write_json,
)

# What the runner does with a cell: nothing (finished), record it as invalid, evaluate a finished run again,
# continue a run from its checkpoint, or train from scratch.
DONE, SKIP, EVALUATE, RESUME, TRAIN = "done", "skip", "evaluate", "resume", "train"
ERROR_TAIL_LINES = 20
# A child stopped by SIGINT or SIGTERM (a scheduler's): it wrote its checkpoint, the cell resumes later.
INTERRUPTED_CODES = (130, 143, -signal.SIGINT, -signal.SIGTERM)
#: Seconds a stopping job waits for its child to write its checkpoint and exit.
STOP_GRACE_S = 120.0


@attrs.frozen
class Planned:
    """A cell, what the runner will do with it, why it is skipped (if so), its previous cell.json, and the examples
    its evaluations will average over (``{"valid": n, "test": n}``, recorded in its cell.json)."""

    cell: Cell
    action: str
    reason: str | None
    previous: dict[str, Any] | None
    examples: dict[str, int] | None = None


class Interrupted(Exception):
    """The runner is stopping; the cell stays pending."""


class StageFailed(Exception):
    """A child process of a cell failed; ``stage`` names it, the message holds its output's tail."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def stage_of(run: Path) -> str | None:
    """What a run directory still needs: EVALUATE when it has results, RESUME when it has a checkpoint (and no
    results, or damaged ones), None when it holds nothing trained (train from scratch)."""
    if read_results(run / RESULTS_NAME) is not None:
        return EVALUATE
    if (run / CHECKPOINT_NAME).exists():
        return RESUME
    return None


def failure_text(headline: str, output: str) -> str:
    """The error text of a failed child: a headline, then the tail of its output."""
    return "\n".join([headline, *output.strip().splitlines()[-ERROR_TAIL_LINES:]])


class CellRunner:
    """Runs cells through vaezoo's command line; thread-safe, one instance per matrix run."""

    def __init__(self, out: Path, data_dir: Path | None, threads: int, timeout: float | None) -> None:
        self.out, self.data_dir, self.timeout = out, data_dir, timeout
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
            STOP_WITH_PARENT_ENV: str(os.getpid()),
        }
        self.stopping = threading.Event()
        self._live: set[subprocess.Popen] = set()
        self._signalled: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    # -- child processes --------------------------------------------------------------------------
    def _vaezoo(self, stage: str, log: Path, *args: str) -> str:
        """Run ``python -m vaezoo ARGS``, append it and its output to ``log``, return its stdout."""
        if self.stopping.is_set():
            raise Interrupted
        command = [sys.executable, "-m", "vaezoo", *args]
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        # In a process group of its own, a child is stopped by this runner alone (once: see stop), not also by a
        # terminal's Ctrl-C, which reaches the whole foreground group; and it stops when this process dies.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            process_group=0,
        )
        with self._lock:
            self._live.add(process)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            timed_out = True
        finally:
            with self._lock:
                self._live.discard(process)
                self._signalled.discard(process)
        with log.open("a") as handle:
            handle.write(f"$ {' '.join(command)}\n{stdout}{stderr}[exit {process.returncode}]\n\n")
        if timed_out:
            raise StageFailed(stage, failure_text(f"timed out after {self.timeout:g} s (killed)", stderr or stdout))
        if process.returncode in INTERRUPTED_CODES or self.stopping.is_set():
            raise Interrupted
        if process.returncode != 0:
            raise StageFailed(stage, failure_text(f"exit status {process.returncode}", stderr or stdout))
        return stdout

    def stop(self) -> None:
        """Stop starting children and interrupt the running ones, once each (they keep their last checkpoint)."""
        self.stopping.set()
        with self._lock:
            for process in self._live - self._signalled:  # a second SIGINT would only be noted: send one
                process.send_signal(signal.SIGINT)
                self._signalled.add(process)

    # -- one cell ---------------------------------------------------------------------------------
    def run(self, planned: Planned) -> dict[str, Any] | None:
        """Carry out ``planned`` (not DONE or SKIP); the cell.json written (with the job that ran it, from
        ``job.json``), or None when interrupted."""
        cell, previous = planned.cell, planned.previous or {}
        directory = cell_dir(self.out, cell.id)
        run, log = directory / RUN_DIR, directory / LOG_NAME
        write_json(directory / CONFIG_IN_NAME, cell.raw)
        started = time.perf_counter()
        # Evaluations of a run that is not retrained stay valid; a retrained run is evaluated afresh.
        metrics: dict[str, dict[str, Any]] = dict(previous.get("test_priors", {})) if planned.action == EVALUATE else {}
        trained: dict[str, Any] = dict.fromkeys(("train", "valid", "curve", "latent_dim"))
        status, stage, error = OK, None, None
        try:
            results = self._trained_results(planned, run, log)
            trained = _training_outcome(run, results)
            if results["test_prior"] in cell.test_priors and results["test_prior"] not in metrics:
                metrics[results["test_prior"]] = results["metrics"]
            self._evaluate_missing(cell.test_priors, run, log, metrics)
        except Interrupted:
            return None
        except StageFailed as failure:
            status, stage, error = FAILED, failure.stage, str(failure)
        except Exception:  # a bug of the runner must not take the other cells down
            status, stage, error = FAILED, "runner", failure_text("error in the runner", traceback.format_exc())
        scatter = run / SCATTER_NAME
        record = cell_record(
            cell.id,
            cell.axes,
            status,
            attempts=previous.get("attempts", 0) + 1,
            error=error,
            stage=stage,
            wall_time_s=time.perf_counter() - started,
            test_priors=metrics,
            scatter=str(scatter.relative_to(directory)) if scatter.exists() else None,
            **trained,
            examples=planned.examples,
            job=read_job(directory) or None,
        )
        write_json(directory / CELL_NAME, record)
        return record

    def _trained_results(self, planned: Planned, run: Path, log: Path) -> dict[str, Any]:
        """Train or resume the cell's run as ``planned`` says (an evaluation needs neither), then its
        results.json; StageFailed when a child fails or the run left none."""
        if planned.action == TRAIN:
            config = str(run.parent / CONFIG_IN_NAME)
            # a run directory without a checkpoint holds nothing trained: start it afresh over what it left
            self._vaezoo("train", log, "run", "--config", config, "--out", str(run), "--overwrite", "--no-progress")
        elif planned.action == RESUME:
            self._vaezoo("resume", log, "run", "--resume", str(run), "--no-progress")
        results = read_results(run / RESULTS_NAME)
        if results is None:
            raise StageFailed(planned.action, f"the run left no {RESULTS_NAME} in {str(run)!r}")
        return results

    def _evaluate_missing(self, test_priors: Sequence[str], run: Path, log: Path, metrics: dict[str, Any]) -> None:
        """Evaluate the run under the ``test_priors`` that ``metrics`` lacks, all in one pass (the decoder's IW-NLL
        work is shared by the priors), adding their metrics; StageFailed when the child fails or leaves one out."""
        missing = ",".join(prior for prior in test_priors if prior not in metrics)
        if not missing:
            return
        stdout = self._vaezoo(f"eval:{missing}", log, "eval", str(run), "--test-prior", missing, "--json")
        for line in stdout.strip().splitlines():
            if line.startswith("{"):
                evaluated = json.loads(line)
                metrics[evaluated["test_prior"]] = {
                    k: v for k, v in evaluated.items() if k not in ("split", "test_prior")
                }
        unanswered = [prior for prior in test_priors if prior not in metrics]
        if unanswered:
            raise StageFailed(f"eval:{missing}", f"vaezoo eval printed no metrics for {', '.join(unanswered)}")


def _training_outcome(run: Path, results: dict[str, Any]) -> dict[str, Any]:
    """What a cell.json holds of the training run: ``train`` (steps, seed, wall time, test prior, metrics and the
    tested step), the validation ``curve``, the tested model's validation line ``valid``, and ``latent_dim``."""
    train = {k: results[k] for k in ("steps", "seed", "wall_time_s", "test_prior", "metrics")}
    train["tested_step"] = results.get("tested_step", results["steps"])
    curve = validation_lines(run)
    return {
        "train": train,
        "valid": tested_validation(curve, results),
        "curve": curve,
        "latent_dim": results["config"]["model"]["latent_dim"],
    }


def validation_lines(run: Path) -> list[dict[str, Any]]:
    """The run's validation lines (metrics.jsonl) in step order: its validation curve."""
    lines = [line for line in read_json_lines(run / METRICS_NAME) if "valid" in line]
    return sorted(lines, key=lambda line: line["step"])


def tested_validation(lines: list[dict[str, Any]], results: dict[str, Any]) -> dict[str, Any] | None:
    """The validation line of the tested model among ``lines`` (the last step's, or the best line's with
    ``train.test_model = "best"``): its step, the test prior its -ELBO and KL are under (the run's
    ``eval.test_prior``) and its metrics; None without a line."""
    if not lines:
        return None
    tested = results.get("tested_step", results["steps"])
    line = next((line for line in lines if line["step"] == tested), lines[-1])
    return {"step": line["step"], "test_prior": results["config"]["eval"]["test_prior"], "metrics": line["valid"]}


class CellJob:
    """What an executor runs for one cell: the planned cell and how to run its children (``data_dir``,
    ``threads`` per child, a child's ``timeout``). Picklable: submitit and Ray carry it to the job's process.

    Call it in a job's process (:meth:`__call__`); the local executor runs :meth:`run_with` in its own threads."""

    def __init__(self, planned: Planned, out: Path, data_dir: Path | None, threads: int, timeout: float | None) -> None:
        self.planned, self.out, self.data_dir, self.threads, self.timeout = planned, out, data_dir, threads, timeout
        self._runner: CellRunner | None = None
        self._worker: threading.Thread | None = None

    @property
    def cell_id(self) -> str:
        return self.planned.cell.id

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runner": None, "_worker": None}  # a live thread does not travel

    def current(self) -> Planned:
        """The plan as the run directory stands now: a requeued job resumes, or only evaluates, what its previous
        attempt left."""
        return attrs.evolve(self.planned, action=stage_of(cell_dir(self.out, self.cell_id) / RUN_DIR) or TRAIN)

    def run_with(self, runner: CellRunner) -> dict[str, Any] | None:
        """Run the cell in this thread through ``runner`` (whose ``stop`` interrupts it): its cell.json record,
        or None when interrupted."""
        return runner.run(self.current())

    def __call__(self) -> dict[str, Any] | None:
        """Run the cell in a job's process, the cell in a thread and this thread waiting for it, so that a
        ``KeyboardInterrupt`` or submitit's :meth:`checkpoint` reaches it here: the record, or None when stopped."""
        runner = self._runner = CellRunner(self.out, self.data_dir, self.threads, self.timeout)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["record"] = self.run_with(runner)
            except BaseException as error:  # handed to the job's thread below
                outcome["error"] = error

        self._worker = threading.Thread(target=work, name=f"cell {self.cell_id}", daemon=True)
        self._worker.start()
        try:
            while self._worker.is_alive():
                self._worker.join(0.5)
        except KeyboardInterrupt:
            self.stop()
            return None
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("record")

    def stop(self) -> None:
        """Interrupt the cell's child (it writes its checkpoint and exits) and wait for the cell's thread."""
        if self._runner is not None:
            self._runner.stop()
        if self._worker is not None:
            self._worker.join(STOP_GRACE_S)

    def checkpoint(self) -> Any:
        """submitit's hook when Slurm signals a preemption or the coming time limit: stop, then requeue this job
        unchanged; its next attempt resumes the run from the checkpoint just written."""
        import submitit  # only ever called inside a submitit job

        self.stop()
        return submitit.helpers.DelayedSubmission(self)


def note_job(directory: Path, **fields: Any) -> None:
    """Merge ``fields`` into the cell's ``job.json`` (executor, id, submitted, ended, the runner's process and
    whether the job outlives it), written by the runner only: the job a cell's latest attempt was given to, shown
    by ``vaezoo_bench.status`` and copied into its cell.json."""
    write_json(directory / JOB_NAME, {**read_job(directory), **fields})
