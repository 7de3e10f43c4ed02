"""Executors: where a suite's cells run; components of kind ``executor`` that plugins register.

The runner decides everything before a cell is handed over (its action, skips, the selection's phases) and an
executor only runs :class:`vaezoo_bench.cell_job.CellJob` objects and says when each has ended: ``local`` in threads
of the runner's process, ``slurm`` as submitit jobs, ``ray`` as Ray tasks. A job writes its cell's results into
the results directory itself, so every executor but ``local`` needs that directory (and the repository) on a file
system shared with the hosts that run the jobs, as Slurm and Ray clusters have.

A third party adds an executor as any component: a subclass of :class:`Executor` with a ``name``, registered by
the ``vaezoo_register`` hook of a plugin module named in the entry-point group ``vaezoo``::

    [project.entry-points.vaezoo]
    k8s = "vaezoo_k8s.plugin"

    # vaezoo_k8s/plugin.py
    @hookimpl
    def vaezoo_register(register):
        from vaezoo_k8s.executor import KubernetesExecutor

        register(KubernetesExecutor)

An executor declares its settings in :attr:`Executor.Params`, an attrs class of ``vaezoo.api.param`` fields as a
component's Params; ``--executor-option NAME=VALUE`` is checked against it before anything is submitted, with
one-line errors naming the choices.
"""

from __future__ import annotations

import abc
import importlib
import operator
import typing
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import attrs

from vaezoo.api import Component, Plugins, UsageError
from vaezoo_bench.cell_job import CellJob

DEFAULT = "local"
_KINDS = {int: "an integer", float: "a number", str: "a string"}
#: How a bound of ``param`` (``ge``, ``gt``, ``le``, ``lt``) reads in an option's error message.
_BOUND_WORDS = {">=": "at least", ">": "more than", "<=": "at most", "<": "less than"}
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@attrs.frozen
class NoOptions:
    """The options of an executor that has none."""


@attrs.frozen
class Context:
    """What the runner tells an executor: the results directory, how many cells may run at once (``--jobs``),
    torch threads per cell, the data directory every cell reads and a child process's time limit."""

    out: Path
    jobs: int
    threads: int
    data_dir: Path | None
    timeout: float | None


@attrs.frozen
class Submission:
    """A submitted job: a future of the cell's record (None when the job was stopped before the cell ended; an
    exception when the job itself failed), the engine's id for the job (None locally), and how to read the
    tail of the job's own log when it failed."""

    future: Future
    job_id: str | None = None
    log_tail: Callable[[], str] = lambda: ""


class Executor(Component, abc.ABC):
    """Runs cell jobs and reports each one's end; registered under its ``name``, as components are.

    ``settings`` holds every option of :attr:`Params` by name (given or default). :meth:`start` connects to the engine
    (raising UsageError when it is missing or refuses), :meth:`submit` hands over one job, :meth:`stop` asks
    every running job to stop (each interrupts its cell, which checkpoints, so the next run of the suite
    resumes it) and cancels queued ones, and :meth:`close` lets go of the engine."""

    #: The settings a user may give: a frozen attrs class of ``vaezoo.api.param`` fields, as a component's Params.
    #: A field's name is the option's, its type (``int``, ``float`` or ``str``, or one of them or None) what the
    #: text given is read as, its default the value when the option is not given (None: unset, the executor
    #: decides), its ``choices`` and bounds (``ge``, ``gt``, ``le``, ``lt``) what the value may be.
    kind: ClassVar[str] = "executor"
    Params: ClassVar[type] = NoOptions
    #: Whether a submitted job goes on when the runner's process dies (a Slurm job does; a local process pool or
    #: a Ray driver's tasks do not); ``vaezoo_bench.status`` shows such a job as queued only while its runner lives.
    jobs_outlive_runner: ClassVar[bool] = False

    def __init__(self, name: str, settings: Mapping[str, Any], context: Context) -> None:
        self.name, self.settings, self.context = name, dict(settings), context

    def start(self) -> None:
        """Connect to the engine; raise UsageError when it is missing or refuses."""

    @abc.abstractmethod
    def submit(self, job: CellJob) -> Submission:
        """Hand ``job`` to the engine."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every submitted job that has not ended: running cells checkpoint and end, queued ones never start."""

    def close(self) -> None:
        """Let go of the engine."""

    def require(self, module: str, extra: str) -> ModuleType:
        """Import the engine's library, or a one-line UsageError naming the extra that installs it."""
        try:
            return importlib.import_module(module)
        except ImportError:
            raise UsageError(
                f"executor {self.name!r} needs {module}, which is not installed: pip install 'vaezoo[{extra}]' "
                f"(in a checkout: pip install -e '.[{extra}]')"
            ) from None


def parse_settings(name: str, executor: type[Executor], pairs: Sequence[str]) -> dict[str, Any]:
    """Every option of ``executor`` by name: the ``NAME=VALUE`` pairs given, checked against its :attr:`Params`,
    and the defaults of the others; a one-line UsageError naming the pair and what it may be otherwise."""
    fields = {field.name: field for field in attrs.fields(executor.Params)}
    given = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"--executor-option expects NAME=VALUE, got {pair!r}")
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise UsageError(f"executor {name!r} has no option {key!r}; its options: {known}")
        given[key] = _option_value(f"option {key!r} of executor {name!r}", fields[key], _kind(executor, key), text)
    return attrs.asdict(executor.Params(**given))


def _kind(executor: type[Executor], option: str) -> type:
    """The type an option's text is read as: its annotation, without None."""
    annotation = typing.get_type_hints(executor.Params)[option]
    return next(kind for kind in (*typing.get_args(annotation), annotation) if kind in _KINDS)


def _option_value(what: str, field: attrs.Attribute, kind: type, text: str) -> Any:
    """The value ``text`` stands for, of type ``kind``, within the choices and bounds ``param`` recorded in the
    field's metadata; a UsageError naming the option (``what``) and what it accepts otherwise."""
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{what} must be {_KINDS[kind]}, got {text!r}") from None
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise UsageError(f"{what} must be one of {', '.join(map(str, choices))}, got {text!r}")
    for bound, sign in field.metadata.get("bounds", ()):
        if not _COMPARE[sign](value, bound):
            raise UsageError(f"{what} must be {_BOUND_WORDS[sign]} {bound:g}, got {text!r}")
    return value


def make_executor(name: str, pairs: Sequence[str], context: Context, plugins: Plugins) -> Executor:
    """The executor ``name`` of ``plugins`` with its settings checked (not yet started); an unknown name is a
    UsageError listing the choices (and the plugins that failed to load, which may have been meant)."""
    executors = {entry_name: entry.cls for entry_name, entry in plugins.registry.entries("executor").items()}
    if name not in executors:
        failed = ", ".join(failure.plugin for failure in plugins.failures)
        failed = f" (plugins that failed to load: {failed})" if failed else ""
        raise UsageError(f"unknown executor {name!r}; choices: {', '.join(sorted(executors))}{failed}")
    executor = executors[name]
    return executor(name, parse_settings(name, executor, pairs), context)
