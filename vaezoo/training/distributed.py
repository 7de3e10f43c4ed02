"""Data-parallel training over several processes started by ``torchrun``, with torch.distributed.

The contract:

- A process whose environment holds torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``) joins a process group: gloo when the run's device is the CPU, nccl when it is
  CUDA, where process ``LOCAL_RANK`` of a host uses ``cuda:LOCAL_RANK``. Without those variables nothing is
  initialised and every function here is the identity, so a one-process run is exactly what it always was.
- ``train.batch_size`` is the global batch. Every rank builds the same global batch (a pure function of seed,
  epoch and index) and trains on its own contiguous shard of ``batch_size / world_size`` examples, so N ranks see
  exactly the examples one process sees. Shards must be of equal size (the batch size, and the last batch of an
  epoch, must split evenly): then the mean over ranks of per-rank means is the global mean, and DDP's averaging
  of gradients gives the gradient of the global batch's loss.
- Gradients of the model are averaged by DistributedDataParallel; gradients of a regulariser's auxiliary
  parameters (which have their own optimiser, outside DDP's forward) by ``average_gradients``. Parameters start
  equal (DDP broadcasts rank 0's) and get equal updates, so they stay equal on every rank.
- A loss term built from a statistic of the whole batch (InfoVAE's MMD, free bits) uses ``Step.batch``: in a
  training step of a distributed run, :class:`ShardedBatch`, differentiable collectives whose result is the
  statistic of the global batch on every rank; elsewhere (one process, rank 0's evaluation) the identity, since
  the batch at hand is then the whole batch.
- Rank 0 alone evaluates, writes files and prints. Evaluation is a small part of a run, and on rank 0 it is
  exactly the one-process computation (same batches, same seeded RNG, so MI's aggregate posterior is the same
  evaluation batch), so metrics do not depend on the number of processes.
- Random draws (reparameterisation noise, prior and noise samples) are each rank's own: rank 0 continues the
  one-process stream and rank r > 0 is seeded from (seed, r). A distributed run therefore agrees with the
  one-process run in distribution, not bit for bit. Checkpoints keep every rank's RNG state, so a distributed run
  stopped and resumed with the same number of processes is the same run as one straight through.
- Networks with batch normalisation (pixelcnn, resnet) normalise with each rank's own shard statistics.
"""

from __future__ import annotations

import datetime
import gc
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import WHOLE_BATCH, BatchStatistics, Data, Step
from vaezoo.model.assembly import VAE

# The differentiable collectives of torch.distributed.nn.functional are deprecated in recent torch in favour of
# private ones; they work on every torch this project supports, so their warning is only noise in each process.
warnings.filterwarnings("ignore", r"torch\.distributed\.nn\.functional\.\w+ is deprecated", FutureWarning)

ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
# Ranks other than 0 wait in their next collective while rank 0 evaluates and writes a checkpoint.
TIMEOUT = datetime.timedelta(hours=1)

#: One training step's forward pass: (x, step, data, kl_scale) -> (the Step record, the loss, the logged terms).
StepFunction = Callable[[Tensor, int, "Data | None", float], "tuple[Step, Tensor, dict[str, Tensor]]"]


class ShardedBatch(BatchStatistics):
    """The whole batch's statistics when each rank holds an equal shard of it: differentiable collectives.

    Every rank computes the same value from the gathered or averaged statistic; the backward pass sums the ranks'
    gradients of that value for each shard, and DDP's average over ranks divides by their number, so a parameter
    receives exactly the gradient of the global-batch quantity. Shards must be of equal size.
    """

    def mean(self, x: Tensor) -> Tensor:
        return dist_fn.all_reduce(x) / dist.get_world_size()

    def gather(self, x: Tensor) -> Tensor:
        return torch.cat(dist_fn.all_gather(x))


def batch_statistics() -> BatchStatistics:
    """The batch statistics of a training step of this process: sharded in a process group, else the whole."""
    in_group = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    return ShardedBatch() if in_group else WHOLE_BATCH


class _TrainingStep(nn.Module):
    """The model's training forward pass as one module, the form DistributedDataParallel wraps."""

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, x: Tensor, step: int, data: Data | None, kl_scale: float = 1.0
    ) -> tuple[Step, Tensor, dict[str, Tensor]]:
        record = self.model.forward_step(x, step, data, kl_scale, batch_statistics())
        loss, logged = self.model.loss(record)
        return record, loss, logged


