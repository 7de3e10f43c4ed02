"""Posterior transforms: BN-VAE's batch-normalised means and δ-VAE's committed rate."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.transforms.batchnorm import BatchNormMeans
    from vaezoo_plugins.transforms.delta import CommittedRate

    for transform in (BatchNormMeans, CommittedRate):
        register(transform)
