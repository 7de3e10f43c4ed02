"""Li et al. (2019): autoencoder pretraining then a fresh decoder (strategy ``pretrain``), their per-example free
bits (regulariser ``fb_masked``), linear KL annealing (callback ``linear_kl``), and early stopping that does not
watch a pretraining phase (``early_stop.begin``)."""

from __future__ import annotations

import copy
import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from tests.conftest import small_config
from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import Step
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.runs.session import open_session
from vaezoo.training.callbacks import RunHooks
from vaezoo.training.distributed import Context
from vaezoo.training.step import TrainingStep
from vaezoo.training.strategy import build_strategy
from vaezoo.training.trainer import Trainer, training_batch
from vaezoo_plugins.callbacks.standard import EarlyStopping, LinearKLAnnealing, linear_factor
from vaezoo_plugins.regularizers.freebits import MaskedFreeBits

# -- fb_masked: Li et al.'s free bits, per example and latent dim ------------------------------------------------------


def diagonal(loc: torch.Tensor, log_scale: torch.Tensor) -> Independent:
    return Independent(Normal(loc, log_scale.exp()), 1)


def gaussian_step(loc, log_scale, kl_scale: float, prior=None) -> Step:
    posterior = diagonal(loc, log_scale)
    prior = prior if prior is not None else diagonal(torch.zeros(loc.shape[1]), torch.zeros(loc.shape[1]))
    b = loc.shape[0]
    return Step(torch.zeros(b, 1), posterior, posterior.rsample(), torch.zeros(b), prior, None, 0, kl_scale)


def test_fb_masked_drops_each_example_and_dim_at_or_under_target_over_latent_dim():
    # d = 4, target = 2 nats: the threshold is 0.5 nats per dim. KL = mu^2 / 2 where sigma = 1.
    kls = torch.tensor([[0.3, 0.5, 0.7, 2.0], [0.6, 0.1, 1.9, 0.45]])
    loc = (2 * kls).sqrt().requires_grad_()  # KL 0.5 exactly: mu = 1, on the threshold, so dropped
    # some sigma != 1, in a dropped term (0.3 + 0.046) and in kept ones: there the gradient involves log sigma
    log_scale = torch.tensor([[0.2, 0.0, 0.0, 0.4], [0.0, 0.0, -0.3, 0.0]], requires_grad=True)
    regularizer = MaskedFreeBits(MaskedFreeBits.Params(target=2.0, beta=3.0), latent_dim=4)
    term = regularizer(gaussian_step(loc, log_scale, kl_scale=0.25))["fb_kl"]

    sigma2 = (2 * log_scale).exp()
    kl = 0.5 * (loc.square() + sigma2 - 2 * log_scale - 1)  # 'b d', by hand
    kept = kl > 0.5
    assert kept.tolist() == [[False, False, True, True], [True, False, True, False]]  # 0.7, 0.6 < target are kept
    weight = 3.0 * 0.25  # beta * kl_scale
    assert term.item() == pytest.approx(weight * (kl * kept).sum(1).mean().item(), rel=1e-6)

    d_loc, d_log_scale = torch.autograd.grad(term, (loc, log_scale))
    want_loc, want_log_scale = torch.autograd.grad(weight * kl.sum() / 2, (loc, log_scale))
    assert (d_loc[~kept] == 0).all() and (d_log_scale[~kept] == 0).all()  # exactly no gradient when dropped
    torch.testing.assert_close(d_loc[kept], want_loc[kept])
    torch.testing.assert_close(d_log_scale[kept], want_log_scale[kept])


def test_fb_masked_is_scaled_by_the_kl_schedule_and_refuses_a_prior_that_does_not_factorise():
    loc, log_scale = torch.tensor([[1.5, -2.0, 0.9]]), torch.tensor([[0.1, -0.2, 0.3]])
    regularizer = MaskedFreeBits(MaskedFreeBits.Params(target=0.3), latent_dim=3)
    full = regularizer(gaussian_step(loc, log_scale, kl_scale=1.0))["fb_kl"]
    assert full.item() > 0
    assert regularizer(gaussian_step(loc, log_scale, kl_scale=0.4))["fb_kl"].item() == pytest.approx(0.4 * full.item())
    assert regularizer(gaussian_step(loc, log_scale, kl_scale=0.0))["fb_kl"].item() == 0
    assert MaskedFreeBits.uses_kl_scale  # so a KL schedule is not refused
    components = Independent(Normal(torch.randn(2, 3), torch.ones(2, 3)), 1)
    mixture = MixtureSameFamily(Categorical(torch.ones(2)), components)
    with pytest.raises(UsageError, match=r"fb_masked.*factorise"):
        regularizer(gaussian_step(loc, log_scale, kl_scale=1.0, prior=mixture))


# -- linear_kl and early_stop.begin ------------------------------------------------------------------------------------


