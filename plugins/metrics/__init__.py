"""The collapse metrics: ``mi`` and ``mi_he`` (mutual information), ``au`` (active units), and the likelihood
figures ``iw_nll`` (with ``iw_nll_se`` and ``iw_examples``), ``ppl_elbo`` and ``ppl_iw``."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.metrics import activity, information, likelihood

    for metric in (
        information.PairedMutualInformation,
        information.HeMutualInformation,
        activity.ActiveUnits,
        likelihood.ImportanceWeightedNLL,
        likelihood.ImportanceWeightedNLLError,
        likelihood.ImportanceWeightedExamples,
        likelihood.ElboPerplexity,
        likelihood.ImportanceWeightedPerplexity,
    ):
        register(metric)
