"""The one evaluation pass: the ELBO's terms of a split under one or several test priors, and every registered
metric, over the same posterior samples. All figures in nats per example unless a metric says otherwise.

Axis legend: ``b`` batch, ``k`` importance samples, ``d`` latent, ``p`` test priors, ``t`` tokens.

- ``neg_elbo = recon + kl`` with one z sample per example and the test prior (for example N(0, s^2 I)), computed
  here; ``kl`` analytically where torch.distributions knows it, else at the sample.
- What metrics read (:data:`vaezoo.components.metric.READS`) is computed once per batch and only when some metric
  reads it: the importance weights (``iw_samples`` samples from q(z|x) on the examples of ``iw_mask``, drawn
  ``iw_chunk`` at a time with the decoder on at most ``iw_rows`` examples x samples at once, so memory stays
  bounded for k = 500), the token counts, the codes of the noise examples.
- Metrics are visited in their ``order``; the random numbers each draws come from the evaluation's stream in that
  order, and the noise examples are encoded after every other metric has its value, so adding a metric that
  reads them changes no other figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import attrs
import torch
from torch import Tensor
from torch.distributions import Distribution

from vaezoo.components.distributions import is_diagonal_normal, kl_or_estimate
from vaezoo.components.interfaces import DataSpec, Decoder, Encoder
from vaezoo.components.metric import BatchView, ElboTotals, EvaluationSetting, Metric, evaluation_order
from vaezoo.plugins.loading import default_plugins
from vaezoo.runs.session import registered_metrics


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


def predicted_tokens(x: Tensor, spec: DataSpec) -> Tensor:
    """The tokens a decoder predicts in each sequence of ``x 'b t'``, ``'b'``: every position holding neither the
    padding nor the start token (ids the spec leaves unset exclude nothing)."""
    counted = torch.ones_like(x, dtype=torch.bool)
    for excluded in (spec.pad_id, spec.bos_id):
        if excluded is not None:
            counted &= x != excluded
    return counted.sum(dim=1)


@torch.no_grad()
def evaluate(
    encoder: Encoder, decoder: Decoder, test_prior: Distribution, batches: Iterable[Tensor], **options: object
) -> dict[str, float]:
    """Every figure over ``batches`` (examples weighted equally) under ``test_prior``: :func:`evaluate_priors` with
    one prior, and the same keyword options."""
    return evaluate_priors(encoder, decoder, {"": test_prior}, batches, **options)[""]


@torch.no_grad()
def evaluate_priors(
    encoder: Encoder,
    decoder: Decoder,
    test_priors: Mapping[str, Distribution],
    batches: Iterable[Tensor],
    *,
    metrics: Sequence[type[Metric]] | None = None,
    iw_samples: int = 0,
    iw_chunk: int = 100,
    iw_rows: int | None = None,
    au_threshold: float = 0.01,
    mi_he_batch: int | None = None,
    iw_mask: Tensor | None = None,
    noise_batches: Iterable[Tensor] | None = None,
    seed: int = 0,
    on_progress: Callable[[int], object] | None = None,
) -> dict[str, dict[str, float]]:
    """The ELBO's terms and every metric that applies, under each of ``test_priors`` (keyed alike), in one pass.

    ``metrics``: the metric classes to compute (default: every registered one); each reports when its
    ``reported`` says so for this evaluation. ReconE and the prior-independent metrics are computed once; KL and
    the per-prior metrics (IW-NLL) come from the same posterior samples under every prior, so each prior's figures
    equal an evaluation under it alone with the same random state, and the decoder runs once for all priors.
    ``iw_mask`` (bool ``'n'`` over the examples of ``batches`` in order; default all) chooses IW-NLL's examples.
    ``au_threshold``, ``mi_he_batch`` and ``seed`` (the run's) are handed to the metrics
    (``EvaluationSetting.options``).
    ``noise_batches``: the split's noise examples, for metrics that read their codes. ``on_progress`` is told the
    work done as it goes: importance samples times examples with IW-NLL, else examples."""
    options = {"au_threshold": au_threshold, "mi_he_batch": mi_he_batch, "seed": seed}
    chosen = metrics if metrics is not None else registered_metrics(default_plugins().registry)
    evaluation = _Pass(test_priors, chosen, getattr(decoder, "spec", None), options, noise_batches is not None)
    for x in batches:
        evaluation.add(x, encoder, decoder, (iw_samples, iw_chunk, iw_rows), iw_mask, on_progress)
    return evaluation.figures(encoder, noise_batches)


@attrs.define
class _Pass:
    """One evaluation pass, batch by batch: the ELBO's running sums, and the metrics that apply, created at the
    first batch (whose posterior says whether the encoder's is a diagonal Gaussian)."""

    priors: Mapping[str, Distribution]
    metric_classes: Sequence[type[Metric]]
    spec: DataSpec | None
    options: dict
    noise: bool
    recon: float = 0.0
    kl: list[float] = attrs.Factory(list)
    count: int = 0
    #: (metric, test prior it reports under or None for every prior), in evaluation order
    metrics: list[tuple[Metric, str | None]] | None = None

    def _start(self, posterior: Distribution, iw_samples: int) -> None:
        setting = EvaluationSetting(self.spec, iw_samples, is_diagonal_normal(posterior), self.noise, self.options)
        self.kl = [0.0] * len(self.priors)
        self.metrics = []
        for metric in evaluation_order(self.metric_classes):
            if metric.reported(setting):
                names = list(self.priors) if metric.per_prior else [None]
                self.metrics += [(metric(metric.Params(), setting, i), name) for i, name in enumerate(names)]

    def add(
        self,
        x: Tensor,
        encoder: Encoder,
        decoder: Decoder,
        iw_settings: tuple[int, int, int | None],
        iw_mask: Tensor | None,
        on_progress: Callable[[int], object] | None,
    ) -> None:
        """Add batch ``x``: its ELBO sums under each prior, then each metric's reading of it."""
        posterior = encoder(x)
        z = posterior.sample()  # 'b d'
        b = z.shape[0]
        if self.metrics is None:
            self._start(posterior, iw_settings[0])
        log_likelihood = decoder.log_prob(x, z.unsqueeze(0))
        self.recon += -log_likelihood.sum().item()
        kl = [kl_or_estimate(posterior, prior, z) for prior in self.priors.values()]
        self.kl = [total + per_example.sum().item() for total, per_example in zip(self.kl, kl, strict=True)]
        chosen = torch.ones(b, dtype=torch.bool) if iw_mask is None else iw_mask[self.count : self.count + b]
        chosen = chosen.to(x.device)
        importance = _Importance(x, posterior, encoder, decoder, list(self.priors.values()), chosen, iw_settings)
        tokens = predicted_tokens(x, self.spec) if self.spec is not None and self.spec.kind == "tokens" else None
        log_likelihood = log_likelihood.reshape(b)
        view = BatchView(x, posterior, z, log_likelihood, kl, tokens, chosen, lambda: importance(on_progress))
        for metric, _ in self.metrics:
            metric.add(view)
        if on_progress is not None and b - importance.examples:
            on_progress(b - importance.examples)
        self.count += b

    def figures(self, encoder: Encoder, noise_batches: Iterable[Tensor] | None) -> dict[str, dict[str, float]]:
        """Each prior's figures: the ELBO's terms, then the metrics' values in order (the ones reading noise codes
        last, after the noise examples are encoded)."""
        recon = self.recon / self.count
        elbo = {
            name: ElboTotals(recon + kl / self.count, recon, kl / self.count, self.count)
            for name, kl in zip(self.priors, self.kl, strict=True)
        }
        figures = {name: {"neg_elbo": e.neg_elbo, "recon": e.recon, "kl": e.kl} for name, e in elbo.items()}
        values: dict[int, float | None] = {}
        noise_readers = [(i, m) for i, (m, _) in enumerate(self.metrics) if "noise_codes" in m.reads]
        for i, (metric, name) in enumerate(self.metrics):
            if "noise_codes" not in metric.reads:
                values[i] = metric.value(elbo[name if name is not None else next(iter(elbo))])
        if noise_readers and noise_batches is not None:
            for noise in noise_batches:
                codes = encoder(noise).sample()
                for _, metric in noise_readers:
                    metric.add_noise(codes)
        for i, metric in noise_readers:
            values[i] = metric.value(next(iter(elbo.values()))) if noise_batches is not None else None
        for i, (metric, name) in enumerate(self.metrics):
            for prior in [name] if name is not None else figures:
                if values[i] is not None:
                    figures[prior][metric.name] = values[i]
        return figures


@attrs.define
class _Importance:
    """A batch's IW estimates of log p(x) under every test prior on its examples chosen for IW-NLL, computed when a
    metric first asks (:attr:`BatchView.log_marginal`); ``examples`` says on how many it was computed."""

    x: Tensor
    posterior: Distribution
    encoder: Encoder
    decoder: Decoder
    priors: list[Distribution]
    chosen: Tensor  # bool 'b'
    settings: tuple[int, int, int | None]  # samples, chunk, rows
    examples: int = 0

    def __call__(self, on_progress: Callable[[int], object] | None) -> list[Tensor] | None:
        samples, chunk, rows = self.settings
        if samples <= 0 or not bool(self.chosen.any()):
            return None
        if bool(self.chosen.all()):
            x, posterior = self.x, self.posterior
        else:  # a distribution cannot be indexed; the encoder is deterministic in eval mode
            x = self.x[self.chosen]
            posterior = self.encoder(x)
        self.examples = x.shape[0]
        estimates = importance_weighted_log_likelihoods(
            self.decoder, posterior, self.priors, x, samples, chunk, on_progress, rows=rows
        )
        return list(estimates)  # 'p i' -> per prior 'i'
