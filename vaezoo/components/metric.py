"""What a metric is: a component that reads what the one evaluation pass offers of each batch and reports one
number per evaluation.

The pass (:func:`vaezoo.evaluation.evaluation_pass.evaluate_priors`) computes the ELBO's terms itself
(:data:`ELBO_TERMS`: ``neg_elbo``, ``recon``, ``kl``); every other figure, the built-in collapse metrics
included, is a registered :class:`Metric`. A metric declares:

- its ``name`` (a results.json key, a suite column, an early-stopping or selection metric), a one-line
  ``legend`` for printed tables and whether ``higher_is_better``;
- what it ``reads`` (:data:`READS`), so that the pass computes the costly parts (importance weights, the codes of
  the noise examples) only when some metric needs them;
- when it is ``reported`` (:meth:`Metric.reported`, decided before training from the data, the model and the
  evaluation's settings, and said in words by ``when``), and whether it depends on the test prior (``per_prior``:
  one instance per test prior evaluated in the pass).

An evaluation creates a metric (``Metric(params, setting, prior)``), calls :meth:`Metric.add` with each batch's
:class:`BatchView`, :meth:`Metric.add_noise` with the noise examples' codes when it reads them, and then
:meth:`Metric.value`. Metrics are visited in ``order`` (then by name): a metric that draws random numbers does so
in the evaluation's seeded stream, so the order fixes every figure.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import attrs
from torch import Tensor
from torch.distributions import Distribution

from vaezoo.components.interfaces import DataSpec
from vaezoo.plugins.component import Component

#: What the pass offers a metric. ``posterior``: q(z|x) of each batch; ``codes``: the sample z ~ q(z|x) of ReconE
#: and KL; ``log_likelihood``: log p(x|z) at those codes, ``'b'``; ``kl``: KL(q(z|x) || test prior) per example;
#: ``importance_weights``: IW estimates of log p(x) under the test prior on IW-NLL's examples (only when
#: ``eval.iw_samples > 0``); ``tokens``: the tokens the decoder predicts in each example (token data);
#: ``noise_codes``: codes of the split's noise examples (data that have a noise distribution of their own).
READS = ("posterior", "codes", "log_likelihood", "kl", "importance_weights", "tokens", "noise_codes")
#: The figures the pass computes itself, with their legends: the ELBO's terms, in nats per example.
ELBO_TERMS = {
    "neg_elbo": "neg_elbo = recon + kl",
    "recon": "recon = -E_q log p(x|z)",
    "kl": "kl = KL(q(z|x) || test prior)",
}


@attrs.frozen
class EvaluationSetting:
    """What decides which metrics an evaluation reports, and how: the data's form, the importance samples, whether
    the encoder's posterior is a diagonal Gaussian, whether the evaluated split has noise examples, and the
    evaluation's settings that metrics read (``au_threshold``, ``mi_he_batch``: the ``eval`` config's)."""

    spec: DataSpec | None
    iw_samples: int
    diagonal_gaussian: bool
    noise: bool
    options: Mapping[str, Any] = attrs.Factory(dict)

    @property
    def tokens(self) -> bool:
        return self.spec is not None and self.spec.kind == "tokens"


@attrs.define
class BatchView:
    """One batch as the pass offers it to metrics (see :data:`READS`); ``'b'`` the batch's examples. The
    importance weights are computed on first use, once for every test prior, by ``importance``."""

    x: Tensor
    posterior: Distribution
    codes: Tensor  # 'b d'
    log_likelihood: Tensor  # 'b'
    kl: list[Tensor]  # per test prior, 'b'
    tokens: Tensor | None  # 'b', token data only
    #: Which examples IW-NLL covers, bool ``'b'`` (``eval.iw_limit``).
    iw_chosen: Tensor
    importance: Callable[[], list[Tensor] | None]
    _log_marginals: list[Tensor] | None = attrs.field(default=None, init=False)
    _computed: bool = attrs.field(default=False, init=False)

    def log_marginal(self, prior: int) -> Tensor | None:
        """IW estimates of log p(x) under test prior number ``prior`` on the examples of :attr:`iw_chosen`, ``'i'``;
        None when the evaluation computes no IW-NLL or this batch has none of its examples."""
        if not self._computed:
            self._log_marginals, self._computed = self.importance(), True
        return None if self._log_marginals is None else self._log_marginals[prior]


@attrs.frozen
class ElboTotals:
    """The pass's own figures under one test prior, for metrics derived from them (perplexities): means per
    example over ``count`` examples."""

    neg_elbo: float
    recon: float
    kl: float
    count: int


class Metric(Component, abc.ABC):
    """A figure of an evaluation. Subclasses set ``name``, ``legend``, ``higher_is_better``, ``reads`` and, when
    it is not always reported, ``when`` and :meth:`reported`; then implement :meth:`add` (and :meth:`add_noise`)
    and :meth:`value`. ``self.prior`` is the index of the test prior the instance reports under (0 for a metric
    that does not depend on it)."""

    kind: ClassVar[str] = "metric"
    legend: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = False
    reads: ClassVar[frozenset[str]] = frozenset()
    #: Whether the figure depends on the test prior (one instance per prior evaluated).
    per_prior: ClassVar[bool] = False
    #: When the metric is reported, in words, for a metric not reported by every evaluation.
    when: ClassVar[str] = ""
    #: Where the metric comes in the pass and in printed tables (lower first; ties by name).
    order: ClassVar[float] = 100.0

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        unknown = set(cls.reads) - set(READS)
        if unknown:
            raise TypeError(f"metric {cls.__qualname__} reads {sorted(unknown)}; a metric reads some of {READS}")

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        self.params, self.setting, self.prior = params, setting, prior

    @classmethod
    def reported(cls, setting: EvaluationSetting) -> bool:
        """Whether an evaluation in ``setting`` reports this metric (default: always)."""
        return True

    def add(self, batch: BatchView) -> None:
        """Take in one batch of the evaluated split."""

    def add_noise(self, codes: Tensor) -> None:
        """Take in codes ``'n d'`` of the split's noise examples (only for a metric that reads ``noise_codes``;
        called after every batch's :meth:`add` and after every metric not reading them has its value)."""

    @abc.abstractmethod
    def value(self, elbo: ElboTotals) -> float | None:
        """The figure, once every batch was added; None when there is nothing to report (then it is left out)."""


def evaluation_order(metrics: Iterable[type[Metric]]) -> list[type[Metric]]:
    """``metrics`` in the order an evaluation visits and prints them: by ``order``, then by name."""
    return sorted(metrics, key=lambda metric: (metric.order, metric.name))
