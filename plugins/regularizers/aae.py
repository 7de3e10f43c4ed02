"""Adversarial autoencoder (Makhzani et al.): ReconE + lambda * JSD(q(z) || p(z)) through a discriminator.

The discriminator D(z) (an MLP giving the logit of "z came from the prior") has its own optimiser and is
updated after every model step on that step's detached codes and fresh prior samples; the encoder is trained
through the discriminator's current estimate of the JSD. The trainer handles this through the generic
auxiliary-parameter interface and knows nothing about AAE.

In a data-parallel run both losses are means over examples, so each rank's mean over its equal shard, averaged
over ranks, is the global batch's mean: DDP averages the encoder's gradients, the trainer averages the
discriminator's (it is outside DDP, with its own optimiser), and the discriminator, equal at the start, stays
equal on every rank. No codes need to be gathered.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from vaezoo.api import Regularizer, Step, adam, discriminator_jsd, param
from vaezoo_plugins.networks.mlp import MAX_WIDTH, WIDTHS_NOTE, check_widths, perceptron


@attrs.frozen
class AAEParams:
    lambda_: float = param(1.0, ge=0, le=10**6, help="lambda: weight of the JSD between q(z) and p(z)")
    hidden: tuple[int, ...] = param((256, 256), ge=1, le=MAX_WIDTH, help=f"discriminator hidden widths{WIDTHS_NOTE}")
    disc_lr: float = param(2e-4, gt=0, le=100, help="discriminator learning rate (Adam)")
    generator_loss: str = param(
        "minimax",
        choices=("minimax", "nonsaturating"),
        help="minimax: lambda * JSD estimate; nonsaturating: lambda * E_q[-log D(z)] (stronger early gradients)",
    )

    def __attrs_post_init__(self) -> None:
        check_widths("hidden", self.hidden)


class AAE(Regularizer):
    """Adversarial regularisation of the aggregate posterior."""

    name = "aae"
    description = "lambda JSD(q(z) || p(z)) realised by a discriminator with its own optimiser"
    Params = AAEParams

    def __init__(self, params: AAEParams, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        self.discriminator = perceptron([latent_dim, *params.hidden, 1])

    def logits(self, z: Tensor) -> Tensor:
        """Logit of "z is a prior sample": ``'b d' -> 'b'``."""
        return self.discriminator(z).squeeze(-1)

    def forward(self, step: Step) -> dict[str, Tensor]:
        code_logits = self.logits(step.z)
        if self.params.generator_loss == "nonsaturating":
            return {"adversarial": self.params.lambda_ * -F.logsigmoid(code_logits).mean()}
        with torch.no_grad():
            prior_logits = self.logits(step.prior.sample((step.z.shape[0],)))
        return {"lambda_jsd": self.params.lambda_ * discriminator_jsd(prior_logits, code_logits)}

    def auxiliary_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.discriminator.parameters())

    def auxiliary_optimizer(self, lr: float) -> torch.optim.Optimizer:
        return adam(self.auxiliary_parameters(), lr=self.params.disc_lr, betas=(0.5, 0.999))

    def auxiliary_loss(self, step: Step) -> Tensor:
        """Binary cross-entropy: prior samples are 1, encoded samples are 0 (= -2 JSD estimate + 2 log 2)."""
        prior_logits = self.logits(step.prior.sample((step.z.shape[0],)))
        code_logits = self.logits(step.z.detach())
        return 2 * (math.log(2) - discriminator_jsd(prior_logits, code_logits))

    def optimal_test_variance(self) -> float:
        return 1.0
