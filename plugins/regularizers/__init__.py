"""Regularisers: β-VAE, InfoVAE (MMD), the adversarial autoencoder, NC-VAE (with its test priors) and Li et al.'s
per-example free bits."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.regularizers.aae import AAE
    from vaezoo_plugins.regularizers.betavae import BetaVAE
    from vaezoo_plugins.regularizers.freebits import MaskedFreeBits
    from vaezoo_plugins.regularizers.infovae import InfoVAE
    from vaezoo_plugins.regularizers.ncvae import NCVAE

    for regularizer in (BetaVAE, InfoVAE, AAE, NCVAE, MaskedFreeBits):
        register(regularizer)


@hookimpl
def vaezoo_test_priors(session):
    """``optimal`` and ``tuned``, for a regulariser that implies a test prior (NC-VAE)."""
    from vaezoo_plugins.regularizers.ncvae import test_priors

    return test_priors(session)
