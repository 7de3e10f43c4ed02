"""Collapse metrics on held-out data, all in nats per example.

Axis legend: ``b`` batch, ``k`` importance samples, ``d`` latent, ``t`` tokens.

- ``neg_elbo = recon + kl`` with one z sample per example and the test prior p_test = N(0, s^2 I).
- ``mi``: I_q(x; z) = E_x KL(q(z|x) || q(z)), q(z) approximated by the mixture of the posteriors of an evaluation
  batch, so it is at most log(batch size), with both terms evaluated at the same sample (see
  :func:`mutual_information`). Batches of one example carry no estimate and are left out of its average.
- ``mi_he``: the same quantity by He et al. (2019)'s estimator, the one the papers report: the exact negative
  entropy as the first term, and q(z) the mixture over their evaluation batches (32 documents of one length, or
  50 images); see :func:`mutual_information_he`.
- ``au``: the number of latent dims whose Cov_x(E_q[z_d]) exceeds the threshold (0.01).
- ``iw_nll``: -log (1/k) sum_k p(x|z_k) p_test(z_k) / q(z_k|x), z_k ~ q(z|x), drawn ``iw_chunk`` samples at a
  time, the decoder running on at most ``iw_rows`` (examples x samples) at once, so memory stays bounded for
  k = 500 while each forward pass is as large as memory allows.
- ``ppl_elbo`` and ``ppl_iw`` (token data only): perplexity per predicted token, exp(sum of NLL / number of predicted
  tokens) over the split, with the NLL bounded by -ELBO or estimated by IW-NLL (He et al. report the latter). A
  decoder predicts every token but the padding and the start token: the words and the end token of each sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import einops
import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from vaezoo.components.distributions import diagonal_normal, kl_or_estimate
from vaezoo.components.interfaces import DataSpec, Decoder, Encoder


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


def is_diagonal_normal(posterior: Distribution) -> bool:
    """Whether ``posterior`` is a batch of diagonal Gaussians (what ``mi_he`` and the fast pairwise density need)."""
    return isinstance(posterior, Independent) and isinstance(posterior.base_dist, Normal) and posterior.mean.dim() == 2


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


def importance_weighted_log_likelihoods(
    decoder: Decoder,
    posterior: Distribution,
    priors: Sequence[Distribution],
    x: Tensor,
    samples: int,
    chunk: int,
    on_chunk: Callable[[int], object] | None = None,
    rows: int | None = None,
) -> Tensor:
    """log p(x) under each of ``priors``, ``'p b'``, estimated with the same ``samples`` importance samples from
    q(z|x); ``chunk`` samples per example are drawn at a time, and the decoder sees at most ``rows`` (examples
    times samples; default: all of the chunk's) at once, in groups of max(1, rows // chunk) examples: together
    they bound memory. ``on_chunk`` is told how many (samples times examples) each group did.

    Only log p(z) depends on the prior, so the decoder, the costly part, runs once for all of them, and the
    estimates under different priors are paired (their differences carry no sampling noise of their own)."""
    total = None
    remaining = samples
    while remaining > 0:
        k = min(chunk, remaining)
        z = posterior.sample((k,))  # 'k b d'
        log_px = torch.cat([decoder.log_prob(x[g], z[:, g]) for g in _example_groups(x.shape[0], k, rows, on_chunk)], 1)
        shared = log_px - posterior.log_prob(z)  # 'k b'
        log_w = torch.stack([shared + prior.log_prob(z) for prior in priors])  # 'p k b'
        chunk_lse = torch.logsumexp(log_w, dim=1)  # 'p b'
        total = chunk_lse if total is None else torch.logaddexp(total, chunk_lse)
        remaining -= k
    return total - math.log(samples)


def _example_groups(
    examples: int, samples: int, rows: int | None, on_group: Callable[[int], object] | None
) -> Iterator[slice]:
    """Slices of ``examples`` of at most max(1, rows // samples) each (all at once without ``rows``), telling
    ``on_group`` each one's examples times samples once it has been used."""
    size = examples if rows is None else max(1, rows // samples)
    for start in range(0, examples, size):
        group = slice(start, min(start + size, examples))
        yield group
        if on_group is not None:
            on_group(samples * (group.stop - group.start))


def importance_weighted_log_likelihood(
    decoder: Decoder, posterior: Distribution, prior: Distribution, x: Tensor, samples: int, chunk: int
) -> Tensor:
    """log p(x) estimated with ``samples`` importance samples from q(z|x), ``'b'``; ``chunk`` bounds memory."""
    return importance_weighted_log_likelihoods(decoder, posterior, [prior], x, samples, chunk)[0]


@torch.no_grad()
def evaluate(
    encoder: Encoder,
    decoder: Decoder,
    test_prior: Distribution,
    batches: Iterable[Tensor],
    *,
    iw_samples: int = 0,
    iw_chunk: int = 100,
    iw_rows: int | None = None,
    au_threshold: float = 0.01,
    mi_he_batch: int | None = None,
    iw_mask: Tensor | None = None,
) -> dict[str, float]:
    """Every metric over ``batches`` (examples weighted equally); IW-NLL only when ``iw_samples > 0`` (memory bounded
    by ``iw_chunk`` and ``iw_rows``, see :func:`importance_weighted_log_likelihoods`; on the examples of
    ``iw_mask``, see :func:`evaluate_priors`); perplexities when the decoder's data are tokens."""
    options = {"iw_samples": iw_samples, "iw_chunk": iw_chunk, "iw_rows": iw_rows, "au_threshold": au_threshold}
    options |= {"mi_he_batch": mi_he_batch, "iw_mask": iw_mask}
    return evaluate_priors(encoder, decoder, {"": test_prior}, batches, **options)[""]


@torch.no_grad()
def evaluate_priors(
    encoder: Encoder,
    decoder: Decoder,
    test_priors: Mapping[str, Distribution],
    batches: Iterable[Tensor],
    *,
    iw_samples: int = 0,
    iw_chunk: int = 100,
    iw_rows: int | None = None,
    au_threshold: float = 0.01,
    mi_he_batch: int | None = None,
    iw_mask: Tensor | None = None,
    on_progress: Callable[[int], object] | None = None,
) -> dict[str, dict[str, float]]:
    """The metrics of :func:`evaluate` under each of ``test_priors``, keyed alike, in one pass over ``batches``.

    ReconE, MI and AU do not depend on the test prior and are computed once; KL and IW-NLL come from the same
    posterior samples under every prior, so each prior's figures equal an evaluation under it alone with the same
    random state, and the decoder runs once for all priors. ``mi_he`` (:func:`mutual_information_he`, diagonal
    Gaussian posteriors only) aggregates over He et al.'s batches of ``mi_he_batch`` examples (default 32
    documents of one length for token data, else 50), drawn after everything else so that it changes no other
    figure. ``iw_mask`` (bool ``'n'`` over the examples of ``batches`` in order; default all) chooses the examples
    of IW-NLL, whose figures then are the mean over them (``iw_nll``), its standard error over examples
    (``iw_nll_se``) and their number (``iw_examples``). ``on_progress`` is told the work done as it goes:
    importance samples times examples with IW-NLL, else examples."""
    totals = _PassTotals.starting(test_priors, getattr(decoder, "spec", None))
    for x in batches:
        totals.add(x, encoder, decoder, (iw_samples, iw_chunk, iw_rows), iw_mask, on_progress)
    return totals.metrics(au_threshold, mi_he_batch)


@attrs.define
class _PassTotals:
    """The running sums of one evaluation pass (:func:`evaluate_priors`), batch by batch, and the metrics of them."""

    names: list[str]
    priors: list[Distribution]
    per_prior: dict[str, dict[str, float]]
    spec: DataSpec | None
    shared: dict[str, float] = attrs.Factory(lambda: {"recon": 0.0, "mi": 0.0})
    count: int = 0
    mi_count: int = 0
    iw_count: int = 0
    iw_tokens: int = 0
    tokens: int | None = None
    means: list[Tensor] = attrs.Factory(list)
    scales: list[Tensor] = attrs.Factory(list)
    lengths: list[Tensor] = attrs.Factory(list)
    gaussian: bool = True

    @classmethod
    def starting(cls, test_priors: Mapping[str, Distribution], spec: DataSpec | None) -> _PassTotals:
        per_prior = {name: {"kl": 0.0, "iw_nll": 0.0, "iw_nll_sq": 0.0} for name in test_priors}
        tokens = 0 if spec is not None and spec.kind == "tokens" else None
        return cls(list(test_priors), list(test_priors.values()), per_prior, spec, tokens=tokens)

    def add(
        self,
        x: Tensor,
        encoder: Encoder,
        decoder: Decoder,
        iw_settings: tuple[int, int, int | None],
        iw_mask: Tensor | None,
        on_progress: Callable[[int], object] | None,
    ) -> None:
        """Add batch ``x``: its ReconE, MI, posterior statistics and, under each prior, KL and IW-NLL sums."""
        posterior = encoder(x)
        z = posterior.sample()
        b = z.shape[0]
        self.shared["recon"] += -decoder.log_prob(x, z.unsqueeze(0)).sum().item()
        if b > 1:
            self.shared["mi"] += mutual_information(posterior).item() * b
            self.mi_count += b
        chosen = torch.ones(b, dtype=torch.bool) if iw_mask is None else iw_mask[self.count : self.count + b]
        chosen = chosen.to(x.device)
        iw = (iw_settings[0] if bool(chosen.any()) else 0, *iw_settings[1:])
        # a subset is encoded again (a distribution cannot be indexed; the encoder is deterministic in eval mode)
        iw_part = (x, posterior) if bool(chosen.all()) else (x[chosen], encoder(x[chosen]) if iw[0] else None)
        batch_sums = _prior_sums(decoder, posterior, self.priors, z, iw, iw_part, on_progress)
        for name, sums in zip(self.names, batch_sums, strict=True):
            self.per_prior[name] = {metric: self.per_prior[name][metric] + total for metric, total in sums.items()}
        if iw[0] > 0:
            self.iw_count += int(chosen.sum())
        self._add_statistics(x, posterior, chosen if iw[0] > 0 else None)

    def _add_statistics(self, x: Tensor, posterior: Distribution, iw_chosen: Tensor | None) -> None:
        """The posterior means (and scales, while every posterior is a diagonal Gaussian) and token counts."""
        self.means.append(posterior.mean)
        self.gaussian = self.gaussian and is_diagonal_normal(posterior)
        if self.gaussian:
            self.scales.append(posterior.stddev)
        self.count += x.shape[0]
        if self.tokens is not None:
            self.lengths.append(predicted_tokens(x, self.spec))
            self.tokens += int(self.lengths[-1].sum().item())
            self.iw_tokens += int(self.lengths[-1][iw_chosen].sum().item()) if iw_chosen is not None else 0

    def metrics(self, au_threshold: float, mi_he_batch: int | None) -> dict[str, dict[str, float]]:
        """Each prior's metrics from the totals; ``mi_he`` drawn last, so that it changes no other figure."""
        common = {
            "recon": self.shared["recon"] / self.count,
            "mi": self.shared["mi"] / self.mi_count if self.mi_count else 0.0,
            "au": active_units(torch.cat(self.means), au_threshold),
        }
        tokens = self.tokens
        if self.gaussian:
            size = mi_he_batch or (32 if tokens is not None else 50)
            groups = he_groups(self.count, size, torch.cat(self.lengths) if tokens is not None else None)
            common["mi_he"] = mutual_information_he(torch.cat(self.means), torch.cat(self.scales), groups)
        per_example = None
        if tokens:
            per_example = {
                "neg_elbo": tokens / self.count,
                "iw_nll": self.iw_tokens / self.iw_count if self.iw_count else 0.0,
            }
        return {
            name: _prior_metrics(common, sums, self.count, self.iw_count, per_example)
            for name, sums in self.per_prior.items()
        }


def _prior_sums(
    decoder: Decoder,
    posterior: Distribution,
    priors: Sequence[Distribution],
    z: Tensor,
    iw: tuple[int, int, int | None],
    iw_part: tuple[Tensor, Distribution | None],
    on_progress: Callable[[int], object] | None,
) -> list[dict[str, float]]:
    """The batch's sums under each prior of KL (of ``posterior`` at its sample ``z``) and of IW-NLL and its square
    over the examples of ``iw_part`` (those examples and their posterior; 0 when the ``iw`` settings' samples are
    0); ``iw`` is (samples, chunk, rows); ``on_progress`` is told the work done (importance samples times
    examples, and the examples without IW-NLL)."""
    iw_samples, iw_chunk, iw_rows = iw
    sums = [
        {"kl": kl_or_estimate(posterior, prior, z).sum().item(), "iw_nll": 0.0, "iw_nll_sq": 0.0} for prior in priors
    ]
    iw_x, iw_posterior = iw_part
    without_iw = z.shape[0]
    if iw_samples > 0:
        log_px = importance_weighted_log_likelihoods(
            decoder, iw_posterior, priors, iw_x, iw_samples, iw_chunk, on_progress, rows=iw_rows
        )
        for prior_sums, estimate in zip(sums, log_px, strict=True):
            prior_sums["iw_nll"] = -estimate.sum().item()
            prior_sums["iw_nll_sq"] = estimate.double().square().sum().item()
        without_iw -= iw_x.shape[0]
    if on_progress is not None and without_iw:
        on_progress(without_iw)
    return sums


def _prior_metrics(
    common: dict[str, float], sums: dict[str, float], count: int, iw_count: int, tokens: dict[str, float] | None
) -> dict[str, float]:
    """One test prior's metrics: the shared ones, its KL as a mean over the ``count`` examples, -ELBO, IW-NLL as a
    mean over its ``iw_count`` examples with the standard error of that mean (none when 0), and the perplexities
    from ``tokens``, the mean predicted tokens per example of -ELBO's examples and of IW-NLL's."""
    metrics = {**common, "kl": sums["kl"] / count}
    metrics["neg_elbo"] = metrics["recon"] + metrics["kl"]
    if iw_count:
        mean = sums["iw_nll"] / iw_count
        variance = max(sums["iw_nll_sq"] / iw_count - mean**2, 0.0) * iw_count / max(iw_count - 1, 1)
        metrics.update(iw_nll=mean, iw_nll_se=math.sqrt(variance / iw_count), iw_examples=iw_count)
    if tokens is not None:
        metrics.update(perplexities(metrics, tokens))
    return metrics


def predicted_tokens(x: Tensor, spec: DataSpec) -> Tensor:
    """The tokens a decoder predicts in each sequence of ``x 'b t'``, ``'b'``: every position holding neither the
    padding nor the start token (ids the spec leaves unset exclude nothing)."""
    counted = torch.ones_like(x, dtype=torch.bool)
    for excluded in (spec.pad_id, spec.bos_id):
        if excluded is not None:
            counted &= x != excluded
    return counted.sum(dim=1)


def perplexities(metrics: dict[str, float], tokens: dict[str, float]) -> dict[str, float]:
    """exp(NLL per predicted token): ``ppl_elbo`` from ``neg_elbo`` and, when present, ``ppl_iw`` from ``iw_nll``.

    The metrics are means per example, so NLL per token is their ratio to ``tokens[metric]``, the mean number of
    predicted tokens per example of the examples the metric averages over."""
    sources = {"ppl_elbo": "neg_elbo", "ppl_iw": "iw_nll"}
    return {name: _exp(metrics[source] / tokens[source]) for name, source in sources.items() if source in metrics}


def _exp(value: float) -> float:
    return math.exp(value) if value < 700 else math.inf


def active_units(posterior_means: Tensor, threshold: float = 0.01) -> int:
    """Dims whose posterior mean varies across examples by more than ``threshold``: ``'b d' -> int`` (0 for fewer
    than two examples, which cannot vary)."""
    if len(posterior_means) < 2:
        return 0
    return int((posterior_means.var(dim=0) > threshold).sum().item())


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
