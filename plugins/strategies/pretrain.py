"""Autoencoder pretraining of the inference network, then a fresh decoder (Li et al. 2019, "A Surprisingly
Effective Fix for Deep Latent Variable Modeling of Text"; docs/maths.md "Autoencoder pretraining and free bits").

Steps ``0 .. steps-1`` train encoder and decoder on the reconstruction term alone, under one reparameterised
z ~ q(z|x) (their β = 0: a stochastic autoencoder). At step ``steps`` every parameter and buffer of the decoder is
drawn afresh, as a newly built decoder of the same class and parameters would be, the encoder is kept, and every
optimiser starts again with no state; from then on each step is the standard one (ReconE plus the regulariser's
terms, with whatever KL schedule and free bits the run chose). Which phase a step is in, and the reset, depend on
the step alone, so a run resumed from any checkpoint takes the steps of the run straight through.
"""

from __future__ import annotations

import attrs
import torch

from vaezoo.api import TrainingBatch, TrainingStep, TrainingStrategy, checked_forward, descend, param


@attrs.frozen
class PretrainParams:
    steps: int = param(
        1000,
        ge=1,
        le=10**9,
        help="global steps of autoencoder pretraining (reconstruction only) before the decoder is reset",
    )


class Pretrain(TrainingStrategy):
    """Reconstruction-only steps, then a decoder reset and fresh optimisers, then standard steps.

    In the first phase the loss is ReconE + 0 · (the regulariser's terms), as the reference's ``loss(batch, 0)``:
    its value and gradient are ReconE's, and every parameter stays in the graph (a data-parallel run requires it).
    The logged ``loss`` is ReconE, ``kl`` the unweighted KL, and each of the regulariser's terms 0, since none is
    applied. The regulariser's own parameters (a discriminator) are not trained in the first phase; from the
    switch on, its optimiser steps as in the standard step, also started afresh.
    """

    name = "pretrain"
    description = "autoencoder pretraining (reconstruction only), then a fresh decoder (Li et al. 2019)"
    Params = PretrainParams

    def __init__(self, params: PretrainParams, model, train, context) -> None:
        super().__init__(params, model, train, context)
        self.training_step = TrainingStep(model, train, context)

    def update(self, forward, batch: TrainingBatch) -> dict[str, float]:
        if batch.step < self.params.steps:
            return self._reconstruction_step(forward, batch)
        if batch.step == self.params.steps:
            self.reset_decoder()
            self.training_step = TrainingStep(self.model, self.train, self.context)  # optimisers without state
        return self.training_step(forward, batch.x, batch.step, batch.data, batch.kl_scale)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The standard step's optimisers (the same names in both phases, so any checkpoint resumes)."""
        return self.training_step.optimizers()

    def reset_decoder(self) -> None:
        """Draw every parameter and buffer of the model's decoder afresh, from the global random stream, as a newly
        built decoder of its class and parameters; the tensors are overwritten in place, so every reference to
        them (optimisers, a transform or prior that holds the decoder) stays valid. In a data-parallel run each
        process draws its own, and all take rank 0's."""
        decoder = self.model.decoder
        fresh = type(decoder)(decoder.params, decoder.spec, decoder.latent_dim)
        state = self.context.gather(fresh.state_dict())[0]
        decoder.load_state_dict(state)

    def _reconstruction_step(self, forward, batch: TrainingBatch) -> dict[str, float]:
        """One step of the model's optimiser on ReconE alone; the logged terms."""
        _, loss, logged = checked_forward(
            forward, batch.x, batch.step, batch.data, batch.kl_scale, self.train.precision, self.context
        )
        recon = logged["recon"]
        objective = recon + 0.0 * loss  # the regulariser's terms at weight 0: ReconE's value and gradient
        descend(objective, self.model.main_parameters(), [self.training_step.optimizer], self.train.grad_clip)
        applied = {"loss": recon.item(), "recon": recon.item(), "kl": logged["kl"].item()}
        return {**{name: 0.0 for name in logged}, **applied}
