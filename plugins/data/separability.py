"""``separability``: how well a classifier tells the codes of data from the codes of the data set's own noise
(the paper's Fig. 2 in one number), for data that have a noise distribution (the synthetic task)."""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.api import BatchView, ElboTotals, EvaluationSetting, Metric

#: Examples of data and of noise whose codes are compared.
CODES_LIMIT = 2000


def code_separability(data_codes: Tensor, noise_codes: Tensor, seed: int = 0) -> float:
    """Held-out accuracy of a logistic classifier telling data codes from noise codes (``'b d'`` each).

    The codes are posterior samples, the points of the paper's Fig. 2 (posterior means miss the point: NC-VAE
    separates noise mostly by giving it a wide posterior, N(0, K^2 I), not a distant mean). Features are the
    codes and their squares, so the boundary can be a quadric, since noise codes surround data codes. Trained
    by L-BFGS on a random half (written by hand: a logistic regression is a few lines of torch and needs no
    extra dependency), scored on the other half; 0.5 means indistinguishable, 1.0 perfectly separated.
    """
    features = torch.cat([data_codes, noise_codes]).double()
    features = torch.cat([features, features.square()], dim=1)
    features = (features - features.mean(0)) / features.std(0).clamp_min(1e-8)
    labels = torch.cat([torch.zeros(len(data_codes)), torch.ones(len(noise_codes))]).double()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    weights = torch.zeros(features.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def logits(rows: Tensor) -> Tensor:
        return features[rows] @ weights[:-1] + weights[-1]

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(train), labels[train])
        loss = loss + 1e-4 * weights[:-1].square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return ((logits(test) > 0).double() == labels[test]).double().mean().item()


class Separability(Metric):
    """Held-out accuracy of a logistic classifier on codes and their squares telling the split's data codes (the
    evaluation pass's samples) from its noise examples' codes, at most CODES_LIMIT of each
    (:func:`code_separability`, seeded by the run seed); 0.5: indistinguishable, 1.0: perfectly separated."""

    name = "separability"
    description = "accuracy telling data codes from the data set's noise codes (data with noise of their own)"
    legend = "separability = accuracy telling data codes from noise codes"
    higher_is_better = True
    reads = frozenset({"codes", "noise_codes"})
    when = "only for splits with noise examples of their own (the synthetic task's test split)"
    order = 60

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        super().__init__(params, setting, prior)
        self.data_codes: list[Tensor] = []
        self.noise_codes: list[Tensor] = []

    @classmethod
    def reported(cls, setting: EvaluationSetting) -> bool:
        return setting.noise

    def add(self, batch: BatchView) -> None:
        if sum(len(codes) for codes in self.data_codes) < CODES_LIMIT:
            self.data_codes.append(batch.codes.float().cpu())

    def add_noise(self, codes: Tensor) -> None:
        if sum(len(c) for c in self.noise_codes) < CODES_LIMIT:
            self.noise_codes.append(codes.float().cpu())

    def value(self, elbo: ElboTotals) -> float | None:
        if not self.data_codes or not self.noise_codes:
            return None
        data, noise = (torch.cat(codes)[:CODES_LIMIT] for codes in (self.data_codes, self.noise_codes))
        return code_separability(data, noise, seed=self.setting.options.get("seed", 0))