def test_linear_kl_factor_before_at_and_after_its_ramp():
    start, steps, begin = 0.1, 100, 50
    assert [linear_factor(s, start, steps, begin) for s in (0, 49, 50)] == [0.1, 0.1, 0.1]
    assert linear_factor(100, start, steps, begin) == pytest.approx(0.55)  # half-way up
    assert linear_factor(75, start, steps, begin) == pytest.approx(0.1 + 0.9 * 0.25)
    assert linear_factor(150, start, steps, begin) == 1.0 and linear_factor(10**6, start, steps, begin) == 1.0
    callback = LinearKLAnnealing(LinearKLAnnealing.Params(start=0.0, steps=8, begin=0))
    assert [callback.kl_scale(None, s) for s in range(10)] == [s / 8 for s in range(9)] + [1.0]


def test_linear_kl_is_the_reference_increment_one_step_later():
    """Their loop adds (1 - kl_start) / (warm_up * N / B) to kl_weight before each step (text_anneal_fb.py:306)."""
    start, warm_up, batches, begin = 0.1, 3, 7, 40
    steps, rate, weight = warm_up * batches, (1.0 - start) / (warm_up * batches), start
    for k in range(2 * steps):
        weight = min(1.0, weight + rate)  # the weight of their k-th step of the ramp
        assert weight == pytest.approx(linear_factor(begin + k + 1, start, steps, begin), abs=1e-12)


def test_linear_kl_refuses_a_regularizer_without_a_kl_weight(registry):
    def check(regularizer: str) -> None:
        config = small_config(registry, regularizer={"name": regularizer}, callbacks={"linear_kl": {}})
        RunHooks(config, registry).check(open_session(config, registry, None), registry)

    check("fb_masked")
    with pytest.raises(UsageError, match=r"linear_kl.*'infovae' has no KL weight"):
        check("infovae")


def validation(step: int, value: float) -> dict:
    return {"step": step, "valid": {"neg_elbo": value}}


LINES = [validation(10, 5.0), validation(20, 90.0), validation(30, 50.0), validation(40, 60.0), validation(50, 40.0)]
LINES += [validation(60, 45.0), validation(70, 41.0)]


def test_early_stop_ignores_validation_lines_before_begin(tmp_path):
    def stops(begin: int) -> list[int]:
        callback = EarlyStopping(EarlyStopping.Params(patience=2, begin=begin))
        return [line["step"] for line in LINES if callback.evaluated(None, line["step"], "valid", line["valid"])]

    assert stops(0)[0] == 30  # the pretraining's line of step 10 is the best: two lines later the run stops
    assert stops(21) == [70]  # from step 30 on: best 50, then 40 at step 50, then two lines without improvement
    watching = EarlyStopping(EarlyStopping.Params(patience=2, begin=21))
    for line in LINES[:4]:
        watching.evaluated(None, line["step"], "valid", line["valid"])
    # a run resumed at step 40 rebuilds the same count from its lines
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in LINES))
    resumed = EarlyStopping(EarlyStopping.Params(patience=2, begin=21))
    train = SimpleNamespace(eval_every=10)
    resumed.run_started(
        SimpleNamespace(run_dir=tmp_path, start_step=40, total_steps=70, config=SimpleNamespace(train=train))
    )
    assert (resumed.best.value, resumed.best.step, resumed.best.waited) == (50.0, 30, 1)
    assert (watching.best.value, watching.best.step, watching.best.waited) == (50.0, 30, 1)


# -- the pretrain strategy ---------------------------------------------------------------------------------------------


PRETRAIN = {"name": "pretrain"}


def session_and_strategy(registry, regularizer: dict, strategy: dict):
    config = small_config(registry, regularizer=regularizer, strategy=strategy)
    session = open_session(config, registry, None)
    return session, build_strategy(config, registry, session.model, session.data, Context())


def train(session, strategy, steps: range) -> list[dict[str, float]]:
    forward = Context().wrap(session.model)
    return [strategy.update(forward, training_batch(session, Context(), step, 1.0)) for step in steps]


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    one, other = a.state_dict(), b.state_dict()
    return one.keys() == other.keys() and all(torch.equal(one[k], other[k]) for k in one)


def test_pretraining_trains_encoder_and_decoder_on_reconstruction_only(registry):
    heavy = {"name": "betavae", "beta": 50.0}  # a KL term that would dominate the loss
    # each session is seeded when it is opened: trained right away, they draw the same random numbers
    pretrained, pretrain = session_and_strategy(registry, heavy, {"steps": 10} | PRETRAIN)
    initial = copy.deepcopy(pretrained.model)
    logged = train(pretrained, pretrain, range(5))
    autoencoder, standard = session_and_strategy(registry, {"name": "betavae", "beta": 0.0}, {"name": "standard"})
    train(autoencoder, standard, range(5))
    vae, vae_standard = session_and_strategy(registry, heavy, {"name": "standard"})
    train(vae, vae_standard, range(5))
    assert states_equal(pretrained.model, autoencoder.model), "phase 1 must be the beta = 0 VAE, bit for bit"
    assert not states_equal(pretrained.model, vae.model), "the KL term would have changed the training"
    assert not states_equal(pretrained.model.encoder, initial.encoder)
    assert not states_equal(pretrained.model.decoder, initial.decoder)
    for terms in logged:
        assert terms["loss"] == terms["recon"] and terms["beta_kl"] == 0.0 and terms["kl"] > 0


