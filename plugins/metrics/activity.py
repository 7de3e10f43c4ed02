"""Active units: the latent dims whose posterior mean varies across the examples (Burda et al. 2016)."""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.api import BatchView, ElboTotals, EvaluationSetting, Metric


def active_units(posterior_means: Tensor, threshold: float = 0.01) -> int:
    """Dims whose posterior mean varies across examples by more than ``threshold``: ``'b d' -> int`` (0 for fewer
    than two examples, which cannot vary)."""
    if len(posterior_means) < 2:
        return 0
    return int((posterior_means.var(dim=0) > threshold).sum().item())


class ActiveUnits(Metric):
    """The dims d with Cov_x(E_q[z_d]) above ``eval.au_threshold`` (0.01), over the evaluated split."""

    name = "au"
    description = "active latent dims: posterior means that vary across examples (a count)"
    legend = "au = active latent dims (a count)"
    higher_is_better = True
    reads = frozenset({"posterior"})
    order = 30

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        super().__init__(params, setting, prior)
        self.means: list[Tensor] = []

    def add(self, batch: BatchView) -> None:
        self.means.append(batch.posterior.mean)

    def value(self, elbo: ElboTotals) -> int:
        return active_units(torch.cat(self.means), self.setting.options.get("au_threshold", 0.01))
