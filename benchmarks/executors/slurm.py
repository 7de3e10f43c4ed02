"""The ``slurm`` executor: each cell a Slurm job, submitted through submitit (``pip install 'vaezoo[slurm]'``).

A job runs :class:`vaezoo_bench.cell_job.CellJob` on a node; the results directory and the repository must be on a
file system the nodes share. When Slurm signals a job before its time limit (``signal_delay_s`` ahead) or, where
the cluster sets ``SlurmctldParameters=preempt_send_user_signal``, on a preemption, submitit calls the job's
``checkpoint``: the cell's child writes its checkpoint and exits, and submitit requeues the job, whose next
attempt resumes the run (at most ``max_timeouts`` times for time limits). ``cluster=local`` runs the same jobs
as processes of this machine through submitit's local executor: the same submission, signal and requeue path,
to try a suite or test it where there is no Slurm.
"""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import Future, wait
from typing import Any, ClassVar

import attrs

from vaezoo.api import UsageError, param
from vaezoo_bench.cell_job import STOP_GRACE_S, CellJob
from vaezoo_bench.executors import Context, Executor, Submission

#: Seconds between two looks at the jobs that have not ended (submitit rate-limits its sacct calls itself).
POLL_S = 1.0


@attrs.frozen
class SlurmOptions:
    """The ``--executor-option`` settings of the ``slurm`` executor (None: unset, Slurm or the executor decides)."""

    cluster: str = param(
        "slurm",
        help="slurm: submit with sbatch; local: run each job as a process here, through submitit",
        choices=("slurm", "local"),
    )
    partition: str | None = param(None, help="the Slurm partition")
    account: str | None = param(None, help="the Slurm account to charge")
    qos: str | None = param(None, help="the Slurm quality of service")
    constraint: str | None = param(None, help="a Slurm node constraint (features such as a GPU model)")
    time: int = param(240, help="a job's time limit in minutes; a longer cell checkpoints and is requeued", ge=1)
    gpus: int = param(0, help="GPUs per job", ge=0)
    cpus: int | None = param(None, help="CPUs per job (default: --threads)", ge=1)
    mem_gb: float | None = param(None, help="memory per job in GB (default: the partition's)", ge=0)
    signal_delay_s: int = param(90, help="seconds before the time limit at which a job checkpoints and requeues", ge=1)
    max_timeouts: int = param(3, help="how many times a job that reaches its time limit is requeued", ge=0)
    folder: str | None = param(None, help="submitit's folder of job scripts, pickles and logs (default: OUT/jobs/%j)")


class SlurmExecutor(Executor):
    """Cells as submitit jobs on Slurm (or, with ``cluster=local``, on this machine)."""

    name = "slurm"
    description = "Slurm jobs through submitit"

    jobs_outlive_runner: ClassVar[bool] = True  # sbatch jobs, and submitit's local processes, run on without it

    Params: ClassVar[type] = SlurmOptions

    def __init__(self, name: str, settings: dict[str, Any], context: Context) -> None:
        super().__init__(name, settings, context)
        self._live: dict[Any, Future] = {}  # submitit job -> its future, until it ends
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._closing = threading.Event()

    def start(self) -> None:
        submitit = self.require("submitit", "slurm")
        cluster, settings = self.settings["cluster"], self.settings
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise UsageError(
                f"executor {self.name!r}: sbatch is not on PATH (no Slurm on this machine); "
                "--executor-option cluster=local runs the jobs here through submitit"
            )
        folder = settings["folder"] or str(self.context.out / "jobs" / "%j")
        common = {"gpus_per_node": settings["gpus"], "signal_delay_s": settings["signal_delay_s"]}
        if cluster == "slurm":
            self.executor = submitit.SlurmExecutor(folder, max_num_timeout=settings["max_timeouts"])
            named = {key: settings[key] for key in ("partition", "account", "qos", "constraint") if settings[key]}
            memory = {} if settings["mem_gb"] is None else {"mem": f"{int(settings['mem_gb'] * 1024)}MB"}
            cpus = settings["cpus"] or self.context.threads
            self.executor.update_parameters(time=settings["time"], cpus_per_task=cpus, **common, **named, **memory)
        else:
            self.executor = submitit.LocalExecutor(folder, max_num_timeout=settings["max_timeouts"])
            self.executor.update_parameters(timeout_min=settings["time"], **common)
        self._poller = threading.Thread(target=self._poll, name="slurm jobs", daemon=True)
        self._poller.start()

    def submit(self, job: CellJob) -> Submission:
        if self.settings["cluster"] == "slurm":
            self.executor.update_parameters(job_name=f"vaezoo-{job.cell_id}")
        submitted = self.executor.submit(job)
        future: Future = Future()
        with self._lock:
            self._live[submitted] = future
        return Submission(future, str(submitted.job_id), lambda: _log_tail(submitted))

    def _poll(self) -> None:
        """Resolve each job's future once submitit says it is done."""
        while not self._closing.wait(POLL_S):
            with self._lock:
                live = list(self._live.items())
            for submitted, future in live:
                if not submitted.done():
                    continue
                with self._lock:
                    self._live.pop(submitted, None)
                try:
                    future.set_result(submitted.result())
                except Exception as error:  # the job failed: the runner records it with the log's tail
                    future.set_exception(error)

    def stop(self) -> None:
        """Cancel every job that has not ended (Slurm sends SIGTERM, which the cell's child answers with a
        checkpoint) and wait for them to end."""
        with self._lock:
            live = dict(self._live)
        for submitted in live:
            submitted.cancel(check=False)
        wait(live.values(), timeout=STOP_GRACE_S)

    def close(self) -> None:
        self._closing.set()
        if self._poller is not None:
            self._poller.join()


def _log_tail(submitted: Any) -> str:
    """The end of a job's own logs (submitit's and the job's output)."""
    return "\n".join(text for text in (submitted.stdout(), submitted.stderr()) if text)
