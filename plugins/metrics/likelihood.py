"""The likelihood figures: IW-NLL, -log p(x) by importance sampling (Burda et al. 2016), with its standard error
and the examples it covers; and for token data the perplexities per predicted token, from -ELBO and from IW-NLL.
All but the counts in nats per example; see docs/maths.md section 5."""

from __future__ import annotations

import math

from vaezoo.api import BatchView, ElboTotals, EvaluationSetting, Metric


class _ImportanceSums(Metric):
    """Running sums of the IW estimates of log p(x) under this instance's test prior, over IW-NLL's examples."""

    higher_is_better = False
    reads = frozenset({"importance_weights"})
    per_prior = True
    when = "only by evaluations that compute IW-NLL (eval.iw_samples > 0), never by a validation"

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        super().__init__(params, setting, prior)
        self.nll, self.squares, self.count, self.tokens = 0.0, 0.0, 0, 0

    @classmethod
    def reported(cls, setting: EvaluationSetting) -> bool:
        return setting.iw_samples > 0

    def add(self, batch: BatchView) -> None:
        estimate = batch.log_marginal(self.prior)
        if estimate is None:
            return
        self.nll += -estimate.sum().item()
        self.squares += estimate.double().square().sum().item()
        self.count += int(batch.iw_chosen.sum())
        if batch.tokens is not None:
            self.tokens += int(batch.tokens[batch.iw_chosen].sum().item())

    def mean(self) -> float:
        return self.nll / self.count


class ImportanceWeightedNLL(_ImportanceSums):
    """-log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), averaged over IW-NLL's examples."""

    name = "iw_nll"
    description = "-log p(x) by importance sampling (eval.iw_samples samples per example)"
    legend = "iw_nll = -log p(x) by importance sampling"
    order = 40

    def value(self, elbo: ElboTotals) -> float | None:
        return self.mean() if self.count else None


class ImportanceWeightedNLLError(_ImportanceSums):
    """The standard error of ``iw_nll``'s mean over its examples (the sample standard deviation / sqrt(n))."""

    name = "iw_nll_se"
    description = "standard error of iw_nll over its examples"
    legend = "iw_nll_se = standard error of iw_nll over its examples"
    order = 41

    def value(self, elbo: ElboTotals) -> float | None:
        if not self.count:
            return None
        mean = self.mean()
        variance = max(self.squares / self.count - mean**2, 0.0) * self.count / max(self.count - 1, 1)
        return math.sqrt(variance / self.count)


class ImportanceWeightedExamples(_ImportanceSums):
    """How many examples ``iw_nll`` averages over (``eval.iw_limit`` caps them)."""

    name = "iw_examples"
    description = "examples iw_nll averages over (a count)"
    legend = "iw_examples = examples iw_nll averages over (a count)"
    higher_is_better = True
    order = 42

    def value(self, elbo: ElboTotals) -> int | None:
        return self.count or None


class ElboPerplexity(Metric):
    """exp(-ELBO summed over the split / predicted tokens): the perplexity bound from the ELBO."""

    name = "ppl_elbo"
    description = "perplexity per predicted token from neg_elbo (token data)"
    legend = "ppl_* = perplexity per token (from neg_elbo, iw_nll)"
    reads = frozenset({"log_likelihood", "kl", "tokens"})
    per_prior = True
    when = "only for token data (text)"
    order = 50

    def __init__(self, params, setting: EvaluationSetting, prior: int = 0) -> None:
        super().__init__(params, setting, prior)
        self.tokens = 0

    @classmethod
    def reported(cls, setting: EvaluationSetting) -> bool:
        return setting.tokens

    def add(self, batch: BatchView) -> None:
        self.tokens += int(batch.tokens.sum().item())

    def value(self, elbo: ElboTotals) -> float:
        return exp_or_inf(elbo.neg_elbo / (self.tokens / elbo.count))


class ImportanceWeightedPerplexity(_ImportanceSums):
    """exp(IW-NLL summed over its examples / their predicted tokens): the perplexity He et al. report."""

    name = "ppl_iw"
    description = "perplexity per predicted token from iw_nll (token data)"
    legend = ""  # ppl_elbo's legend covers both
    reads = frozenset({"importance_weights", "tokens"})
    when = "only for token data, by evaluations that compute IW-NLL, never by a validation"
    order = 51

    @classmethod
    def reported(cls, setting: EvaluationSetting) -> bool:
        return setting.tokens and setting.iw_samples > 0

    def value(self, elbo: ElboTotals) -> float | None:
        return exp_or_inf(self.mean() / (self.tokens / self.count)) if self.count else None


def exp_or_inf(value: float) -> float:
    """exp(value), or inf where it would overflow a float."""
    return math.exp(value) if value < 700 else math.inf