def test_at_the_switch_the_decoder_is_drawn_afresh_the_encoder_kept_and_the_optimisers_restart(registry):
    session, strategy = session_and_strategy(registry, {"name": "fb_masked", "target": 1.0}, {"steps": 3} | PRETRAIN)
    train(session, strategy, range(3))
    model = session.model
    before_switch, rng = copy.deepcopy(model), torch.get_rng_state()
    decoder_parameters = [id(p) for p in model.decoder.parameters()]
    train(session, strategy, range(3, 4))

    # the same step by hand: a decoder built under the same random state, then the standard step, fresh optimiser
    torch.set_rng_state(rng)
    decoder = before_switch.decoder
    before_switch.decoder.load_state_dict(type(decoder)(decoder.params, decoder.spec, decoder.latent_dim).state_dict())
    batch = training_batch(session, Context(), 3, 1.0)
    TrainingStep(before_switch, session.config.train)(Context().wrap(before_switch), batch.x, 3, session.data)
    assert states_equal(model, before_switch)
    assert [id(p) for p in model.decoder.parameters()] == decoder_parameters
    optimizer = strategy.optimizers()["optimizer"]
    assert {int(state["step"]) for state in optimizer.state.values()} == {1}, "one step since the switch"
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert set(decoder_parameters) <= trained


def test_reset_decoder_draws_every_decoder_tensor_as_a_new_decoder_would(registry):
    session, strategy = session_and_strategy(registry, {"name": "betavae"}, {"steps": 2} | PRETRAIN)
    train(session, strategy, range(2))
    decoder, encoder = session.model.decoder, copy.deepcopy(session.model.encoder)
    torch.manual_seed(7)
    strategy.reset_decoder()
    torch.manual_seed(7)
    assert states_equal(decoder, type(decoder)(decoder.params, decoder.spec, decoder.latent_dim))
    assert states_equal(session.model.encoder, encoder)


def test_a_regularizer_with_its_own_parameters_waits_for_the_switch(registry):
    session, strategy = session_and_strategy(registry, {"name": "aae", "hidden": [8]}, {"steps": 3} | PRETRAIN)
    discriminator = copy.deepcopy(session.model.regularizer.discriminator)
    logged = train(session, strategy, range(3))
    assert states_equal(session.model.regularizer.discriminator, discriminator)
    assert not strategy.optimizers()["auxiliary_optimizer"].state and logged[-1]["lambda_jsd"] == 0.0
    logged = train(session, strategy, range(3, 5))
    assert not states_equal(session.model.regularizer.discriminator, discriminator)
    auxiliary = strategy.optimizers()["auxiliary_optimizer"]
    assert {int(state["step"]) for state in auxiliary.state.values()} == {2}
    assert math.isfinite(logged[-1]["lambda_jsd"]) and logged[-1]["lambda_jsd"] != 0.0


@pytest.mark.slow
def test_a_run_resumed_before_at_and_after_the_switch_is_the_run_straight_through(registry, tmp_path):
    """Li et al.'s recipe (pretraining, free bits, annealing from the switch) resumed at steps 10, 20 (the switch
    is the next step) and 30 writes the lines, results and checkpoint of the run straight through."""

    def config(steps: int):
        return small_config(
            registry,
            data={"n_train": 256, "n_valid": 64, "n_test": 64},
            regularizer={"name": "fb_masked", "target": 0.5},
            strategy={"name": "pretrain", "steps": 20},
            callbacks={"linear_kl": {"steps": 10, "begin": 20}},
            train={"steps": steps, "eval_every": 10},
            eval={"iw_samples": 4},
        )

    straight = Trainer(config(40), registry, tmp_path / "straight", None).run()
    resumed = tmp_path / "resumed"
    Trainer(config(10), registry, resumed, None).run()
    for steps in (20, 30, 40):
        results = Trainer(config(steps), registry, resumed, None).run(resume=True)
    assert results["metrics"] == straight["metrics"]
    lines = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("straight", "resumed")]
    assert lines[0] == lines[1]
    one, other = (load_checkpoint(tmp_path / run / CHECKPOINT_NAME) for run in ("straight", "resumed"))
    assert all(torch.equal(one["model"][k], other["model"][k]) for k in one["model"])
    assert same_tensors(one["optimizer"], other["optimizer"])


def same_tensors(one, other) -> bool:
    """Whether two nested structures (dicts, lists, tensors, numbers) are equal, tensors bit for bit."""
    if isinstance(one, torch.Tensor):
        return isinstance(other, torch.Tensor) and torch.equal(one, other)
    if isinstance(one, dict):
        return one.keys() == other.keys() and all(same_tensors(one[k], other[k]) for k in one)
    if isinstance(one, list | tuple):
        return len(one) == len(other) and all(same_tensors(a, b) for a, b in zip(one, other, strict=True))
    return one == other
