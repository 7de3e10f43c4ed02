"""Executors: where a suite's cells run. Plugins of the entry-point group ``vaezoo.executors``.

The runner decides everything before a cell is handed over (its action, skips, the selection's phases) and an
executor only runs :class:`benchmarks.cell_job.CellJob` objects and says when each has ended: ``local`` in threads
of the runner's process, ``slurm`` as submitit jobs, ``ray`` as Ray tasks. A job writes its cell's results into
the results directory itself, so every executor but ``local`` needs that directory (and the repository) on a file
system shared with the hosts that run the jobs, as Slurm and Ray clusters have.

A third party adds an executor with an entry point naming a subclass of :class:`Executor`::

    [project.entry-points."vaezoo.executors"]
    k8s = "vaezoo_k8s:KubernetesExecutor"

An executor declares its settings in :attr:`Executor.options` (a schema); ``--executor-option NAME=VALUE`` is
checked against it before anything is submitted, with one-line errors naming the choices.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import attrs

from benchmarks.cell_job import CellJob
from vaezoo.api import PluginFailure, UsageError, load_group

GROUP = "vaezoo.executors"
DEFAULT = "local"
_KINDS = {int: "an integer", float: "a number", str: "a string"}


@attrs.frozen
class Option:
    """A setting of an executor, ``--executor-option NAME=VALUE``: its type, meaning and default (None: unset,
    the executor decides), and the values it may take."""

    kind: type
    help: str
    default: Any = None
    choices: tuple[Any, ...] = ()
    minimum: float | None = None

    def parse(self, executor: str, name: str, text: str) -> Any:
        """The value ``text`` stands for; a UsageError naming the option and what it accepts otherwise."""
        what = f"option {name!r} of executor {executor!r}"
        try:
            value = self.kind(text)
        except ValueError:
            raise UsageError(f"{what} must be {_KINDS[self.kind]}, got {text!r}") from None
        if self.choices and value not in self.choices:
            raise UsageError(f"{what} must be one of {', '.join(map(str, self.choices))}, got {text!r}")
        if self.minimum is not None and value < self.minimum:
            raise UsageError(f"{what} must be at least {self.minimum:g}, got {text!r}")
        return value


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


class Executor(abc.ABC):
    """Runs cell jobs and reports each one's end.

    ``settings`` holds every option of :attr:`options` (given or default). :meth:`start` connects to the engine
    (raising UsageError when it is missing or refuses), :meth:`submit` hands over one job, :meth:`stop` asks
    every running job to stop (each interrupts its cell, which checkpoints, so the next run of the suite
    resumes it) and cancels queued ones, and :meth:`close` lets go of the engine."""

    #: The settings a user may give, by name.
    options: ClassVar[Mapping[str, Option]] = {}
    #: Whether a submitted job goes on when the runner's process dies (a Slurm job does; a local process pool or
    #: a Ray driver's tasks do not); ``benchmarks.status`` shows such a job as queued only while its runner lives.
    jobs_outlive_runner: ClassVar[bool] = False

    def __init__(self, name: str, settings: Mapping[str, Any], context: Context) -> None:
        self.name, self.settings, self.context = name, dict(settings), context

    def start(self) -> None:  # noqa: B027 (an optional hook: most executors need no connection)
        """Connect to the engine; raise UsageError when it is missing or refuses."""

    @abc.abstractmethod
    def submit(self, job: CellJob) -> Submission:
        """Hand ``job`` to the engine."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every submitted job that has not ended: running cells checkpoint and end, queued ones never start."""

    def close(self) -> None:  # noqa: B027 (an optional hook)
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


def _check(target: Any) -> None:
    if not (isinstance(target, type) and issubclass(target, Executor)):
        raise TypeError(f"an executor entry point must name a subclass of {Executor.__module__}.Executor")


def load_executors() -> tuple[dict[str, type[Executor]], list[PluginFailure]]:
    """The executors of the entry-point group, by name, and the ones that failed to load."""
    return load_group(GROUP, "executor", _check)


def parse_settings(name: str, executor: type[Executor], pairs: Sequence[str]) -> dict[str, Any]:
    """Every option of ``executor``: the ``NAME=VALUE`` pairs given, checked against its schema, and the defaults."""
    settings = {key: option.default for key, option in executor.options.items()}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key:
            raise UsageError(f"--executor-option expects NAME=VALUE, got {pair!r}")
        if key not in executor.options:
            known = ", ".join(sorted(executor.options)) or "none"
            raise UsageError(f"executor {name!r} has no option {key!r}; its options: {known}")
        settings[key] = executor.options[key].parse(name, key, text)
    return settings


def make_executor(name: str, pairs: Sequence[str], context: Context) -> tuple[Executor, list[PluginFailure]]:
    """The executor ``name`` with its settings checked (not yet started), and the executors that failed to load."""
    executors, failures = load_executors()
    if name not in executors:
        broken = {failure.plugin: failure for failure in failures}
        if name in broken:
            raise UsageError(f"executor {name!r} could not be loaded: {broken[name].error}")
        raise UsageError(f"unknown executor {name!r}; choices: {', '.join(sorted(executors))}")
    executor = executors[name]
    return executor(name, parse_settings(name, executor, pairs), context), failures
