"""The ``ray`` executor: each cell a Ray task on a Ray cluster (``pip install 'vaezoo[ray]'``).

The runner connects to the cluster at ``address`` (``ray start --head`` prints it) and submits one task per cell,
asking for ``cpus`` (default: ``--threads``), ``gpus`` and ``memory_gb``; Ray places each task on a node with
room. The workers must reach the repository and the results directory at the same paths (a shared file system)
and have vaezoo installed; the runner puts the repository on their ``PYTHONPATH``. A task whose worker or node
dies is rerun by Ray (``max_retries``) and resumes its run from the checkpoint; the runner's Ctrl-C cancels the
tasks, whose cells checkpoint. Without ``address`` a Ray instance is started for the run on this machine.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import wait
from pathlib import Path
from typing import Any, ClassVar

import attrs

import vaezoo_bench
from vaezoo.api import UsageError, param
from vaezoo_bench.cell_job import STOP_GRACE_S, CellJob
from vaezoo_bench.executors import Context, Executor, Submission

#: Seconds to wait for a cluster's address to answer before giving up (Ray itself retries for minutes).
CONNECT_TIMEOUT_S = 10.0


def _check_reachable(name: str, address: str | None) -> None:
    """A UsageError at once when nothing listens at ``HOST:PORT`` (``auto``, ``ray://`` and no address are left
    to Ray)."""
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"executor {name!r}: address must be HOST:PORT, auto or ray://HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UsageError(
            f"executor {name!r} could not connect to the Ray cluster at {address!r}: {error.strerror or error}"
        ) from None


def run_cell(job: CellJob) -> dict[str, Any] | None:
    """The task: run the cell in the worker (Ray's cancel arrives as a KeyboardInterrupt, which stops it)."""
    return job()


@attrs.frozen
class RayOptions:
    """The ``--executor-option`` settings of the ``ray`` executor (None: unset, Ray or the executor decides)."""

    address: str | None = param(
        None, help="the cluster's address (HOST:PORT, or auto); default: a Ray instance for this run"
    )
    cpus: float | None = param(None, help="CPUs a cell asks of Ray (default: --threads)", ge=0)
    gpus: float = param(0.0, help="GPUs a cell asks of Ray", ge=0)
    memory_gb: float | None = param(None, help="memory a cell asks of Ray, in GB", ge=0)
    max_retries: int = param(3, help="reruns of a cell whose worker or node died (it resumes)", ge=0)


class RayExecutor(Executor):
    """Cells as Ray tasks on a Ray cluster."""

    name = "ray"
    description = "Ray tasks on a Ray cluster"

    Params: ClassVar[type] = RayOptions

    def __init__(self, name: str, settings: dict[str, Any], context: Context) -> None:
        super().__init__(name, settings, context)
        self._live: dict[Any, Any] = {}  # ObjectRef -> its future, until it ends
        self._lock = threading.Lock()

    def start(self) -> None:
        ray = self.ray = self.require("ray", "ray")
        repository = str(Path(vaezoo_bench.__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (repository, os.environ.get("PYTHONPATH", "")) if p)
        address = self.settings["address"]
        _check_reachable(self.name, address)
        try:
            ray.init(
                address=address,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
                log_to_driver=False,
                logging_level="ERROR",
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"executor {self.name!r} could not connect to {where}: {first}") from None
        settings = self.settings
        memory = settings["memory_gb"]
        self.task = ray.remote(run_cell).options(
            num_cpus=settings["cpus"] if settings["cpus"] is not None else self.context.threads,
            num_gpus=settings["gpus"],
            memory=None if memory is None else int(memory * 1e9),
            max_retries=settings["max_retries"],
            retry_exceptions=False,
        )

    def submit(self, job: CellJob) -> Submission:
        ref = self.task.remote(job)
        future = ref.future()
        with self._lock:
            self._live[ref] = future
        future.add_done_callback(lambda _: self._forget(ref))
        return Submission(future, ref.task_id().hex())

    def _forget(self, ref: Any) -> None:
        with self._lock:
            self._live.pop(ref, None)

    def stop(self) -> None:
        """Cancel every task that has not ended: a running one gets a KeyboardInterrupt, which stops its cell's
        child (it checkpoints); wait for them to end."""
        with self._lock:
            live = dict(self._live)
        for ref in live:
            self.ray.cancel(ref)
        wait(live.values(), timeout=STOP_GRACE_S)

    def close(self) -> None:
        if getattr(self, "ray", None) is not None and self.ray.is_initialized():
            self.ray.shutdown()
