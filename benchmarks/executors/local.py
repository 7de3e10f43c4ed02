"""The ``local`` executor: each cell in a thread of the runner's process, its children on this machine."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from vaezoo_bench.cell_job import CellJob, CellRunner
from vaezoo_bench.executors import Context, Executor, Submission


class LocalExecutor(Executor):
    """Up to ``--jobs`` cells at once in threads of this process; stopping interrupts their children (each
    writes its checkpoint). No options."""

    name = "local"
    description = "threads of the runner's process, one child process per cell"

    def __init__(self, name: str, settings: dict, context: Context) -> None:
        super().__init__(name, settings, context)
        self.runner = CellRunner(context.out, context.data_dir, context.threads, context.timeout)
        self.pool = ThreadPoolExecutor(max_workers=context.jobs)

    def submit(self, job: CellJob) -> Submission:
        return Submission(self.pool.submit(job.run_with, self.runner))

    def stop(self) -> None:
        self.runner.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
