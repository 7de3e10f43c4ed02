"""Assembling a VAE from registered components, and one training step's forward pass."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import (
    WHOLE_BATCH,
    BatchStatistics,
    Data,
    DataSpec,
    Decoder,
    Encoder,
    NoiseSampler,
    PosteriorTransform,
    Prior,
    Regularizer,
    Step,
)
from vaezoo.config.run_config import RunConfig
from vaezoo.plugins.registry import Registry


class TransformedEncoder(Encoder):
    """An encoder followed by a posterior transform: the model's encoder when its run chooses a transform."""

    def __init__(self, network: Encoder, transform: PosteriorTransform) -> None:
        super().__init__(network.params, network.spec, network.latent_dim)
        self.network, self.transform = network, transform

    def forward(self, x: Tensor) -> Distribution:
        return self.transform(self.network(x), x)


class VAE(nn.Module):
    """Encoder, decoder, prior, regulariser and optional noise sampler of one run.

    The decoder only ever runs on data; contrastive inputs are encoded and handed to the regulariser.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        prior: Prior,
        regularizer: Regularizer,
        noise: NoiseSampler | None,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.regularizer, self.noise = regularizer, noise

    def forward_step(
        self,
        x: Tensor,
        step: int,
        data: Data | None = None,
        kl_scale: float = 1.0,
        batch: BatchStatistics = WHOLE_BATCH,
    ) -> Step:
        """Encode ``x``, decode one reparameterised z, and encode contrastive inputs if the regulariser asks;
        ``kl_scale`` and ``batch`` become ``Step.kl_scale`` and ``Step.batch``."""
        posterior = self.encoder(x)
        z = posterior.rsample()  # 'b d'
        log_px = self.decoder.log_prob(x, z.unsqueeze(0)).squeeze(0)  # 'b'
        noise_posterior = None
        if self.regularizer.needs_noise:
            assert self.noise is not None, "resolve() guarantees a noise sampler for this regulariser"
            with torch.no_grad():
                x_noise = self.noise(x, self.decoder, self.prior, data, step)
            noise_posterior = self.encoder(x_noise)
        return Step(x, posterior, z, log_px, self.prior(), noise_posterior, step, kl_scale, batch)

    def loss(self, record: Step) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss (nats per example) and every named part of it, for logging."""
        recon = -record.log_px.mean()
        terms = self.regularizer(record)
        loss = recon + sum(terms.values())
        with torch.no_grad():  # logged only: no graph for it
            kl = record.kl().mean()
        logged = {"loss": loss, "recon": recon, "kl": kl, **terms}
        return loss, logged

    def main_parameters(self) -> list[nn.Parameter]:
        """Parameters of the model's optimiser: everything but the regulariser's auxiliary parameters."""
        auxiliary = {id(p) for p in self.regularizer.auxiliary_parameters()}
        return [p for p in self.parameters() if id(p) not in auxiliary]


def build_model(config: RunConfig, registry: Registry, spec: DataSpec, data: Data | None = None) -> VAE:
    """Instantiate every component of ``config`` for data of ``spec``; incompatible choices are UsageErrors.

    With the loaded ``data``, the noise sampler is asked first whether it can work on it.
    """
    d = config.model.latent_dim

    def cls(kind: str) -> type:
        return registry.get(kind, getattr(config, kind).name).cls

    noise = cls("noise")(config.noise.params, spec) if config.noise is not None else None
    reason = noise.incompatibility(data) if noise is not None and data is not None else None
    if reason:
        raise UsageError(f"noise {config.noise.name!r} cannot be used with data {config.data.name!r}: {reason}")
    # built in this order so that seeded initialisation stays the same
    encoder = cls("encoder")(config.encoder.params, spec, d)
    decoder = cls("decoder")(config.decoder.params, spec, d)
    prior = cls("prior")(config.prior.params, d)
    if config.transform is not None:
        transform = cls("transform")(config.transform.params, d)
        transform.attach(decoder, prior)
        encoder = TransformedEncoder(encoder, transform)
    prior.attach(encoder)
    regularizer = cls("regularizer")(config.regularizer.params, d)
    return VAE(encoder=encoder, decoder=decoder, prior=prior, regularizer=regularizer, noise=noise)


def build_model_for_data(config: RunConfig, registry: Registry, data: Data) -> VAE:
    """``build_model`` for loaded ``data``, first asking the noise sampler whether it can work on that data, and
    after it the posterior transform whether it can act on the encoder's posterior (of two validation examples)."""
    model = build_model(config, registry, data.spec, data)
    if isinstance(model.encoder, TransformedEncoder):
        network, transform = model.encoder.network, model.encoder.transform
        with torch.no_grad():
            network.eval()  # evaluation mode draws nothing (no dropout), so seeded runs stay as they were
            reason = transform.incompatibility(network(next(data.batches("valid", 2))))
            network.train()
        if reason:
            raise UsageError(
                f"transform {config.transform.name!r} cannot act on the posterior of encoder "
                f"{config.encoder.name!r}: {reason}"
            )
    return model
