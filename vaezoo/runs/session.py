"""A run in memory: its configuration, data, model and device, and the machine settings it runs under."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Data, DataSource, TrainedData
from vaezoo.components.metric import Metric, evaluation_order
from vaezoo.config.run_config import RunConfig, TrainConfig, merge_raw, resolve
from vaezoo.model.assembly import VAE, build_model_for_data
from vaezoo.plugins.registry import Registry
from vaezoo.runs.checkpoint import BEST_MODEL_NAME, CHECKPOINT_NAME, load_checkpoint
from vaezoo.runs.directory import CONFIG_NAME, RunDirectory

DATA_DIR_VARIABLE = "VAEZOO_DATA"
DEVICE_TYPES = ("cpu", "cuda")


def resolve_data_dir(explicit: str | Path | None, recorded: Path | None = None) -> Path | None:
    """``--data-dir`` if given, else the directory a run recorded (when it still exists), else ``$VAEZOO_DATA``,
    else None; a directory named by the user must exist. Returned absolute, so a run records where its data is."""
    if explicit is None and recorded is not None and recorded.is_dir():
        return recorded.resolve()
    chosen = explicit if explicit is not None else os.environ.get(DATA_DIR_VARIABLE)
    if chosen is None or str(chosen) == "":
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--data-dir" if explicit is not None else DATA_DIR_VARIABLE
        raise UsageError(f"data directory {str(path)!r} (from {source}) does not exist")
    return path.resolve()


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` names, if this machine has it; else a UsageError listing the valid ones."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    valid = "cpu" + (f", cuda, cuda:0 to cuda:{count - 1}" if count else "")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"train.device {name!r} is not a torch device; valid here: {valid}") from None
    if device.type not in DEVICE_TYPES:
        raise UsageError(f"train.device {name!r} cannot train a model; valid here: {valid}")
    if device.type == "cuda" and (count == 0 or (device.index is not None and device.index >= count)):
        raise UsageError(f"train.device {name!r} is not available on this machine; valid here: {valid}")
    return device


@attrs.define
class Session:
    """Everything a run needs in memory: its config, data, model and device."""

    config: RunConfig
    data: Data
    model: VAE
    device: torch.device
    #: The plugins' hooks (pluggy's relay), through which evaluation plugins answer; None without plugins.
    hook: Any = None
    #: The registered metrics every evaluation of the run computes when they apply, in evaluation order.
    metrics: tuple[type[Metric], ...] = ()

    def batches(self, split: str) -> Iterator[torch.Tensor]:
        for x in self.data.batches(split, self.config.eval.batch_size, self.config.eval.limit):
            yield x.to(self.device)

    def evaluation_size(self, split: str) -> int:
        """How many examples an evaluation of ``split`` uses (``eval.limit`` caps it)."""
        size, limit = self.data.size(split), self.config.eval.limit
        return size if limit is None else min(size, limit)


def configure_cpu(train: TrainConfig) -> None:
    """Apply ``train.threads`` to torch's CPU thread count (none: torch's default)."""
    if train.threads is not None:
        torch.set_num_threads(train.threads)


def flushing_subnormals() -> bool:
    """Whether this thread's CPU arithmetic treats subnormal floats as zero. torch can set the mode but not read
    it; a product below the smallest normal float32 (1.2e-38) reads 0 only when it is on."""
    return bool((torch.tensor([1e-30]) * torch.tensor([1e-10])).item() == 0)


@contextmanager
def subnormals_flushed(enabled: bool) -> Iterator[None]:
    """Run a block with subnormal floats flushed to zero (``enabled``) or not, and restore the mode after it.

    Flushing matters for recurrent networks: the gradient of an LSTM's last state shrinks at every step back
    through time and becomes subnormal after a couple of hundred tokens; x86 arithmetic on subnormals is slow
    enough that one backward pass of a 1024-unit LSTM over 32 sequences of 200 tokens takes 20 times as long
    (``python -m benchmarks.perf --parts subnormals``).
    Subnormals are below 1.2e-38, far beneath anything a float32 gradient step can resolve. The mode belongs to
    the thread (backward passes on the CPU run in the calling thread) and affects all its float arithmetic, so it
    is scoped to the work of vaezoo rather than left set in the caller's process."""
    before = flushing_subnormals()
    torch.set_flush_denormal(enabled)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def data_source(config: RunConfig, registry: Registry, trained: TrainedData | None = None) -> DataSource:
    """The data source ``config`` names, under its settings; ``trained``, when it loads a trained run's data for an
    evaluation, says how the run's data was made (see :attr:`DataSource.trained`)."""
    source = registry.get("data", config.data.name).cls(config.data.params)
    source.trained = trained
    return source


