"""Posterior transforms: BN-VAE's batch-normalised means, δ-VAE's committed rate and SA-VAE's refinement."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.transforms.batchnorm import BatchNormMeans
    from vaezoo_plugins.transforms.delta import CommittedRate
    from vaezoo_plugins.transforms.svi import SemiAmortized

    for transform in (BatchNormMeans, CommittedRate, SemiAmortized):
        register(transform)
