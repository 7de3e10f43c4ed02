"""The names of the test metrics and their legend. Free of torch, so that the command line and benchmark configs
can use them without loading it; :mod:`vaezoo.evaluation.metrics` computes the metrics."""

from __future__ import annotations

#: Every test metric a run reports (``results.json``, ``vaezoo eval``), in the order they are shown.
METRIC_NAMES = (
    "neg_elbo",
    "recon",
    "kl",
    "mi",
    "mi_he",
    "au",
    "iw_nll",
    "iw_nll_se",
    "iw_examples",
    "ppl_elbo",
    "ppl_iw",
    "separability",
    "test_prior_variance",
)
#: What each metric is, for the legend under a printed table (nats per example unless said otherwise).
METRIC_LEGEND = {
    "neg_elbo": "neg_elbo = recon + kl",
    "recon": "recon = -E_q log p(x|z)",
    "kl": "kl = KL(q(z|x) || test prior)",
    "mi": "mi = I(x; z), paired estimate over evaluation batches",
    "mi_he": "mi_he = I(x; z), He et al.'s estimate (the papers' MI)",
    "au": "au = active latent dims (a count)",
    "iw_nll": "iw_nll = -log p(x) by importance sampling",
    "iw_nll_se": "iw_nll_se = standard error of iw_nll over its examples",
    "iw_examples": "iw_examples = examples iw_nll averages over (a count)",
    "ppl_elbo": "ppl_* = perplexity per token (from neg_elbo, iw_nll)",
    "separability": "separability = accuracy telling data codes from noise codes",
    "test_prior_variance": "test_prior_variance = s^2 of the test prior N(0, s^2 I)",
}
#: When an evaluation reports each metric that not every evaluation reports (the others always are);
#: :func:`vaezoo.evaluation.evaluate.evaluation_metrics` decides it for a run, these words explain it to people.
REPORTED_WHEN = {
    "mi_he": "only when the encoder's posterior is a diagonal Gaussian",
    "iw_nll": "only by evaluations that compute IW-NLL (eval.iw_samples > 0), never by a validation",
    "iw_nll_se": "only by evaluations that compute IW-NLL (eval.iw_samples > 0), never by a validation",
    "iw_examples": "only by evaluations that compute IW-NLL (eval.iw_samples > 0), never by a validation",
    "ppl_elbo": "only for token data (text)",
    "ppl_iw": "only for token data, by evaluations that compute IW-NLL, never by a validation",
    "separability": "only in a finished run's test metrics, for data with a noise distribution of their own",
    "test_prior_variance": "only when the test prior is N(0, s^2 I)",
}
