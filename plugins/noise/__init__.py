"""Noise samplers for contrastive regularisers: Gaussian noise, the decoder's own samples, another data set."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.noise.samplers import DatasetNoise, DecoderNoise, GaussianNoise

    for sampler in (GaussianNoise, DecoderNoise, DatasetNoise):
        register(sampler)
