"""The regularisers against hand-computed values on tiny inputs, and their defining behaviours."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaezoo.components.distributions import isotropic_normal
from vaezoo.components.divergences import discriminator_jsd, mmd
from vaezoo.components.interfaces import Step
from vaezoo_plugins.regularizers.aae import AAE, AAEParams
from vaezoo_plugins.regularizers.betavae import BetaParams, BetaVAE
from vaezoo_plugins.regularizers.infovae import InfoParams, InfoVAE
from vaezoo_plugins.regularizers.ncvae import NCVAE, NCParams, optimal_test_variance

# q(z|x) = N((1, 0), diag(1, 0.25)) for both examples of the batch, p(z) = N(0, I).
# KL per dim: 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2) = 0.5 and 0.5 * (0.25 - 1 + log 4) = 0.3181472
KL_DIMS = (0.5, 0.5 * (0.25 - 1 + math.log(4)))


def gaussian(loc, scale, batch=2):
    loc, scale = torch.tensor(loc), torch.tensor(scale)
    return Independent(Normal(loc.expand(batch, -1), scale.expand(batch, -1)), 1)


def tiny_step(step=0, noise_posterior=None):
    posterior = gaussian([1.0, 0.0], [1.0, 0.5])
    z = torch.tensor([[1.0, 0.0], [0.5, -0.5]])
    return Step(torch.zeros(2, 3), posterior, z, torch.zeros(2), isotropic_normal(2, 1.0), noise_posterior, step)


def test_betavae_hand_computed():
    assert BetaVAE(BetaParams(beta=2.0), 2)(tiny_step())["beta_kl"].item() == pytest.approx(2 * sum(KL_DIMS))


def test_betavae_warmup_is_linear():
    regularizer = BetaVAE(BetaParams(beta=2.0, warmup_steps=10), 2)
    assert regularizer(tiny_step(step=0))["beta_kl"].item() == 0.0
    assert regularizer(tiny_step(step=5))["beta_kl"].item() == pytest.approx(sum(KL_DIMS))
    assert regularizer(tiny_step(step=30))["beta_kl"].item() == pytest.approx(2 * sum(KL_DIMS))


def test_betavae_free_bits_clamp_each_dim():
    # dim 1 has 0.5 nats, dim 2 has 0.318: with 0.4 free bits only dim 2 is raised to 0.4
    value = BetaVAE(BetaParams(free_bits=0.4), 2)(tiny_step())["beta_kl"]
    assert value.item() == pytest.approx(0.5 + 0.4)


def test_ncvae_hand_computed():
    # q(z|x_n) = N(0, I) against n(z) = N(0, 25 I): per dim 0.5 * (1/25 - 1 + log 25)
    step = tiny_step(noise_posterior=gaussian([0.0, 0.0], [1.0, 1.0]))
    terms = NCVAE(NCParams(beta=2.0, delta=3.0, K=5.0), 2)(step)
    assert terms["beta_kl"].item() == pytest.approx(2 * sum(KL_DIMS))
    assert terms["delta_noise_kl"].item() == pytest.approx(3 * 2 * 0.5 * (1 / 25 - 1 + math.log(25)))


def test_ncvae_with_delta_zero_is_betavae_exactly():
    step = tiny_step(noise_posterior=gaussian([3.0, -1.0], [0.2, 4.0]))
    nc = NCVAE(NCParams(beta=1.7, delta=0.0, K=5.0), 2)(step)
    beta = BetaVAE(BetaParams(beta=1.7), 2)(step)
    assert sum(nc.values()).item() == sum(beta.values()).item()


def test_ncvae_optimal_test_prior():
    assert optimal_test_variance(5.0, 1.0, 1.0) == pytest.approx(25 * 2 / 26)
    assert optimal_test_variance(5.0, 1.0, 0.0) == 1.0  # delta = 0: the training prior
    assert NCVAE(NCParams(beta=0.8, delta=2.0, K=3.0), 2).optimal_test_variance() == pytest.approx(
        9 * 2.8 / (0.8 * 9 + 2)
    )


def test_mmd_hand_computed_and_behaviour():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [2.0]])
    # rbf with bandwidth 2: k = exp(-d^2 / 2)
    within = math.exp(-0.5) + math.exp(-2.0)
    cross = (1 + math.exp(-2.0) + 2 * math.exp(-0.5)) / 4
    assert mmd(x, y, "rbf", 2.0).item() == pytest.approx(within - 2 * cross)
    torch.manual_seed(0)
    a, b = torch.randn(1000, 4), torch.randn(1000, 4)
    for kernel in ("rbf", "imq"):
        same = mmd(a, b, kernel).item()
        shifted = [mmd(a, b + shift, kernel).item() for shift in (0.25, 0.5, 1.0, 2.0)]
        assert abs(same) < 2e-3
        assert shifted == sorted(shifted) and shifted[0] > 5 * abs(same)


def test_infovae_combines_kl_and_mmd_with_its_weights():
    step = tiny_step()
    regularizer = InfoVAE(InfoParams(alpha=0.25, lambda_=10.0, kernel="rbf"), 2)
    torch.manual_seed(3)
    terms = regularizer(step)
    torch.manual_seed(3)
    expected_mmd = mmd(step.z, step.prior.sample((2,)), "rbf", None)
    assert terms["kl_term"].item() == pytest.approx(0.75 * sum(KL_DIMS))
    assert terms["mmd_term"].item() == pytest.approx((0.25 + 10 - 1) * expected_mmd.item())


def test_infovae_lambda_is_spelt_lambda(registry):
    from vaezoo.base.errors import UsageError
    from vaezoo.config.run_config import merge_raw, resolve

    config = resolve(merge_raw({"regularizer": {"name": "infovae", "lambda": 50}}), registry)
    assert config.regularizer.params.lambda_ == 50.0
    assert config.as_dict()["regularizer"]["lambda"] == 50.0
    with pytest.raises(UsageError, match=r"'lambda' must be >= 0"):
        resolve(merge_raw({"regularizer": {"name": "infovae", "lambda": -1}}), registry)


def test_discriminator_jsd_of_an_undecided_discriminator_is_zero():
    logits = torch.zeros(5)
    assert discriminator_jsd(logits, logits).item() == pytest.approx(0.0, abs=1e-7)


def test_aae_discriminator_learns_separable_codes():
    torch.manual_seed(0)
    regularizer = AAE(AAEParams(disc_lr=1e-3), latent_dim=2)
    optimizer = regularizer.auxiliary_optimizer(lr=1e-3)
    prior = isotropic_normal(2, 1.0)

    def accuracy(z_codes):
        with torch.no_grad():
            prior_right = (regularizer.logits(prior.sample((500,))) > 0).float().mean()
            code_right = (regularizer.logits(z_codes) < 0).float().mean()
        return ((prior_right + code_right) / 2).item()

    codes = torch.randn(500, 2) + torch.tensor([4.0, 4.0])
    before = accuracy(codes)
    for _ in range(30):
        batch = codes[torch.randint(500, (64,))]
        step = Step(torch.zeros(64, 1), None, batch, torch.zeros(64), prior, None, 0)
        optimizer.zero_grad()
        regularizer.auxiliary_loss(step).backward()
        optimizer.step()
    assert accuracy(codes) > 0.9 > before + 0.2
    # the encoder's term is then a positive JSD estimate, pushing codes toward the prior
    step = Step(torch.zeros(64, 1), None, codes[:64], torch.zeros(64), prior, None, 0)
    assert 0.2 < regularizer(step)["lambda_jsd"].item() <= math.log(2)