def trained_data(directory: RunDirectory, registry: Registry) -> TrainedData:
    """How the data of the run in ``directory`` was made: its data settings and the sources it last recorded."""
    params = resolve(merge_raw(directory.current_raw()), registry).data.params
    recorded = (entry["data_sources"] for entry in reversed(directory.history()) if entry.get("data_sources"))
    return TrainedData(params, next(recorded, {}))


def open_session(
    config: RunConfig,
    registry: Registry,
    data_dir: Path | None,
    device: torch.device | None = None,
    trained: TrainedData | None = None,
) -> Session:
    """Load the data and build a freshly initialised model (seeded) on ``device``, else the configured one;
    ``trained`` when the data is a trained run's (see :func:`data_source`).

    Everything that can be checked before training is checked here (UsageErrors): the device, the data
    directory, the batch size against the training split, the components' compatibility and the test prior."""
    device = device if device is not None else resolve_device(config.train.device)
    configure_cpu(config.train)
    source = data_source(config, registry, trained)
    if source.needs_data_dir and data_dir is None:
        raise UsageError(f"data {config.data.name!r} reads files: pass --data-dir or set {DATA_DIR_VARIABLE}")
    data = source.load(data_dir, config.train.seed)
    if config.train.batch_size > data.size("train"):
        raise UsageError(
            f"train.batch_size {config.train.batch_size} exceeds the {data.size('train')} training examples of "
            f"data {config.data.name!r}; choose at most {data.size('train')}"
        )
    check_batch_sizes(config, registry, data.size("train"))
    torch.manual_seed(config.train.seed)
    model = build_model_for_data(config, registry, data).to(device)
    return Session(config, data, model, device, registry.hook, registered_metrics(registry))


def check_batch_sizes(config: RunConfig, registry: Registry, examples: int) -> None:
    """Refuse (UsageError) a run whose regulariser or transform needs larger training batches than ``batch_size``
    makes of ``examples``: the batch size itself, or the smaller last batch of each epoch."""
    batch_size = config.train.batch_size
    last = examples % batch_size
    for kind in ("regularizer", "transform"):
        choice = getattr(config, kind)
        smallest = registry.get(kind, choice.name).cls.min_batch_size if choice is not None else 1
        if batch_size < smallest:
            raise UsageError(
                f"{kind} {choice.name!r} needs training batches of at least {smallest} examples, got "
                f"train.batch_size {batch_size}"
            )
        if 0 < last < smallest:
            raise UsageError(
                f"{kind} {choice.name!r} needs training batches of at least {smallest} examples, but the "
                f"{examples} training examples in batches of {batch_size} end each epoch with a batch of {last}; "
                "choose a train.batch_size that leaves a larger last batch (or divides them)"
            )


def registered_metrics(registry: Registry) -> tuple[type[Metric], ...]:
    """The metrics of ``registry`` in evaluation order."""
    return tuple(evaluation_order(entry.cls for entry in registry.entries("metric").values()))


def load_trained(
    run_dir: Path, registry: Registry, data_dir: Path | None, overrides: dict[str, Any] | None = None
) -> Session:
    """A finished or interrupted run's session with the weights its ``train.test_model`` names (the latest
    checkpoint's, or best.pt's), under the settings in force (``config.json`` and the changes of its resumes) and
    ``overrides``; its data keeps the run's own train and valid splits (see :attr:`DataSource.trained`)."""
    directory = RunDirectory(run_dir)
    directory.check_usable()
    if not directory.file(CONFIG_NAME).is_file():
        raise UsageError(f"{str(run_dir)!r} is not a run directory (no {CONFIG_NAME})")
    config = directory.current_config(registry)  # names the run's files when what they hold does not resolve
    if overrides:
        config = resolve(merge_raw(directory.current_raw(), overrides), registry)
    session = open_session(config, registry, data_dir, trained=trained_data(directory, registry))
    if load_tested_model(session.model, directory, config) is None:  # best.pt's weights, else the latest's
        session.model.load_state_dict(load_checkpoint(directory.file(CHECKPOINT_NAME))["model"])
    return session


def load_tested_model(model: torch.nn.Module, directory: RunDirectory, config: RunConfig) -> int | None:
    """Load best.pt's weights into ``model`` when ``train.test_model`` is "best" and return its step; None (and
    ``model`` untouched) for "last", or for "best" before the first validation line wrote best.pt."""
    if config.train.test_model != "best" or not directory.file(BEST_MODEL_NAME).is_file():
        return None
    state = load_checkpoint(directory.file(BEST_MODEL_NAME))
    model.load_state_dict(state["model"])
    return int(state["step"])
