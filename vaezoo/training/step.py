"""One optimisation step of a model: the trainer runs it, and the speed benchmarks time this very code."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import torch
from torch import Tensor

from vaezoo.components.distributions import refuses_invalid_parameters
from vaezoo.components.interfaces import Data, Step
from vaezoo.components.optim import adam
from vaezoo.components.precision import autocast
from vaezoo.config.run_config import TrainConfig
from vaezoo.model.assembly import VAE
from vaezoo.training.distributed import Context, StepFunction


class NonFiniteLoss(Exception):
    """The loss (averaged over ranks) is NaN or infinite; nothing was updated."""

    def __init__(self, value: float) -> None:
        super().__init__(f"loss became {value}")
        self.value = value


def make_optimizer(train: TrainConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The model's optimiser as ``train`` configures it (Adam, or SGD with momentum)."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train.lr, momentum=train.momentum)
    return adam(parameters, lr=train.lr)


def checked_forward(
    forward: StepFunction, x: Tensor, step: int, data: Data | None, kl_scale: float, precision: str, context: Context
) -> tuple[Step | None, Tensor, dict[str, Tensor]]:
    """``forward`` on batch ``x`` at ``precision``: the Step record (None when the model refused its own
    parameters), the loss and the logged terms. A loss that is not finite on any rank raises
    :class:`NonFiniteLoss` on every rank, before anything is updated."""
    try:
        with autocast(precision, x.device):
            record, loss, logged = forward(x, step, data, kl_scale)
    except ValueError as error:
        if not refuses_invalid_parameters(error):  # before any loss exists
            raise
        record, loss, logged = None, torch.tensor(float("nan"), device=x.device), {}
    loss_everywhere = context.mean_loss(loss)  # every rank sees the same mean, so all stop together
    if not torch.isfinite(loss_everywhere):
        raise NonFiniteLoss(loss_everywhere.item())
    return record, loss, logged


def descend(
    loss: Tensor,
    parameters: list[torch.nn.Parameter],
    optimizers: Iterable[torch.optim.Optimizer],
    grad_clip: float | None,
) -> None:
    """One step of each of ``optimizers`` on ``loss``: the gradients of ``parameters`` are cleared first and their
    norm (all of them together) clipped to ``grad_clip``; ``parameters`` must hold those of the optimisers."""
    for parameter in parameters:
        parameter.grad = None
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    for optimizer in optimizers:
        optimizer.step()


class TrainingStep:
    """The optimisers of ``model`` and one step of them on a batch: the update rule of the standard training
    strategy.

    The model's parameters (all but the regulariser's auxiliary ones) get the optimiser ``train`` configures, with
    the gradient norm clipped to ``train.grad_clip``; auxiliary parameters, if any, get the regulariser's own
    optimiser, stepped after the model's on the detached codes of the same batch. Forward passes run at
    ``train.precision`` (:mod:`vaezoo.components.precision`).
    """

    def __init__(self, model: VAE, train: TrainConfig, context: Context | None = None) -> None:
        self.model, self.train, self.context = model, train, context or Context()
        self.optimizer = make_optimizer(train, model.main_parameters())
        auxiliary = model.regularizer.auxiliary_parameters()
        self.auxiliary_optimizer = model.regularizer.auxiliary_optimizer(train.lr) if auxiliary else None

    def __call__(
        self, forward: StepFunction, x: Tensor, step: int, data: Data | None, kl_scale: float = 1.0
    ) -> dict[str, float]:
        """Update the parameters on batch ``x`` (this rank's shard) at global ``step``; the logged loss terms.

        ``forward`` is the model's training forward pass (``Context.wrap(model)``); ``kl_scale`` the run's factor
        on a KL weight (``Step.kl_scale``). A loss that is not finite on any rank raises :class:`NonFiniteLoss` on
        every rank before anything is updated.
        """
        record, loss, logged = checked_forward(forward, x, step, data, kl_scale, self.train.precision, self.context)
        descend(loss, self.model.main_parameters(), [self.optimizer], self.train.grad_clip)
        if self.auxiliary_optimizer is not None:
            self._auxiliary_step(record)
        return {name: value.item() for name, value in logged.items()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by checkpoint key: ``optimizer``, and ``auxiliary_optimizer`` when the regulariser has one."""
        auxiliary = {"auxiliary_optimizer": self.auxiliary_optimizer} if self.auxiliary_optimizer else {}
        return {"optimizer": self.optimizer, **auxiliary}

    def _auxiliary_step(self, record: Step) -> None:
        """One step of the regulariser's own optimiser on the detached codes of this batch.

        This loss is not computed in DDP's forward pass, so DDP does not average its gradients: this method does.
        """
        assert self.auxiliary_optimizer is not None
        detached = attrs.evolve(record, z=record.z.detach(), log_px=record.log_px.detach())
        regularizer = self.model.regularizer
        self.auxiliary_optimizer.zero_grad(set_to_none=True)
        with autocast(self.train.precision, record.z.device):
            loss = regularizer.auxiliary_loss(detached)
        loss.backward()
        self.context.average_gradients(regularizer.auxiliary_parameters())
        self.auxiliary_optimizer.step()
