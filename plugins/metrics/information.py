"""Mutual information between data and code, two estimators: ``mi`` (paired, over evaluation batches) and
``mi_he`` (He et al. 2019's, the one the papers report). Both in nats per example; see docs/maths.md section 5.

Axis legend: ``b`` batch, ``d`` latent, ``n`` examples of the split, ``g`` a group of examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import einops
import torch
from torch import Tensor
from torch.distributions import Distribution

from vaezoo.api import BatchView, ElboTotals, EvaluationSetting, Metric, diagonal_normal, is_diagonal_normal


def mutual_information(posterior: Distribution) -> Tensor:
    """MI estimate on one batch: mean_i [log q(z_i|x_i) - log (1/b) sum_j q(z_i|x_j)], z_i ~ q(z|x_i).

    He et al.'s estimator has the same expectation but uses the exact E[log q(z|x)] = -H for the first term.
    Pairing both terms with the same sample z_i cancels their common noise: a batch of identical posteriors
    (full collapse) gives exactly 0 instead of noise of std sqrt(d / 2b) nats (0.4 for 32 dims and 100
    examples, the size of the effects being measured), and every batch's estimate is at most log(b).
    """
    z = posterior.sample()  # 'b d'
    batch = z.shape[0]
    log_q_cross = pairwise_log_density(posterior, z)  # 'b b': [i, j] = log q(z_i | x_j)
    log_aggregate = torch.logsumexp(log_q_cross, dim=1) - math.log(batch)
    return (log_q_cross.diagonal() - log_aggregate).mean().to(z.dtype)


def pairwise_log_density(posterior: Distribution, z: Tensor) -> Tensor:
    """log q(z_i | x_j) for every pair of a batch's samples ``z 'b d'`` and posteriors: ``'b b'``, ``[i, j]``.

    torch.distributions evaluates each of the b^2 pairs in each of the d dims, and on an evaluation batch of 500
    that cost a quarter of the encoder pass of He et al.'s image encoder. For a diagonal Gaussian (every
    built-in encoder) the sum over dims is expanded here instead, sum_d (z_id - m_jd)^2 / s_jd^2 = z_i^2 . p_j -
    2 z_i . (m_j p_j) + m_j^2 . p_j with p = 1 / s^2, two matrix products; in float64, so that the expansion's
    large, nearly cancelling terms (sharp posteriors far from 0) lose nothing a float32 result would keep. Any
    other posterior goes through its own ``log_prob``."""
    if not (is_diagonal_normal(posterior) and z.dim() == 2):
        return posterior.log_prob(einops.rearrange(z, "i d -> i 1 d"))
    loc, scale, z = (t.double() for t in (posterior.base_dist.loc, posterior.base_dist.scale, z))  # 'j d' x 2, 'i d'
    precision = scale.pow(-2)
    squared_distance = z.square() @ precision.T - 2 * z @ (loc * precision).T + (loc.square() * precision).sum(1)
    log_normaliser = -scale.log().sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)  # 'j'
    return -0.5 * squared_distance + log_normaliser  # 'i j'


def mutual_information_he(loc: Tensor, scale: Tensor, groups: Sequence[Tensor]) -> float:
    """He et al. (2019)'s MI estimate over diagonal Gaussian posteriors N(loc, diag scale^2) (``'n d'`` each).

    Within each group G of example indices, z_i ~ q(z|x_i) and the estimate is mean_i [-H(q(z|x_i)) -
    log (1/|G|) sum_{j in G} q(z_i|x_j)]; the groups' estimates are averaged weighted by their sizes, as He et al.
    average over their test batches. The first term is exact where :func:`mutual_information` pairs it with the
    sample, so this estimate carries the noise of the second term alone (about sqrt(d / 2|G|) nats on a collapsed
    encoder) and is bounded by log |G| per group."""
    total = 0.0
    for rows in groups:
        posterior = diagonal_normal(loc[rows], scale[rows].log())
        z = posterior.sample()  # 'g d'
        log_aggregate = torch.logsumexp(pairwise_log_density(posterior, z), dim=1) - math.log(len(rows))
        total += (-posterior.entropy().double() - log_aggregate).sum().item()
    return total / sum(len(rows) for rows in groups)


def he_groups(count: int, size: int, lengths: Tensor | None = None) -> list[Tensor]:
    """He et al.'s evaluation batches over ``count`` examples: images in groups of ``size`` drawn at random (from
    torch's RNG, the evaluation's seeded stream), as their shuffling test loader draws them; for documents
    (``lengths 'n'`` given), the documents of each length in their order, in groups of at most ``size``, since
    their text batches hold documents of one length.

    Random, not consecutive, image groups matter: a test split stored class by class (Omniglot's, character by
    character) puts a few classes in each consecutive group, whose aggregate posterior is then narrower than the
    split's, and He et al.'s MI reads about 0.1 nats low."""
    if lengths is None:
        return list(torch.randperm(count).split(size))
    order = torch.sort(lengths, stable=True).indices
    ordered = lengths[order]
    return [rows for length in torch.unique_consecutive(ordered) for rows in order[ordered == length].split(size)]


class PairedMutualInformation(Metric):
    """I_q(x; z) = E_x KL(q(z|x) || q(z)), q(z) the mixture of an evaluation batch's posteriors, both terms at the
    same sample (:func:`mutual_information`); batches of one example carry no estimate and are left out."""

    name = "mi"
    description = "I(x; z), paired estimate over evaluation batches (at most log of the batch size)"
    legend = "mi = I(x; z), paired estimate over evaluation batches"
    higher_is_better = True
    reads = frozenset({"posterior"})
    order = 10

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        super().__init__(params, setting, prior)
        self.total, self.count = 0.0, 0

    def add(self, batch: BatchView) -> None:
        b = batch.x.shape[0]
        if b > 1:
            self.total += mutual_information(batch.posterior).item() * b
            self.count += b

    def value(self, elbo: ElboTotals) -> float:
        return self.total / self.count if self.count else 0.0


class HeMutualInformation(Metric):
    """He et al. (2019)'s MI estimate (:func:`mutual_information_he`) over their evaluation batches
    (:func:`he_groups`: ``eval.mi_he_batch`` examples, default 32 documents of one length or 50 images), drawn
    after every batch so that it changes no other figure. Diagonal Gaussian posteriors only."""

    name = "mi_he"
    description = "I(x; z), He et al.'s estimate over their evaluation batches (the papers' MI)"
    legend = "mi_he = I(x; z), He et al.'s estimate (the papers' MI)"
    higher_is_better = True
    reads = frozenset({"posterior", "tokens"})
    when = "only when the encoder's posterior is a diagonal Gaussian"
    order = 20

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        super().__init__(params, setting, prior)
        self.means: list[Tensor] = []
        self.scales: list[Tensor] = []
        self.lengths: list[Tensor] = []
        self.gaussian = True

    @classmethod
    def reported(cls, setting: EvaluationSetting) -> bool:
        return setting.diagonal_gaussian

    def add(self, batch: BatchView) -> None:
        self.gaussian = self.gaussian and is_diagonal_normal(batch.posterior)
        if self.gaussian:
            self.means.append(batch.posterior.mean)
            self.scales.append(batch.posterior.stddev)
        if batch.tokens is not None:
            self.lengths.append(batch.tokens)

    def value(self, elbo: ElboTotals) -> float | None:
        if not self.gaussian or not self.means:
            return None
        tokens = self.setting.tokens
        size = self.setting.options.get("mi_he_batch") or (32 if tokens else 50)
        groups = he_groups(elbo.count, size, torch.cat(self.lengths) if tokens else None)
        return mutual_information_he(torch.cat(self.means), torch.cat(self.scales), groups)