@attrs.frozen
class Context:
    """This process's place in the run: its rank among ``world_size`` and, on CUDA, its local GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: The process group's backend (gloo or nccl); None for a one-process run.
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, writes the run directory and prints."""
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """The device of this rank: ``cuda:LOCAL_RANK`` when the run is on CUDA, else ``requested``."""
        if self.backend is None or requested.type != "cuda":
            return requested
        return torch.device("cuda", self.local_rank)

    def check_batches(self, batch_size: int, train_size: int) -> None:
        """Refuse batches that do not split into equal shards (UsageError naming the sizes)."""
        n = self.world_size
        if n == 1:
            return
        if batch_size % n:
            raise UsageError(
                f"train.batch_size {batch_size} does not split evenly across {n} processes; "
                f"choose a multiple of {n} (the batch size is the global batch)"
            )
        last = train_size % batch_size
        if last % n:
            raise UsageError(
                f"the last batch of each epoch holds {last} examples ({train_size} training examples, batch "
                f"{batch_size}), which do not split evenly across {n} processes; choose a batch size that "
                f"divides {train_size} or leaves a multiple of {n}"
            )

    def shard(self, batch: Tensor) -> Tensor:
        """This rank's contiguous, equal share of a global batch."""
        size = len(batch) // self.world_size
        return batch[self.rank * size : (self.rank + 1) * size]

    def wrap(self, model: VAE) -> StepFunction:
        """The training forward pass; under DDP, so that the backward pass averages gradients over ranks.

        Drop the wrapper before leaving :func:`process_group`, which collects it before destroying the group.
        """
        step = _TrainingStep(model)
        if self.backend is None:
            return step
        device = next(model.parameters()).device
        # Auxiliary parameters are stepped by their own optimiser; they may take no part in the model's loss.
        unused = bool(model.regularizer.auxiliary_parameters())
        return DistributedDataParallel(
            step,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=unused,
        )

    def mean_loss(self, loss: Tensor) -> Tensor:
        """The mean of every rank's loss (non-finite if any rank's is), so that all ranks agree to stop."""
        if self.backend is None:
            return loss
        value = loss.detach().clone()
        dist.all_reduce(value)
        return value / self.world_size

    def mean_over_ranks(self, values: dict[str, float]) -> dict[str, float]:
        """Per-name means over ranks of per-rank values (every rank must hold the same names)."""
        if self.backend is None or not values:
            return values
        names = sorted(values)
        device = torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")
        stacked = torch.tensor([values[name] for name in names], dtype=torch.float64, device=device)
        dist.all_reduce(stacked)
        return {name: value / self.world_size for name, value in zip(names, stacked.tolist(), strict=True)}

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (every rank gets the same answer), e.g. a stop signal one rank saw."""
        if self.backend is None:
            return flag
        return self.mean_over_ranks({"flag": float(flag)})["flag"] > 0

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Replace each gradient by its mean over ranks (for parameters trained outside DDP)."""
        if self.backend is None:
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad.div_(self.world_size)

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (plain data and tensors)."""
        if self.backend is None:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def rank_seed(self, seed: int, step: int = 0) -> int | None:
        """The seed of a rank > 0's random draws from ``step`` on; None for rank 0 (it keeps its stream)."""
        if self.rank == 0:
            return None
        return ((seed * 1_000_003 + self.rank) * 1_000_033 + step) % 2**63  # torch seeds are 64-bit


def launched_by_torchrun() -> bool:
    """True when torchrun's variables are in the environment."""
    return any(name in os.environ for name in ENVIRONMENT)


def _from_environment(backend: str) -> Context:
    """The place torchrun's variables give this process in a group of ``backend``."""
    try:
        rank, world_size, local_rank = (int(os.environ[name]) for name in ENVIRONMENT)
    except (KeyError, ValueError):
        shown = ", ".join(f"{name}={os.environ.get(name)!r}" for name in ENVIRONMENT)
        raise UsageError(f"torchrun's environment is incomplete or malformed ({shown}); launch with torchrun") from None
    return Context(rank, world_size, local_rank, backend)


@contextmanager
def process_group(requested: torch.device) -> Iterator[Context]:
    """Join the process group of a torchrun launch for a run on ``requested`` (left again on exit).

    Outside torchrun this yields the one-process context and does nothing.
    """
    if not launched_by_torchrun():
        yield Context()
        return
    backend = BACKENDS.get(requested.type)
    if backend is None:
        raise UsageError(
            f"train.device {str(requested)!r} cannot be used by several processes; valid: {', '.join(BACKENDS)}"
        )
    context = _from_environment(backend)
    if requested.type == "cuda":
        if requested.index is not None and requested.index != context.local_rank:
            raise UsageError(
                f"train.device {str(requested)!r} names one GPU, but process {context.local_rank} of this host uses "
                f"cuda:{context.local_rank}; valid: cuda"
            )
        if context.local_rank >= torch.cuda.device_count():
            raise UsageError(
                f"process {context.local_rank} of this host needs cuda:{context.local_rank}, but this host has "
                f"{torch.cuda.device_count()} GPUs; start at most that many processes per host (--nproc-per-node)"
            )
        if not dist.is_nccl_available():
            raise UsageError("this torch build has no nccl backend for CUDA; valid device for several processes: cpu")
        torch.cuda.set_device(context.local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield context
    finally:
        # A DDP wrapper holds the group through reference cycles. Were it the group's last owner, the group would
        # be destroyed by the garbage collector with the GIL held, which deadlocks when one of gloo's threads still
        # needs the GIL to free a finished collective's tensors. Collect wrappers first; destroy_process_group
        # then drops the last reference and releases the GIL while the group shuts down.
        gc.collect()
        dist.destroy_process_group()
