"""NC-VAE (the paper's objective): beta-VAE on data plus a contrastive KL pulling noise codes to N(0, K^2 I).

loss = ReconE(x ~ p_d) + beta * KL(q(z|x) || p(z)) + delta * E_{x_n ~ p_n} KL(q(z|x_n) || n(z)),
n(z) = N(0, K^2 I). The decoder never runs on noise: the model encodes the noise batch and hands q(z|x_n) here.
"""

from __future__ import annotations

import attrs
from torch import Tensor
from torch.distributions import kl_divergence

from vaezoo import hookimpl
from vaezoo.distributions import isotropic_normal
from vaezoo.interfaces import Regularizer, Step
from vaezoo.params import param
from vaezoo_plugins.betavae import kl_weight, penalised_kl


def optimal_test_variance(K: float, beta: float, delta: float) -> float:
    """f(K, beta, delta) = K^2 (beta + delta) / (beta K^2 + delta), Theorem 7's optimal test-prior variance."""
    denominator = beta * K**2 + delta
    return 1.0 if denominator == 0 else K**2 * (beta + delta) / denominator


@attrs.frozen
class NCParams:
    beta: float = param(1.0, ge=0, le=10**6, help="weight of KL(q(z|x) || p(z)) on data")
    delta: float = param(1.0, ge=0, le=10**6, help="weight of KL(q(z|x_n) || N(0, K^2 I)) on noise")
    K: float = param(5.0, ge=1e-3, le=1000, help="standard deviation of the contrastive prior n(z) = N(0, K^2 I)")
    warmup_steps: int = param(0, ge=0, le=10**9, help="anneal beta and delta linearly from 0 over this many steps")
    free_bits: float = param(0.0, ge=0, le=10**6, help="free bits of the data KL (nats per latent dim)")


class NCVAE(Regularizer):
    """Noise-contrastive VAE; with delta = 0 it is beta-VAE exactly."""

    name = "ncvae"
    description = "beta KL(q(z|x)||p) on data + delta KL(q(z|x_n)||N(0,K^2 I)) on noise"
    Params = NCParams
    needs_noise = True

    def forward(self, step: Step) -> dict[str, Tensor]:
        p = self.params
        assert step.noise_posterior is not None, "the model encodes noise for regularisers that need it"
        contrastive = isotropic_normal(self.latent_dim, p.K**2, like=step.z)
        noise_kl = kl_divergence(step.noise_posterior, contrastive).mean()
        return {
            "beta_kl": kl_weight(p.beta, p.warmup_steps, step.step) * step.kl_scale * penalised_kl(step, p.free_bits),
            "delta_noise_kl": kl_weight(p.delta, p.warmup_steps, step.step) * noise_kl,
        }

    def optimal_test_variance(self) -> float:
        return optimal_test_variance(self.params.K, self.params.beta, self.params.delta)


@hookimpl
def vaezoo_register(register) -> None:
    register(NCVAE)
