"""Behaviour of the maths that the mutation run (``tox -e mutants``, tests/mutants/SCORE.md) found untested.

Each expected value is derived independently of the code under test: a closed form worked by hand, a numerical
check, or an exact count.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Independent, Laplace, MixtureSameFamily, Normal

from tests.conftest import small_config
from tests.test_metrics import RowCountingDecoder, exact_encoder, linear_decoder, linear_encoder, marginal
from vaezoo.base.errors import UsageError
from vaezoo.components.distributions import (
    diagonal_normal,
    diagonal_normal_from,
    isotropic_normal,
    refuses_invalid_parameters,
)
from vaezoo.components.divergences import discriminator_jsd, mmd
from vaezoo.components.interfaces import Data, DataSpec, Encoder, Step
from vaezoo.config.run_config import TrainConfig
from vaezoo.evaluation.evaluation_pass import evaluate, evaluate_priors
from vaezoo.evaluation.priors import check_test_prior_offered, isotropic_variance, resolve_test_prior
from vaezoo.model.assembly import VAE, build_model, build_model_for_data
from vaezoo.training.distributed import Context
from vaezoo.training.step import NonFiniteLoss, TrainingStep, make_optimizer
from vaezoo_bench.aggregate import CHOSEN, NO_CHOICE, WAITING, choose, valid_metric
from vaezoo_plugins.data.separability import code_separability
from vaezoo_plugins.data.synthetic import NoisyData
from vaezoo_plugins.metrics.activity import active_units
from vaezoo_plugins.metrics.information import mutual_information, mutual_information_he
from vaezoo_plugins.metrics.likelihood import exp_or_inf
from vaezoo_plugins.networks.mlp import MAX_LAYERS, MLPEncoder, MLPParams
from vaezoo_plugins.noise.samplers import DatasetNoise, DecoderNoise, DecoderNoiseParams
from vaezoo_plugins.priors.gaussian import GaussianPrior, StandardPrior
from vaezoo_plugins.priors.mixture_priors import MixtureOfGaussians, VampPrior
from vaezoo_plugins.regularizers.aae import AAE, AAEParams
from vaezoo_plugins.regularizers.betavae import BetaParams, BetaVAE
from vaezoo_plugins.regularizers.infovae import InfoParams, InfoVAE
from vaezoo_plugins.regularizers.ncvae import NCVAE, NCParams, optimal_test_variance

F, D = 6, 2


def small_model(registry, **sections) -> VAE:
    """An MLP VAE on 6 real features with a 2-d code (``sections`` override the run config)."""
    config = small_config(registry, **sections)
    return build_model(config, registry, DataSpec(shape=(F,), kind="real"))


def train_config(**options) -> TrainConfig:
    return TrainConfig(**{"steps": 1, "batch_size": 8, **options})


def snapshot(parameters) -> list[Tensor]:
    return [p.detach().clone() for p in parameters]


# -- the optimisers and one training step (vaezoo.training.step) -------------------------------------------------------


def test_sgd_gets_the_configured_learning_rate_and_momentum_and_adam_the_learning_rate():
    parameters = [nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(train_config(optimizer="sgd", lr=0.25, momentum=0.5), parameters)
    adam = make_optimizer(train_config(optimizer="adam", lr=0.125), parameters)
    assert isinstance(sgd, torch.optim.SGD) and isinstance(adam, torch.optim.Adam)
    assert (sgd.param_groups[0]["lr"], sgd.param_groups[0]["momentum"]) == (0.25, 0.5)
    assert adam.param_groups[0]["lr"] == 0.125


def test_a_plain_sgd_step_moves_every_parameter_by_minus_lr_times_its_gradient(registry):
    torch.manual_seed(0)
    model, x, lr = small_model(registry), torch.randn(8, F), 0.1
    before = snapshot(model.parameters())
    torch.manual_seed(1)  # the same posterior sample for the gradient and the step
    loss, _ = model.loss(model.forward_step(x, 0))
    gradients = torch.autograd.grad(loss, list(model.parameters()))
    torch.manual_seed(1)
    logged = TrainingStep(model, train_config(optimizer="sgd", lr=lr))(Context().wrap(model), x, 0, None)
    for old, new, gradient in zip(before, model.parameters(), gradients, strict=True):
        torch.testing.assert_close(new.detach(), old - lr * gradient)
    assert logged["loss"] == pytest.approx(loss.item()) and isinstance(logged["loss"], float)


def test_the_gradient_norm_is_clipped_to_grad_clip(registry):
    torch.manual_seed(0)
    model, x, lr, clip = small_model(registry), torch.randn(8, F), 1.0, 1e-3
    before = snapshot(model.parameters())
    TrainingStep(model, train_config(optimizer="sgd", lr=lr, grad_clip=clip))(Context().wrap(model), x, 0, None)
    moved = torch.cat([(new.detach() - old).flatten() for old, new in zip(before, model.parameters(), strict=True)])
    # an unclipped gradient of this loss is far larger than 1e-3; the step is lr times the clipped gradient
    assert moved.norm().item() == pytest.approx(lr * clip, rel=1e-3)


def test_a_nan_loss_raises_non_finite_loss_and_updates_nothing(registry):
    model = small_model(registry)
    before = snapshot(model.parameters())

    def nan_forward(x, step, data, kl_scale):
        record = model.forward_step(x, step)
        loss = model.loss(record)[0] * float("nan")
        return record, loss, {"loss": loss}

    with pytest.raises(NonFiniteLoss, match="loss became nan") as raised:
        TrainingStep(model, train_config())(nan_forward, torch.randn(8, F), 0, None)
    assert math.isnan(raised.value.value)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def invalid_parameters_error() -> ValueError:
    """The error torch.distributions raises for a NaN parameter (what a diverged encoder produces)."""
    try:
        Normal(torch.tensor(float("nan")), torch.tensor(1.0), validate_args=True)
    except ValueError as error:
        return error
    raise AssertionError("torch accepted a NaN location")


def test_torchs_refusal_of_a_nan_parameter_is_recognised_and_other_value_errors_are_not():
    assert refuses_invalid_parameters(invalid_parameters_error())
    assert not refuses_invalid_parameters(ValueError("batch_size must be positive"))


def test_a_distribution_refusing_its_parameters_is_a_non_finite_loss_and_another_value_error_propagates(registry):
    step = TrainingStep(small_model(registry), train_config())

    def refusing(x, step, data, kl_scale):
        raise invalid_parameters_error()

    def mistaken(x, step, data, kl_scale):
        raise ValueError("a bug of the forward pass")

    with pytest.raises(NonFiniteLoss):
        step(refusing, torch.randn(8, F), 0, None)
    with pytest.raises(ValueError, match="a bug of the forward pass"):
        step(mistaken, torch.randn(8, F), 0, None)


def test_the_step_hands_its_arguments_to_the_forward_pass(registry):
    model, seen = small_model(registry), {}
    wrapped = Context().wrap(model)

    def spying(x, step, data, kl_scale):
        seen.update(step=step, data=data, kl_scale=kl_scale)
        return wrapped(x, step, data, kl_scale)

    TrainingStep(model, train_config())(spying, torch.randn(8, F), 7, "data", kl_scale=0.25)
    assert seen == {"step": 7, "data": "data", "kl_scale": 0.25}


def test_the_auxiliary_optimiser_steps_the_discriminator_alone_at_its_own_learning_rate(registry):
    torch.manual_seed(0)
    model = small_model(registry, regularizer={"name": "aae", "hidden": [8], "disc_lr": 0.01})
    step = TrainingStep(model, train_config(optimizer="sgd", lr=1e-3))
    discriminator = list(model.regularizer.discriminator.parameters())
    assert {id(p) for p in step.optimizer.param_groups[0]["params"]}.isdisjoint(map(id, discriminator))
    group = step.auxiliary_optimizer.param_groups[0]
    assert (group["lr"], group["betas"]) == (0.01, (0.5, 0.999))
    assert [id(p) for p in group["params"]] == [id(p) for p in discriminator]
    before = snapshot(discriminator)
    step(Context().wrap(model), torch.randn(8, F), 0, None)
    # Adam's first step moves every parameter with a gradient by about the learning rate
    moves = [(new.detach() - old).abs().max().item() for old, new in zip(before, discriminator, strict=True)]
    assert all(move == pytest.approx(0.01, rel=0.05) for move in moves)
    assert all(p.grad is not None for p in discriminator)


def test_without_auxiliary_parameters_there_is_no_auxiliary_optimiser(registry):
    assert TrainingStep(small_model(registry), train_config()).auxiliary_optimizer is None


# -- the training loss and the model's parameters (vaezoo.model.assembly) ----------------------------------------------


def test_the_loss_is_the_mean_reconstruction_error_plus_every_regulariser_term_and_the_kl_is_logged():
    # q(z|x) = N((1, 0), diag(1, 0.25)) against p(z) = N(0, I): KL = 0.5 + 0.5 * (0.25 - 1 + log 4) per example
    kl = 0.5 + 0.5 * (0.25 - 1 + math.log(4))
    posterior = torch.distributions.Independent(Normal(torch.tensor([[1.0, 0.0]] * 2), torch.tensor([1.0, 0.5])), 1)
    record = Step(
        torch.zeros(2, 3), posterior, torch.zeros(2, 2), torch.tensor([-1.0, -3.0]), isotropic_normal(2, 1.0), None, 0
    )
    model = VAE(nn.Identity(), nn.Identity(), nn.Identity(), BetaVAE(BetaParams(beta=3.0), 2), None)
    loss, logged = model.loss(record)
    assert loss.item() == pytest.approx(2.0 + 3 * kl)
    assert set(logged) == {"loss", "recon", "kl", "beta_kl"}
    assert logged["recon"].item() == pytest.approx(2.0) and logged["kl"].item() == pytest.approx(kl)
    assert logged["beta_kl"].item() == pytest.approx(3 * kl) and logged["loss"] is loss


def test_the_models_optimiser_gets_every_parameter_but_the_discriminators():
    encoder, decoder = nn.Linear(3, 4), nn.Linear(2, 3)
    regularizer = AAE(AAEParams(hidden=(5,)), 2)
    model = VAE(encoder, decoder, nn.Identity(), regularizer, None)
    expected = [*encoder.parameters(), *decoder.parameters()]
    assert [id(p) for p in model.main_parameters()] == [id(p) for p in expected]


# -- the separability of data and noise codes (the evaluation pass and the metrics plugin) -----------------------------


def test_codes_told_apart_by_their_spread_alone_are_separated_and_codes_of_one_distribution_are_not():
    generator = torch.Generator().manual_seed(0)
    data = 0.5 * torch.randn(200, 2, generator=generator)
    wide_noise = 8.0 * torch.randn(200, 2, generator=generator)
    same = 0.5 * torch.randn(200, 2, generator=generator)
    # The densities cross at |z|^2 = ln 256 / (2 - 1/128) = 2.78, where the Bayes classifier errs on
    # exp(-2.78 / 0.5) = 0.4 % of data and 1 - exp(-2.78 / 128) = 2.1 % of noise: 98.7 % accuracy, with a
    # boundary that only the squared features can draw (both means are 0).
    assert code_separability(data, wide_noise) >= 0.95
    assert 0.35 <= code_separability(data, same) <= 0.65


def test_separability_is_scored_on_the_held_out_half_and_is_reproducible_by_seed():
    generator = torch.Generator().manual_seed(1)
    data, noise = torch.randn(30, 2, generator=generator), torch.randn(31, 2, generator=generator) + 6.0
    accuracy = code_separability(data, noise, seed=3)
    # 61 codes, 30 trained on, 31 held out: an accuracy is a count of the 31
    assert round(accuracy * 31) == pytest.approx(accuracy * 31, abs=1e-9) and accuracy == 1.0
    assert code_separability(data, noise, seed=3) == accuracy


# -- test priors (vaezoo.evaluation.priors, plugins.gaussian) ------------------------------------------------


def test_an_unoffered_test_prior_name_is_refused_before_training_and_a_variance_needs_no_offer():
    session = SimpleNamespace(
        hook=None, config=SimpleNamespace(regularizer=SimpleNamespace(name="betavae")), model=SimpleNamespace()
    )
    check_test_prior_offered(session, "2.5")
    check_test_prior_offered(session, "standard")
    with pytest.raises(UsageError, match=r"'optimal' is not offered for regularizer 'betavae'.*trained, standard"):
        check_test_prior_offered(session, "optimal")


def test_the_gaussian_prior_has_the_configured_variance_zero_mean_and_the_models_dtype():
    prior = GaussianPrior(GaussianPrior.Params(variance=4.0), 3).double()()
    assert prior.event_shape == (3,)
    torch.testing.assert_close(prior.variance, torch.full((3,), 4.0, dtype=torch.float64))
    torch.testing.assert_close(prior.mean, torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize(
    "regularizer", [BetaVAE(BetaParams(beta=3.0), 2), InfoVAE(InfoParams(alpha=0.5), 2), AAE(AAEParams(), 2)]
)
def test_objectives_without_a_contrastive_term_imply_the_training_prior_as_test_prior(regularizer):
    # f(K, beta, delta = 0) = K^2 beta / (beta K^2) = 1 whatever the weights
    assert regularizer.optimal_test_variance() == 1.0


# -- one training step's forward pass (vaezoo.model.assembly.VAE.forward_step) -----------------------------------------


def test_the_forward_step_records_its_inputs_and_one_log_likelihood_per_example(registry):
    torch.manual_seed(0)
    model, x, batch = small_model(registry), torch.randn(5, F), object()
    record = model.forward_step(x, 3, None, kl_scale=0.5, batch=batch)
    assert record.x is x and (record.step, record.kl_scale, record.batch) == (3, 0.5, batch)
    assert record.noise_posterior is None and record.z.shape == (5, D)
    # log p(x|z) of each example at its own code, as the decoder computes it for one sample per example
    one_by_one = [model.decoder.log_prob(x[i : i + 1], record.z[i : i + 1].unsqueeze(0)).item() for i in range(5)]
    assert record.log_px.shape == (5,)
    torch.testing.assert_close(record.log_px, torch.tensor(one_by_one))


def test_the_noise_sampler_gets_the_batch_the_decoder_the_prior_the_data_and_the_step(registry, monkeypatch):
    model = small_model(registry, regularizer={"name": "ncvae"}, noise={"name": "gaussian"})
    x, data, seen = torch.randn(4, F), object(), {}

    def spying(self, x_in, decoder_in, prior_in, data_in, step_in):
        seen.update(x=x_in, decoder=decoder_in, prior=prior_in, data=data_in, step=step_in)
        return x_in + 1.0

    monkeypatch.setattr(type(model.noise), "forward", spying)
    record = model.forward_step(x, 9, data)
    assert seen["x"] is x and seen["decoder"] is model.decoder and seen["prior"] is model.prior
    assert seen["data"] is data and seen["step"] == 9
    torch.testing.assert_close(record.noise_posterior.mean, model.encoder(x + 1.0).mean)


# -- the regularisers' weights and free bits (plugins) ----------------------------------------------------------

# q(z|x) = N((1, 0), diag(1, 0.25)) for both examples, p(z) = N(0, I): KL 0.5 and 0.5 * (0.25 - 1 + log 4) per dim
KL_DIMS = (0.5, 0.5 * (0.25 - 1 + math.log(4)))


def two_example_step(prior=None, step=0, kl_scale=1.0, noise_posterior=None, z=None) -> Step:
    posterior = Independent(Normal(torch.tensor([[1.0, 0.0]] * 2), torch.tensor([1.0, 0.5])), 1)
    z = torch.tensor([[1.0, 0.0], [0.5, -0.5]]) if z is None else z
    prior = isotropic_normal(2, 1.0) if prior is None else prior
    return Step(torch.zeros(2, 3), posterior, z, torch.zeros(2), prior, noise_posterior, step, kl_scale)


def test_the_kl_schedules_factor_multiplies_beta():
    value = BetaVAE(BetaParams(beta=2.0), 2)(two_example_step(kl_scale=0.25))["beta_kl"]
    assert value.item() == pytest.approx(2.0 * 0.25 * sum(KL_DIMS))


def test_one_free_bit_per_dim_raises_both_dims_to_one_nat():
    value = BetaVAE(BetaParams(free_bits=1.0), 2)(two_example_step())["beta_kl"]
    assert value.item() == pytest.approx(2.0)


def test_free_bits_under_a_mixture_prior_clamp_the_whole_codes_kl_at_d_times_lambda():
    # a one-component mixture equal to N(0, I): no closed form, so the KL is the estimate log q(z) - log p(z)
    one_component = MixtureSameFamily(
        Categorical(logits=torch.zeros(1)), Independent(Normal(torch.zeros(1, 2), torch.ones(1, 2)), 1)
    )
    step = two_example_step(prior=one_component)
    # log q(z) - log p(z) = log 2 - (z1 - 1)^2 / 2 - (z2 / 0.5)^2 / 2 + (z1^2 + z2^2) / 2 (the 2 pi terms cancel)
    log_ratio = [
        math.log(2) - 0.5 * (z1 - 1.0) ** 2 - 0.5 * (z2 / 0.5) ** 2 + 0.5 * (z1**2 + z2**2)
        for z1, z2 in ((1.0, 0.0), (0.5, -0.5))
    ]
    estimate = sum(log_ratio) / 2
    assert BetaVAE(BetaParams(free_bits=0.01), 2)(step)["beta_kl"].item() == pytest.approx(estimate)
    assert BetaVAE(BetaParams(free_bits=3.0), 2)(step)["beta_kl"].item() == pytest.approx(3.0 * 2)


def test_ncvae_warms_both_weights_up_and_scales_beta_alone_by_the_kl_schedule():
    # q(z|x_n) = N(0, I) against n(z) = N(0, 25 I): per dim 0.5 * (1/25 - 1 + log 25)
    noise_kl = 2 * 0.5 * (1 / 25 - 1 + math.log(25))
    noise_posterior = Independent(Normal(torch.zeros(2, 2), torch.ones(2, 2)), 1)
    regularizer = NCVAE(NCParams(beta=2.0, delta=3.0, K=5.0, warmup_steps=10), 2)
    terms = regularizer(two_example_step(step=5, kl_scale=0.5, noise_posterior=noise_posterior))
    assert terms["beta_kl"].item() == pytest.approx(2.0 * 0.5 * 0.5 * sum(KL_DIMS))
    assert terms["delta_noise_kl"].item() == pytest.approx(3.0 * 0.5 * noise_kl)


def test_ncvaes_contrastive_prior_is_built_where_the_codes_are():
    meta = torch.zeros(2, 2, device="meta")
    noise_posterior = diagonal_normal(meta, meta)
    regularizer = NCVAE(NCParams(beta=0.0), 2)
    # every tensor of the step on a device that is not torch's default: n(z) must follow the codes there
    prior = isotropic_normal(2, 1.0, like=meta)
    step = Step(torch.zeros(2, 3), diagonal_normal(meta, meta), meta, torch.zeros(2), prior, noise_posterior, 0)
    assert regularizer(step)["delta_noise_kl"].device.type == "meta"


class PointsPrior:
    """A stand-in prior whose n samples are the first n of fixed points, and whose density is flat."""

    def __init__(self, points: Tensor) -> None:
        self.points = points

    def sample(self, shape: tuple[int, ...]) -> Tensor:
        return self.points[: shape[0]]

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.zeros(z.shape[0])


def test_infovae_compares_the_codes_with_as_many_prior_samples_under_its_bandwidth():
    # codes {0, 1} and prior samples {0, 2} in 1-d, inverse multiquadric kernel c / (c + r^2) with c = 0.5:
    # k(0, 1) = 1/3, k(0, 2) = 1/9, so MMD^2 = 1/3 + 1/9 - 2 * (1 + 1/9 + 1/3 + 1/3) / 4 = -4/9
    posterior = Independent(Normal(torch.zeros(2, 1), torch.ones(2, 1)), 1)
    prior = PointsPrior(torch.tensor([[0.0], [2.0], [5.0]]))
    step = Step(torch.zeros(2, 3), posterior, torch.tensor([[0.0], [1.0]]), torch.zeros(2), prior, None, 0)
    terms = InfoVAE(InfoParams(alpha=1.0, lambda_=1.0, kernel="imq", bandwidth=0.5), 1)(step)
    assert terms["mmd_term"].item() == pytest.approx(-4 / 9)


# -- priors' parameters (plugins.mixture_priors) ------------------------------------------------------------------


def test_the_mixtures_means_start_with_the_requested_spread_and_the_prior_keeps_its_parameters():
    torch.manual_seed(0)
    params = MixtureOfGaussians.Params(components=1000, init_scale=0.1)
    prior = MixtureOfGaussians(params, 2)
    assert prior.params == params and prior.latent_dim == 2
    assert prior.means.std().item() == pytest.approx(0.1, rel=0.1)
    collapsed = MixtureOfGaussians(MixtureOfGaussians.Params(components=3, init_scale=0.0), 2)
    assert torch.equal(collapsed.means.detach(), torch.zeros(3, 2))


# -- the decoder noise sampler's state (plugins.noise) -----------------------------------------------------------


def test_a_fresh_decoder_samplers_state_restores_a_sampler_that_has_not_drawn():
    spec = DataSpec(shape=(F,), kind="real")
    fresh = DecoderNoise(DecoderNoiseParams(refresh_every=100), spec)
    restored = DecoderNoise(DecoderNoiseParams(refresh_every=100), spec)
    restored.pool = torch.ones(4, F)
    restored.set_extra_state(fresh.get_extra_state())
    assert restored.pool is None


@pytest.mark.parametrize(("kind", "bf16"), [("tokens", True), ("real", False)])
def test_an_automatic_draw_precision_is_bf16_for_tokens_alone(kind, bf16):
    sampler = DecoderNoise(DecoderNoiseParams(precision="auto"), DataSpec(shape=(F,), kind=kind))
    with sampler.arithmetic(torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") is bf16
        assert (torch.get_autocast_dtype("cpu") == torch.bfloat16) or not bf16


# -- test priors and perplexities -------------------------------------------------------------------------------


def test_the_trained_test_prior_is_the_models_own_prior():
    prior = isotropic_normal(D, 4.0)
    session = SimpleNamespace(model=SimpleNamespace(prior=lambda: prior), hook=None)
    chosen = resolve_test_prior(session, "trained")
    assert chosen.distribution is prior and chosen.variance == pytest.approx(4.0)


def test_a_perplexity_beyond_floating_point_is_infinite():
    # exp(800) overflows a double (largest about exp(709.8)): reported as infinite, not an OverflowError
    assert exp_or_inf(800.0) == math.inf and exp_or_inf(2.0) == pytest.approx(math.exp(2.0))


def test_the_variance_of_a_one_dimensional_isotropic_normal_and_of_non_normals():
    assert isotropic_variance(isotropic_normal(1, 4.0)) == pytest.approx(4.0)
    assert isotropic_variance(Independent(Laplace(torch.zeros(3), torch.ones(3)), 1)) is None
    assert isotropic_variance(Normal(torch.zeros(3), torch.ones(3))) is None


# -- the adversarial autoencoder (plugins.aae) ------------------------------------------------------------------


def linear_aae(weights: list[float], bias: float, **params) -> AAE:
    """An AAE whose discriminator is the one linear map logit = weights . z + bias."""
    aae = AAE(AAEParams(hidden=(), **params), len(weights))
    layer = aae.discriminator[0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([weights]))
        layer.bias.fill_(bias)
    return aae


def test_the_discriminator_gives_one_logit_per_code():
    aae = linear_aae([1.0, -2.0, 0.5], 0.25)
    assert aae.latent_dim == 3
    codes = torch.tensor([[1.0, 1.0, 2.0], [0.0, 0.5, 0.0]])
    torch.testing.assert_close(aae.logits(codes), torch.tensor([0.25, -0.75]))
    assert AAE(AAEParams(hidden=(4,)), 3).logits(codes).shape == (2,)


def test_too_many_discriminator_layers_are_refused_naming_the_parameter():
    with pytest.raises(ValueError, match="'hidden' must list at most"):
        AAEParams(hidden=(1,) * (MAX_LAYERS + 1))


def test_the_nonsaturating_generator_loss_is_lambda_times_minus_log_d_of_the_codes():
    # a discriminator that says "prior" with logit c = 1 everywhere: -log sigmoid(1) = log(1 + e^-1)
    aae = linear_aae([0.0, 0.0], 1.0, lambda_=2.0, generator_loss="nonsaturating")
    terms = aae(two_example_step())
    assert set(terms) == {"adversarial"}
    assert terms["adversarial"].item() == pytest.approx(2.0 * math.log(1 + math.exp(-1)))


def test_the_minimax_term_draws_as_many_prior_samples_as_codes():
    # logit = z1: the codes and the first two prior points sit on the boundary, where the JSD estimate is 0;
    # a third prior point, at z1 = 100, would change it if it were drawn
    aae = linear_aae([1.0, 0.0, 0.0], 0.0, lambda_=3.0)
    prior = PointsPrior(torch.tensor([[0.0, 1.0, 2.0], [0.0, -1.0, 5.0], [100.0, 0.0, 0.0]]))
    codes = torch.tensor([[0.0, 3.0, 1.0], [0.0, 1.0, 1.0]])
    step = Step(torch.zeros(2, 3), None, codes, torch.zeros(2), prior, None, 0)
    assert aae(step)["lambda_jsd"].item() == pytest.approx(0.0, abs=1e-6)
    assert aae.auxiliary_loss(step).item() == pytest.approx(2 * math.log(2), abs=1e-6)


def test_the_jsd_of_weighted_support_points_is_their_exact_expectation():
    # sigmoid(ln 3) = 3/4: log D = ln(3/4) there, and log(1 - D) = ln(3/4) at the logit -ln 3
    prior_logits, prior_weights = torch.tensor([0.0, math.log(3)]), torch.tensor([0.25, 0.75])
    code_logits, code_weights = torch.tensor([0.0, -math.log(3)]), torch.tensor([0.25, 0.75])
    expected_log_d_prior = 0.25 * -math.log(2) + 0.75 * math.log(0.75)
    expected_log_not_d_code = 0.25 * -math.log(2) + 0.75 * math.log(0.75)
    expected = 0.5 * (expected_log_d_prior + expected_log_not_d_code) + math.log(2)
    value = discriminator_jsd(prior_logits, code_logits, prior_weights, code_weights)
    assert value.item() == pytest.approx(expected)


# -- the VampPrior's pseudo-inputs and the standard prior's device (plugins) ---------------------------------------


class ParameterFreeEncoder(Encoder):
    """q(z|x) = N(0, I) whatever x: an encoder without a parameter of its own."""

    def forward(self, x: Tensor):
        return isotropic_normal(self.latent_dim, 1.0)


def test_vamp_pseudo_inputs_follow_the_encoders_dtype_and_real_ones_start_standard_normal():
    torch.manual_seed(0)
    spec = DataSpec(shape=(20,), kind="real")
    prior = VampPrior(VampPrior.Params(components=50), 2)
    prior.attach(MLPEncoder(MLPParams(hidden=(8,)), spec, 2).double())
    assert prior.latent_dim == 2 and prior.pseudo_inputs.dtype == torch.float64
    assert prior.pseudo_inputs.mean().item() == pytest.approx(0.0, abs=0.15)
    assert prior.pseudo_inputs.std().item() == pytest.approx(1.0, rel=0.1)
    parameter_free = VampPrior(VampPrior.Params(components=3), 2)
    parameter_free.attach(ParameterFreeEncoder(None, spec, 2))
    assert parameter_free.pseudo_inputs.shape == (3, 20) and parameter_free.pseudo_inputs.dtype == torch.float32


def test_vamp_refuses_a_second_encoder_and_says_why_token_ids_cannot_be_pseudo_inputs():
    spec = DataSpec(shape=(20,), kind="real")
    prior = VampPrior(VampPrior.Params(components=3), 2)
    prior.attach(ParameterFreeEncoder(None, spec, 2))
    with pytest.raises(RuntimeError, match=r"^prior 'vamp' is already attached to an encoder$"):
        prior.attach(ParameterFreeEncoder(None, spec, 2))
    tokens = DataSpec(shape=(7,), kind="tokens", vocab_size=10)
    with pytest.raises(UsageError, match="gradient descent in data space, and token ids are not differentiable"):
        VampPrior(VampPrior.Params(components=3), 2).attach(ParameterFreeEncoder(None, tokens, 2))


def test_the_standard_prior_is_n_0_i_in_the_dtype_of_the_model():
    prior = StandardPrior(None, 3).double()()
    assert prior.mean.dtype == torch.float64
    torch.testing.assert_close(prior.variance, torch.ones(3, dtype=torch.float64))


# -- models built for loaded data (vaezoo.model.assembly, plugins.noise) -----------------------------------------------


def splits(spec: DataSpec) -> tuple[Tensor, Tensor, Tensor]:
    return torch.zeros(8, *spec.shape), torch.zeros(4, *spec.shape), torch.zeros(4, *spec.shape)


def test_dataset_noise_needs_training_noise_examples_of_the_data_set():
    spec = DataSpec(shape=(F,), kind="real")
    sampler = DatasetNoise(None, spec)
    expected = "this data set defines no noise distribution of its own"
    assert sampler.incompatibility(Data(spec, *splits(spec))) == expected
    assert sampler.incompatibility(NoisyData(spec, *splits(spec), noise={"test": torch.ones(3, F)})) == expected
    assert sampler.incompatibility(NoisyData(spec, *splits(spec), noise={"train": torch.ones(3, F)})) is None


def test_a_model_for_loaded_data_takes_its_shape_from_the_data_and_asks_the_noise_sampler_about_it(registry):
    spec = DataSpec(shape=(5,), kind="real")
    config = small_config(registry, regularizer={"name": "ncvae"}, noise={"name": "dataset"})
    model = build_model_for_data(config, registry, NoisyData(spec, *splits(spec), noise={"train": torch.ones(3, 5)}))
    assert model.encoder.spec == spec and isinstance(model.noise, DatasetNoise)
    assert model.decoder.log_prob(torch.zeros(2, 5), torch.zeros(1, 2, D)).shape == (1, 2)
    with pytest.raises(UsageError, match="noise 'dataset' cannot be used with data 'synthetic'"):
        build_model_for_data(config, registry, Data(spec, *splits(spec)))


def test_the_default_mmd_bandwidth_is_twice_the_dimension():
    # 2-d samples {0, e1} and {0, 2 e1}, inverse multiquadric kernel with c = 2 * 2 = 4: k at squared distance
    # 1 is 4/5, at 4 it is 1/2, so MMD^2 = 4/5 + 1/2 - 2 * (1 + 1/2 + 4/5 + 4/5) / 4 = -1/4
    x, y = torch.tensor([[0.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert mmd(x, y, "imq").item() == pytest.approx(-0.25)


def test_the_standard_prior_leaves_nothing_in_a_checkpoint():
    assert StandardPrior(None, 3).state_dict() == {}


# -- the selection rule's reading of a cell (vaezoo_bench.aggregate) --------------------------------------------------


def test_a_validation_metric_is_read_from_finished_cells_alone():
    metrics = {"mi_he": 2.5, "neg_elbo": 90}
    assert valid_metric({"status": "ok", "valid": {"metrics": metrics}}, "neg_elbo") == 90.0
    assert valid_metric({"status": "failed", "valid": {"metrics": metrics}}, "mi_he") is None
    assert valid_metric({"status": "ok", "valid": {"metrics": metrics}}, "au") is None
    assert valid_metric({"status": "ok", "valid": None}, "mi_he") is None
    assert valid_metric(None, "mi_he") is None


def selection_group(values: list[float], reference: bool) -> dict:
    """A selection group sweeping regularizer.delta over ``values``, one sweep cell each (``d<value>``)."""
    candidates = [{"values": {"regularizer.delta": v}, "sweep": [f"d{v}"], "phase2": []} for v in values]
    return {"id": "g", "candidates": candidates, "reference": ["ref"] if reference else []}


def finished(**metrics: float) -> dict:
    return {"status": "ok", "valid": {"metrics": metrics}}


MAX_MI_WITHIN_2_NATS = {"rule": "max", "metric": "mi_he", "within": {"metric": "neg_elbo", "nats": 2.0}}


def test_a_value_without_the_rules_metric_is_named_and_an_unconstrained_rule_reports_no_reference():
    records = {"d1": finished(neg_elbo=90.0), "d2": finished(mi_he=3.0)}
    choice = choose(selection_group([1, 2], reference=False), {"rule": "max", "metric": "mi_he"}, records)
    assert (choice.state, choice.chosen, choice.reference) == (CHOSEN, 1, None)
    missing, scored = choice.candidates
    assert (missing.status, missing.score, missing.values, missing.cells) == (
        "no mi_he",
        None,
        {"regularizer.delta": 1},
        ("d1",),
    )
    assert (scored.status, scored.score, scored.eligible) == ("ok", 3.0, True)


def test_a_value_without_the_constraints_metric_is_named_with_its_score():
    records = {"d1": finished(mi_he=5.0), "d2": finished(mi_he=3.0, neg_elbo=91.0), "ref": finished(neg_elbo=90.0)}
    choice = choose(selection_group([1, 2], reference=True), MAX_MI_WITHIN_2_NATS, records)
    assert (choice.state, choice.chosen, choice.reference) == (CHOSEN, 1, 90.0)
    unconstrained = choice.candidates[0]
    assert (unconstrained.status, unconstrained.score, unconstrained.values) == (
        "no neg_elbo",
        5.0,
        {"regularizer.delta": 1},
    )
    assert unconstrained.cells == ("d1",) and not unconstrained.eligible


def test_a_reference_without_the_constraints_metric_leaves_no_choice():
    records = {"d1": finished(mi_he=5.0, neg_elbo=90.0), "ref": finished(mi_he=1.0)}
    choice = choose(selection_group([1], reference=True), MAX_MI_WITHIN_2_NATS, records)
    assert (choice.state, choice.problem, choice.chosen) == (NO_CHOICE, "reference", None)
    assert choice.candidates[0].status == "no neg_elbo" and choice.candidates[0].score == 5.0


def test_a_waiting_rule_already_reports_the_reference_and_the_finished_values():
    records = {"d1": finished(mi_he=5.0, neg_elbo=91.0), "d2": None, "ref": finished(neg_elbo=90.0)}
    choice = choose(selection_group([1, 2], reference=True), MAX_MI_WITHIN_2_NATS, records)
    assert (choice.state, choice.waiting_for, choice.reference) == (WAITING, ("d2",), 90.0)
    assert [c.status for c in choice.candidates] == ["ok", "pending"]
    assert choice.candidates[0].excess == pytest.approx(1.0) and choice.candidates[0].eligible


def test_under_the_min_rule_too_a_tie_goes_to_the_value_listed_first():
    records = {"d1": finished(mi_he=4.0), "d2": finished(mi_he=2.0), "d3": finished(mi_he=2.0)}
    choice = choose(selection_group([1, 2, 3], reference=False), {"rule": "min", "metric": "mi_he"}, records)
    assert (choice.state, choice.chosen) == (CHOSEN, 1)


def test_a_variance_test_prior_is_n_0_s2_i_over_the_latent_space_in_the_models_dtype():
    anchor = nn.Linear(1, 1).double()
    session = SimpleNamespace(
        model=SimpleNamespace(parameters=anchor.parameters), config=SimpleNamespace(model=SimpleNamespace(latent_dim=3))
    )
    chosen = resolve_test_prior(session, "2.5")
    assert chosen.variance == 2.5 and chosen.distribution.event_shape == (3,)
    torch.testing.assert_close(chosen.distribution.variance, torch.full((3,), 2.5, dtype=torch.float64))


def test_the_optimal_test_variance_at_the_edges_of_the_weights():
    # delta alone (beta = 0): only the noise KL to N(0, K^2 I) is weighed, so the implied variance is K^2
    assert optimal_test_variance(5.0, 0.0, 1.0) == pytest.approx(25.0)
    # neither KL weighed: the objective implies nothing, and the training prior N(0, I) stays
    assert optimal_test_variance(5.0, 0.0, 0.0) == 1.0


class LinearCritic(BetaVAE):
    """beta-VAE with an auxiliary parameter trained on the codes and log-likelihoods of each step, by the default
    auxiliary optimiser (Adam at the model's learning rate)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__(BetaParams(), latent_dim)
        self.weight = nn.Parameter(torch.zeros(latent_dim))

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return [self.weight]

    def auxiliary_loss(self, step: Step) -> Tensor:
        # differentiates z and log_px: a second backward through the model's freed graph unless both are detached
        return -(step.z @ self.weight).mean() - (step.log_px * self.weight.sum()).mean()


def test_the_auxiliary_loss_sees_detached_codes_and_log_likelihoods_and_the_models_learning_rate(registry):
    torch.manual_seed(0)
    model = small_model(registry)
    model.regularizer = LinearCritic(D)
    step = TrainingStep(model, train_config(lr=0.125))
    assert step.auxiliary_optimizer.param_groups[0]["lr"] == 0.125
    step(Context().wrap(model), torch.randn(8, F), 0, None)
    # Adam's first step moves each coordinate by the learning rate against its gradient's sign
    assert model.regularizer.weight.detach().abs().tolist() == pytest.approx([0.125] * D, rel=1e-3)


def test_separability_does_not_depend_on_the_scale_of_the_codes():
    # two clusters 4 standard deviations apart along z1 (Bayes accuracy Phi(2) = 97.7 %), at the scale 1e-3 of
    # sharp posteriors: the L2 penalty of the classifier must not keep it from the boundary
    generator = torch.Generator().manual_seed(0)
    shift = torch.tensor([2e-3, 0.0])
    data = 1e-3 * torch.randn(200, 2, generator=generator) + shift
    noise = 1e-3 * torch.randn(200, 2, generator=generator) - shift
    assert code_separability(data, noise) >= 0.93


# -- evaluation: IW-NLL on a subset, progress, memory bound (the evaluation pass and the metrics plugin) ---------------

LATENT, FEATURES = 2, 3  # the linear Gaussian model of tests/test_metrics.py


def test_iw_nll_on_a_mask_within_one_batch_is_the_exact_nll_of_those_examples_with_its_standard_error():
    # with the exact posterior every importance weight is p(x): IW-NLL is -log p(x) exactly, whatever the samples
    torch.manual_seed(0)
    x = marginal().sample((10,))
    mask = torch.tensor([True, False, True, True, False, False, False, False, False, False])
    result = evaluate(
        exact_encoder(),
        linear_decoder(),
        isotropic_normal(LATENT, 1.0),
        [x[:6], x[6:]],
        iw_samples=2,
        iw_chunk=2,
        iw_mask=mask,
    )
    exact = -marginal().log_prob(x[mask]).double()
    assert result["iw_examples"] == 3
    assert result["iw_nll"] == pytest.approx(exact.mean().item(), abs=1e-4)
    assert result["iw_nll_se"] == pytest.approx((exact.std() / math.sqrt(3)).item(), abs=1e-4)


def test_progress_counts_examples_without_iw_and_samples_times_examples_with_it_and_rows_bound_the_decoder():
    torch.manual_seed(0)
    x, prior = marginal().sample((10,)), {"": isotropic_normal(LATENT, 1.0)}
    without, with_iw = [], []
    evaluate_priors(exact_encoder(), linear_decoder(), prior, [x[:6], x[6:]], on_progress=without.append)
    decoder = RowCountingDecoder(linear_decoder())
    options = {"iw_samples": 5, "iw_chunk": 5, "iw_rows": 10, "on_progress": with_iw.append}
    evaluate_priors(exact_encoder(), decoder, prior, [x[:6], x[6:]], **options)
    assert sum(without) == 10 and sum(with_iw) == 5 * 10
    # at most max(rows, chunk) = 10 rows per importance-sampling call (the reconstruction sees the 6 of a batch)
    assert max(decoder.calls) == 10


def test_the_kl_to_a_test_prior_without_a_closed_form_is_estimated_at_the_posterior_sample():
    # q(z|x) = N(0, I) for every x and p = a one-component mixture equal to it: log q(z) - log p(z) = 0 at any z
    encoder = linear_encoder(torch.zeros(LATENT, FEATURES), torch.zeros(LATENT), torch.ones(LATENT))
    mixture = MixtureSameFamily(
        Categorical(logits=torch.zeros(1)), Independent(Normal(torch.zeros(1, LATENT), torch.ones(1, LATENT)), 1)
    )
    result = evaluate(encoder, linear_decoder(), mixture, [marginal().sample((8,))])
    assert result["kl"] == pytest.approx(0.0, abs=1e-6)


def test_the_standard_error_of_iw_nll_over_two_close_examples_is_half_their_difference():
    # the sample standard deviation of two values a, b is |a - b| / sqrt 2, so the standard error is |a - b| / 2
    torch.manual_seed(1)
    first = marginal().sample((1,))
    x = torch.cat([first, first + 0.1])
    exact = -marginal().log_prob(x)
    result = evaluate(exact_encoder(), linear_decoder(), isotropic_normal(LATENT, 1.0), [x], iw_samples=1, iw_chunk=1)
    assert abs(exact[0] - exact[1]).item() < 1.0
    assert result["iw_nll_se"] == pytest.approx(abs(exact[0] - exact[1]).item() / 2, abs=1e-4)


# -- MI and active units (the evaluation pass and the metrics plugin) --------------------------------------------------


def test_he_mi_over_groups_is_the_size_weighted_mean_of_each_groups_estimate():
    generator = torch.Generator().manual_seed(2)
    loc, scale = torch.randn(7, 3, generator=generator), torch.rand(7, 3, generator=generator) + 0.5
    first, second = torch.arange(4), torch.arange(4, 7)
    torch.manual_seed(0)  # the same draws, group by group, in both evaluations
    whole = mutual_information_he(loc, scale, [first, second])
    torch.manual_seed(0)
    parts = [mutual_information_he(loc, scale, [first]), mutual_information_he(loc, scale, [second])]
    assert whole == pytest.approx((4 * parts[0] + 3 * parts[1]) / 7)


def test_the_mi_estimate_has_the_posteriors_dtype():
    posterior = diagonal_normal(torch.randn(5, 2), torch.zeros(5, 2))
    assert mutual_information(posterior).dtype == torch.float32


def test_active_units_of_two_examples_and_of_one():
    # dim 1 varies across the two examples (variance 2), dim 2 does not
    assert active_units(torch.tensor([[-1.0, 0.5], [1.0, 0.5]])) == 1
    assert active_units(torch.tensor([[3.0, -4.0]])) == 0


def test_an_encoder_head_is_read_as_loc_and_log_scale_or_as_loc_and_log_variance():
    head = torch.tensor([[1.0, 2.0, math.log(4.0), math.log(9.0)]])  # 'b (2 d)' with d = 2
    as_log_variance = diagonal_normal_from(head, log_variance=True)
    torch.testing.assert_close(as_log_variance.mean, torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(as_log_variance.stddev, torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(diagonal_normal_from(head).stddev, torch.tensor([[4.0, 9.0]]))
