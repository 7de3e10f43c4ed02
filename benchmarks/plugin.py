"""The benchmark runner as a plugin of the entry-point group ``vaezoo``: the ``vaezoo bench`` command and the
executors ``local``, ``slurm`` and ``ray``. Imported by every ``vaezoo`` invocation, so it imports nothing heavy;
the executors are imported when the components are registered."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_commands(register) -> None:
    from vaezoo_bench import cli

    register("bench", cli)


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_bench.executors.local import LocalExecutor
    from vaezoo_bench.executors.ray_cluster import RayExecutor
    from vaezoo_bench.executors.slurm import SlurmExecutor

    for executor in (LocalExecutor, SlurmExecutor, RayExecutor):
        register(executor)
