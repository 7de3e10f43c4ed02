"""Aggressive inference-network training (He, Spokoyny, Neubig, Berg-Kirkpatrick 2019, "Lagging Inference
Networks and Posterior Collapse in Variational Autoencoders").

The encoder lags behind the decoder early in training; He et al. let it catch up before each decoder update. The
encoder and the decoder have optimisers of their own. While the run is aggressive, each step first updates the
encoder alone, on the step's batch and then on training batches drawn at random, until its loss stops falling;
then one update of the decoder alone on the step's batch. The aggressive phase ends when the validation MI stops
rising; from then on both are updated together, a standard VAE step. docs/maths.md ("Aggressive inference
training") gives the rules and where they follow the reference code (jxhe/vae-lagging-encoder).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor

from vaezoo.api import TrainingBatch, TrainingStrategy, UsageError, checked_forward, descend, make_optimizer, param


@attrs.frozen
class AggressiveParams:
    max_inner_steps: int = param(
        99, ge=1, le=10**5, help="encoder updates at most before each decoder update (theirs: 99, 'sub_iter < 100')"
    )
    check_every: int | None = param(
        None,
        ge=1,
        le=10**5,
        help="encoder updates between comparisons of their mean loss with the previous window's; the loop stops "
        "when it rose (none: theirs, 15 for token data, 10 otherwise)",
    )
    metric: str = param("mi_he", help="validation metric whose stalling ends the aggressive phase (theirs: He's MI)")
    patience: int | None = param(
        None,
        ge=1,
        le=10**5,
        help="validation lines below the best value of the metric so far (not necessarily in a row) that end the "
        "aggressive phase (none: theirs, 1 for token data, 5 otherwise)",
    )


class Aggressive(TrainingStrategy):
    """He et al.'s aggressive training; one process only (it decides from validation lines, which rank 0 alone
    sees, and steps the encoder outside the wrapped forward pass's pairing of one backward per forward). Its phase
    needs no checkpoint: it is rebuilt from the validation lines (:meth:`TrainingStrategy.evaluated`)."""

    name = "aggressive"
    description = "He et al. 2019: the encoder trained to convergence before each decoder step, until MI stalls"
    Params = AggressiveParams
    distributed = False

    def __init__(self, params: AggressiveParams, model, train, context) -> None:
        super().__init__(params, model, train, context)
        tokens = model.encoder.spec.kind == "tokens"
        self.check_every = params.check_every or (15 if tokens else 10)
        self.patience = params.patience or (1 if tokens else 5)
        self.pad_id = model.encoder.spec.pad_id if tokens else None
        encoder = {id(p) for p in model.encoder.parameters()}
        self.encoder_parameters = [p for p in model.main_parameters() if id(p) in encoder]
        self.decoder_parameters = [p for p in model.main_parameters() if id(p) not in encoder]
        self.encoder_optimizer = make_optimizer(train, self.encoder_parameters)
        self.decoder_optimizer = make_optimizer(train, self.decoder_parameters)
        self.best = 0.0  # as theirs: the MI of the first line must not be negative
        self.stalled = 0

    @property
    def aggressive(self) -> bool:
        """Whether the run is still in its aggressive phase."""
        return self.stalled < self.patience

    def incompatibility(self, data) -> str | None:
        if self.model.regularizer.auxiliary_parameters():
            return f"regularizer {self.model.regularizer.name!r} trains parameters of its own, which it does not step"
        return None

    def update(self, forward, batch: TrainingBatch) -> dict[str, float]:
        inner_steps = self._catch_up(forward, batch) if self.aggressive else 0
        _, loss, logged = checked_forward(
            forward, batch.x, batch.step, batch.data, batch.kl_scale, self.train.precision, self.context
        )
        optimizers = [self.decoder_optimizer] if self.aggressive else [self.encoder_optimizer, self.decoder_optimizer]
        descend(loss, self.model.main_parameters(), optimizers, self.train.grad_clip)
        return {**{name: value.item() for name, value in logged.items()}, "encoder_updates": float(inner_steps)}

    def _catch_up(self, forward, batch: TrainingBatch) -> int:
        """Encoder-only updates, on the step's batch and then on random ones, until the loss per word (token data)
        or per example of a window of ``check_every`` updates exceeds the previous window's; the number taken.

        As theirs, the loss is the one each update descends (KL weight included), read before the update, and
        the gradient norm is clipped over the whole model though only the encoder moves."""
        x, window_loss, window_units, previous = batch.x, 0.0, 0, float("inf")
        for update in range(1, self.params.max_inner_steps + 1):
            _, loss, _ = checked_forward(
                forward, x, batch.step, batch.data, batch.kl_scale, self.train.precision, self.context
            )
            window_loss += loss.item() * x.shape[0]
            window_units += self._units(x)
            descend(loss, self.model.main_parameters(), [self.encoder_optimizer], self.train.grad_clip)
            if update % self.check_every == 0:
                current = window_loss / window_units
                if current > previous:
                    return update
                previous, window_loss, window_units = current, 0.0, 0
            x = batch.extra(update)
        return self.params.max_inner_steps

    def _units(self, x: Tensor) -> int:
        """What the loss is averaged over in the stopping rule: predicted words (every token but the start one)
        for token data, examples otherwise."""
        if self.pad_id is None:
            return x.shape[0]
        return int((x != self.pad_id).sum()) - x.shape[0]

    def evaluated(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.aggressive:
            return
        if self.params.metric not in metrics:
            raise UsageError(
                f"strategy 'aggressive' reads the validation metric {self.params.metric!r}, which this run's "
                f"validation does not report; it reports: {', '.join(sorted(metrics))}"
            )
        value = float(metrics[self.params.metric])
        if value < self.best:
            self.stalled += 1
        else:
            self.best = value

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"encoder_optimizer": self.encoder_optimizer, "decoder_optimizer": self.decoder_optimizer}
