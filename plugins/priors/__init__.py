"""Priors: the standard and scaled Gaussians, a learnt mixture of Gaussians and the VampPrior."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.priors.gaussian import GaussianPrior, StandardPrior
    from vaezoo_plugins.priors.mixture_priors import MixtureOfGaussians, VampPrior

    for prior in (StandardPrior, GaussianPrior, MixtureOfGaussians, VampPrior):
        register(prior)
