"""NC-VAE (the paper's objective): beta-VAE on data plus a contrastive KL pulling noise codes to N(0, K^2 I).

loss = ReconE(x ~ p_d) + beta * KL(q(z|x) || p(z)) + delta * E_{x_n ~ p_n} KL(q(z|x_n) || n(z)),
n(z) = N(0, K^2 I). The decoder never runs on noise: the model encodes the noise batch and hands q(z|x_n) here.

The plugin also offers the paper's test priors (docs/maths.md section 4): ``optimal``, N(0, f I) with the variance
f the objective implies, and ``tuned``, the variance in [1, f] that maximises the validation ELBO. A regulariser
offers them by defining ``optimal_test_variance()`` (β-VAE, InfoVAE and AAE do: their f is 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
import torch
from torch import Tensor
from torch.distributions import kl_divergence

from vaezoo.api import Encoder, Regularizer, Step, TestPrior, isotropic_normal, param
from vaezoo_plugins.regularizers.betavae import kl_weight, penalised_kl


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
    uses_kl_scale = True  # beta (not delta) is multiplied by a KL schedule's factor

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
        """f(K, beta, delta): the test-prior variance of ``--test-prior optimal``."""
        return optimal_test_variance(self.params.K, self.params.beta, self.params.delta)


def kl_optimal_test_variance(encoder: Encoder, batches: Iterable[Tensor]) -> float:
    """The variance s^2 minimising E_x KL(q(z|x) || N(0, s^2 I)) on ``batches``.

    Written by hand because it is a closed form torch does not offer: with q = N(mu, diag sigma^2) the
    expected KL is 0.5 * sum_d (E[sigma_d^2 + mu_d^2] / s^2 + log s^2) + const, minimised at
    s^2 = mean_d E[sigma_d^2 + mu_d^2]; it is unimodal in s^2, so clipping to an interval keeps the optimum.
    """
    total, count = 0.0, 0
    with torch.no_grad():
        for x in batches:
            posterior = encoder(x)
            total += (posterior.variance + posterior.mean.square()).mean(dim=1).sum().item()
            count += x.shape[0]
    return total / count


def tuned_test_variance(f: float, encoder: Encoder, valid_batches: Iterable[Tensor]) -> float:
    """The s^2 in [1, f] (or [f, 1]) maximising the ELBO on ``valid_batches``: only the KL term depends on s^2,
    so it is the KL minimiser clipped to the interval."""
    low, high = min(1.0, f), max(1.0, f)
    return min(max(kl_optimal_test_variance(encoder, valid_batches), low), high)


def test_priors(session) -> dict[str, Callable[[], TestPrior]] | None:
    """``optimal`` and ``tuned`` for a regulariser that defines ``optimal_test_variance``."""
    implied = getattr(session.model.regularizer, "optimal_test_variance", None)
    if implied is None:
        return None

    def tuned() -> TestPrior:
        return TestPrior.isotropic(
            session, tuned_test_variance(implied(), session.model.encoder, session.batches("valid"))
        )

    return {"optimal": lambda: TestPrior.isotropic(session, implied()), "tuned": tuned}
