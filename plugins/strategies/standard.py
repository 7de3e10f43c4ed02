"""The standard training step: one step of the run's optimiser on the batch's loss."""

from __future__ import annotations

import torch

from vaezoo.api import TrainingBatch, TrainingStep, TrainingStrategy


class Standard(TrainingStrategy):
    """One step of the run's optimiser on the loss of the batch (ReconE plus the regulariser's terms), then one of
    the regulariser's own optimiser when it has parameters of its own (:class:`vaezoo.api.TrainingStep`)."""

    name = "standard"
    description = "one step of the run's optimiser on the batch's loss"

    def __init__(self, params, model, train, context) -> None:
        super().__init__(params, model, train, context)
        self.training_step = TrainingStep(model, train, context)

    def update(self, forward, batch: TrainingBatch) -> dict[str, float]:
        return self.training_step(forward, batch.x, batch.step, batch.data, batch.kl_scale)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.training_step.optimizers()
