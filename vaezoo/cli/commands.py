"""The core's commands, ``vaezoo run | list | eval | sample``: a plugin of the entry-point group ``vaezoo`` like any
other, registering its command modules through ``vaezoo_commands``."""

from __future__ import annotations

from vaezoo.cli import evaluate, listing, run, sample
from vaezoo.plugins.hookspecs import hookimpl


@hookimpl
def vaezoo_commands(register) -> None:
    register("run", run)
    register("list", listing)
    register("eval", evaluate)
    register("sample", sample)
