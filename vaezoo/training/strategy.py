"""Training strategies: the update rule of a training step, a kind of component like any other.

The trainer owns the run (batches, checkpoints, validation, callbacks); a strategy owns what one step does with
its batch: which losses, which parameters, which optimisers and in what order. The built-in ``standard`` strategy
takes one step of the run's optimiser on the batch's loss; a remedy such as aggressive inference training (extra
encoder steps on fresh batches) or semi-amortised inference (refining each posterior by gradient steps) is a
strategy of its own. Building blocks for writing one: :func:`vaezoo.training.step.checked_forward`,
:func:`vaezoo.training.step.descend`, :func:`vaezoo.training.step.make_optimizer`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Data
from vaezoo.config.run_config import RunConfig, TrainConfig
from vaezoo.model.assembly import VAE
from vaezoo.plugins.component import Component
from vaezoo.plugins.registry import Registry
from vaezoo.training.distributed import Context, StepFunction


@attrs.frozen
class TrainingBatch:
    """One global training step as the trainer hands it to a strategy.

    ``x 'b ...'`` is this process's shard of the step's batch, on the run's device; ``step`` the global step counted
    from 0; ``data`` the run's data; ``kl_scale`` the factor the run's callbacks put on a KL weight at this step
    (``Step.kl_scale``). ``extra(draw)`` gives another training batch, the ``draw``-th extra one of this step
    (:meth:`vaezoo.components.interfaces.Data.extra_train_batch`), sharded and placed like ``x``.
    """

    x: Tensor
    step: int
    data: Data
    kl_scale: float
    extra: Callable[[int], Tensor]


class TrainingStrategy(Component, ABC):
    """The update rule of a training step.

    Built once per run, after the model, with the strategy's ``params``, the ``model``, the run's ``train`` settings
    and the process's place in a data-parallel run (``context``). Its optimisers and :meth:`state_dict` are saved in
    every checkpoint and taken back on resume, so a resumed run takes exactly the steps of a run straight through.
    """

    kind = "strategy"
    #: False when the update rule cannot run data-parallel (it steps outside the wrapped forward pass, or decides
    #: from validation lines only rank 0 sees); such a strategy is refused in a distributed run.
    distributed: ClassVar[bool] = True

    def __init__(self, params: Any, model: VAE, train: TrainConfig, context: Context) -> None:
        self.params, self.model, self.train, self.context = params, model, train, context

    def incompatibility(self, data: Data) -> str | None:
        """Why this strategy cannot train its model on ``data`` (the run is refused before training), or None."""
        return None

    @abstractmethod
    def update(self, forward: StepFunction, batch: TrainingBatch) -> dict[str, float]:
        """Take the global step ``batch``: update the parameters and return the logged terms, at least ``loss``,
        ``recon`` and ``kl`` (nats per example, averaged over the batch).

        ``forward`` is the model's training forward pass (wrapped for data parallelism in a distributed run). A loss
        that is not finite must raise :class:`vaezoo.training.step.NonFiniteLoss` before anything is updated
        (:func:`vaezoo.training.step.checked_forward` does)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser of the strategy by name; the names are checkpoint keys and end in ``optimizer``."""

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state besides its optimisers (numbers, strings, lists, dicts and tensors: a checkpoint is
        read without unpickling objects); none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` gave."""

    def evaluated(self, step: int, metrics: dict[str, Any]) -> None:
        """The validation metrics of the line at global ``step``, in order; a resumed run hands over again the
        lines it already has, so state derived from them needs no checkpoint. Only the process that evaluates
        (rank 0) hears them: a strategy that acts on them is not ``distributed``."""


def build_strategy(config: RunConfig, registry: Registry, model: VAE, data: Data, context: Context) -> TrainingStrategy:
    """The run's strategy for ``model``; UsageError when it cannot train this run."""
    cls = registry.get("strategy", config.strategy.name).cls
    if context.world_size > 1 and not cls.distributed:
        raise UsageError(
            f"strategy {config.strategy.name!r} cannot train data-parallel ({context.world_size} processes): run it "
            "as one process"
        )
    strategy = cls(config.strategy.params, model, config.train, context)
    reason = strategy.incompatibility(data)
    if reason:
        raise UsageError(f"strategy {config.strategy.name!r} cannot train this run: {reason}")
    for name in strategy.optimizers():
        if not name.endswith("optimizer"):
            raise TypeError(f"strategy {config.strategy.name!r} names an optimiser {name!r}: end it in 'optimizer'")
    return strategy
