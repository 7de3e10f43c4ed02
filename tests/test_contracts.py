"""Contract tests parametrised over every registered component: shapes, finite losses, gradients.

A new component registered by any plugin is picked up here with no new test code.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Distribution

from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import DataSpec, Step
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.model.assembly import build_model
from vaezoo.plugins.loading import load_plugins
from vaezoo.training.distributed import Context
from vaezoo.training.strategy import TrainingBatch

REGISTRY = load_plugins().registry
SPECS = {
    "real": DataSpec((12,), "real"),
    "binary": DataSpec((1, 4, 5), "binary"),
    "tokens": DataSpec((9,), "tokens", vocab_size=30, pad_id=0, bos_id=1, eos_id=2),
}
LATENT = 3
#: Names :meth:`vaezoo.model.assembly.VAE.loss` logs itself; a regulariser's term of the same name would overwrite one.
LOGGED_BY_THE_TRAINER = ("loss", "recon", "kl")


def example_batch(spec: DataSpec, b: int = 6) -> torch.Tensor:
    if spec.kind == "real":
        return torch.randn(b, *spec.shape)
    if spec.kind == "binary":
        return torch.bernoulli(torch.full((b, *spec.shape), 0.4))
    return token_batch(spec, b)


def token_batch(spec: DataSpec, b: int) -> torch.Tensor:
    """``b`` sequences BOS w1 .. wn EOS of random words (ids past the special ones) and lengths from 2 to the
    spec's maximum (the first one the longest), padded with ``pad_id``: ``'b t'``."""
    (max_len,) = spec.shape
    first_word = max(spec.pad_id, spec.bos_id, spec.eos_id) + 1
    lengths = torch.randint(2, max_len + 1, (b,))
    lengths[0] = max_len
    x = torch.randint(first_word, spec.vocab_size, (b, max_len))
    x[:, 0] = spec.bos_id
    x[torch.arange(b), lengths - 1] = spec.eos_id
    return x.masked_fill(torch.arange(max_len) >= lengths[:, None], spec.pad_id)


def accepted_specs(make) -> list[DataSpec]:
    """The specs a component accepts (it refuses the others with a UsageError at construction)."""
    accepted = []
    for spec in SPECS.values():
        try:
            make(spec)
        except UsageError:
            continue
        accepted.append(spec)
    assert accepted, "a component must accept at least one kind of data"
    return accepted


def assert_all_parameters_have_gradients(module: torch.nn.Module) -> None:
    missing = [
        n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"no gradient reached {missing}"


def networks(kind: str, name: str):
    """(spec, freshly seeded network) for every data spec the registered network accepts."""
    cls = REGISTRY.get(kind, name).cls
    for spec in accepted_specs(lambda s: cls(cls.Params(), s, LATENT)):
        torch.manual_seed(0)
        yield spec, cls(cls.Params(), spec, LATENT)


@pytest.mark.parametrize("name", REGISTRY.names("encoder"))
def test_encoder_contract(name):
    for spec, encoder in networks("encoder", name):
        posterior = encoder(example_batch(spec))
        assert isinstance(posterior, Distribution)
        assert posterior.batch_shape == (6,) and posterior.event_shape == (LATENT,)
        z = posterior.rsample()
        assert z.shape == (6, LATENT) and torch.isfinite(z).all()
        (z.square().sum() + posterior.entropy().sum()).backward()
        assert_all_parameters_have_gradients(encoder)


@pytest.mark.parametrize("name", REGISTRY.names("decoder"))
def test_decoder_contract(name):
    for spec, decoder in networks("decoder", name):
        x = example_batch(spec)
        z = torch.randn(4, 6, LATENT)
        log_px = decoder.log_prob(x, z)
        assert log_px.shape == (4, 6) and torch.isfinite(log_px).all()
        (-log_px.mean()).backward()
        assert_all_parameters_have_gradients(decoder)
        with torch.no_grad():
            sample = decoder.sample(torch.randn(6, LATENT))
        assert sample.shape == x.shape
        if spec.kind == "binary":
            assert set(sample.unique().tolist()) <= {0.0, 1.0}
        # a sample is a valid point of the data space: its log-likelihood is finite
        assert torch.isfinite(decoder.log_prob(sample, torch.randn(1, 6, LATENT))).all()


@pytest.mark.parametrize("name", REGISTRY.names("prior"))
def test_prior_contract(name):
    cls = REGISTRY.get("prior", name).cls
    module = cls(cls.Params(), LATENT)
    encoder_cls = REGISTRY.get("encoder", "mlp").cls
    module.attach(encoder_cls(encoder_cls.Params(), SPECS["real"], LATENT))  # as build_model does
    prior = module()
    assert prior.event_shape == (LATENT,) and prior.batch_shape == ()
    z = prior.sample((5,))
    assert z.shape == (5, LATENT) and torch.isfinite(prior.log_prob(z)).all()


@pytest.mark.parametrize("name", REGISTRY.names("regularizer"))
def test_regularizer_contract(name):
    """Each regulariser, in a model of built-in networks, gives a finite loss whose gradient reaches every
    trained parameter; its auxiliary parameters (if any) are trained by its own loss. Its terms are named apart
    from what the trainer logs itself (``loss``, ``recon``, ``kl``), so every term is logged."""
    cls = REGISTRY.get("regularizer", name).cls
    raw = {"regularizer": {"name": name}, "model": {"latent_dim": LATENT}}
    if cls.needs_noise:
        raw["noise"] = {"name": "gaussian"}  # needs nothing but the batch
    config = resolve(merge_raw(raw), REGISTRY)
    torch.manual_seed(0)
    spec = SPECS["real"]
    model = build_model(config, REGISTRY, spec)
    record = model.forward_step(example_batch(spec, 16), step=3)
    clashing = sorted(set(model.regularizer(record)) & set(LOGGED_BY_THE_TRAINER))
    assert not clashing, f"regularizer {name!r} returns terms named {clashing}, which the trainer logs itself"
    loss, logged = model.loss(record)
    assert loss.shape == () and torch.isfinite(loss)
    assert math.isclose(loss.item(), sum(v.item() for k, v in logged.items() if k not in ("loss", "kl")), rel_tol=1e-5)
    loss.backward()
    main = {id(p) for p in model.main_parameters()}
    assert_all_parameters_have_gradients(torch.nn.ParameterList([p for p in model.parameters() if id(p) in main]))
    auxiliary = model.regularizer.auxiliary_parameters()
    if auxiliary:
        detached = Step(record.x, record.posterior, record.z.detach(), record.log_px.detach(), record.prior, None, 3)
        model.regularizer.auxiliary_loss(detached).backward()
        assert all(p.grad is not None for p in auxiliary)


@pytest.mark.parametrize("name", REGISTRY.names("data"))
def test_data_contract(name, data_dir):
    cls = REGISTRY.get("data", name).cls
    data = cls(cls.Params()).load(data_dir if cls.needs_data_dir else None, seed=0)
    for split in ("train", "valid", "test"):
        assert data.size(split) > 0
        batch = next(data.batches(split, 8))
        if data.spec.kind == "tokens":  # padded to the batch's own longest sequence
            assert batch.dim() == 2 and batch.shape[1] <= data.spec.shape[0]
        else:
            assert batch.shape[1:] == data.spec.shape
    first = data.train_batch(epoch=0, index=0, batch_size=8, seed=0)
    again = data.train_batch(epoch=0, index=0, batch_size=8, seed=0)
    other_epoch = data.train_batch(epoch=1, index=0, batch_size=8, seed=0)
    assert torch.equal(first, again), "training batches must be a pure function of (seed, epoch, index)"
    assert not torch.equal(first, other_epoch), "each epoch must shuffle afresh"
    extra = data.extra_train_batch(step=3, draw=1, batch_size=8, seed=0)
    assert torch.equal(extra, data.extra_train_batch(step=3, draw=1, batch_size=8, seed=0)), "pure, as batches are"
    assert extra.shape[1:] == first.shape[1:] or data.spec.kind == "tokens"


@pytest.mark.parametrize("name", REGISTRY.names("noise"))
def test_noise_contract(name):
    """Noise has the shape of the data and carries no gradient."""
    raw = {"noise": {"name": name}, "model": {"latent_dim": LATENT}, "data": {"n_train": 64, "dim": 12}}
    config = resolve(merge_raw(raw), REGISTRY)
    data = REGISTRY.get("data", "synthetic").cls(config.data.params).load(None, seed=0)
    model = build_model(config, REGISTRY, data.spec)
    assert model.noise.incompatibility(data) is None
    x = data.train_batch(0, 0, 6, seed=0).requires_grad_()
    x_noise = model.noise(x, model.decoder, model.prior, data, 0)
    assert x_noise.shape == x.shape and not x_noise.requires_grad and torch.isfinite(x_noise).all()


@pytest.mark.parametrize("name", REGISTRY.names("transform"))
def test_transform_contract(name):
    """A posterior transform, in a model of built-in networks, gives a posterior of the batch's shape that supports
    rsample, passes gradients to every trained parameter of the encoder and itself, and in evaluation under
    no_grad gives a posterior without a graph."""
    config = resolve(merge_raw({"transform": {"name": name}, "model": {"latent_dim": LATENT}}), REGISTRY)
    torch.manual_seed(0)
    spec = SPECS["real"]
    model = build_model(config, REGISTRY, spec)
    x = example_batch(spec, 16)
    assert model.encoder.transform.incompatibility(model.encoder.network(x)) is None
    record = model.forward_step(x, step=0)
    assert record.posterior.batch_shape == (16,) and record.posterior.event_shape == (LATENT,)
    assert torch.isfinite(record.z).all() and torch.isfinite(record.kl()).all()
    model.loss(record)[0].backward()
    assert_all_parameters_have_gradients(model.encoder)
    model.eval()
    with torch.no_grad():
        posterior = model.encoder(x)
    assert posterior.batch_shape == (16,) and not posterior.rsample().requires_grad


@pytest.mark.parametrize("name", REGISTRY.names("strategy"))
def test_strategy_contract(name):
    """A training strategy takes a step of the synthetic task's model with its default parameters: it logs finite
    ``loss``, ``recon`` and ``kl``, moves the model's parameters, and names its optimisers as checkpoint keys; its
    optimisers and state load back into a fresh strategy."""
    raw = {"strategy": {"name": name}, "model": {"latent_dim": LATENT}, "data": {"n_train": 64, "dim": 12}}
    config = resolve(merge_raw(raw), REGISTRY)
    data = REGISTRY.get("data", "synthetic").cls(config.data.params).load(None, seed=0)
    torch.manual_seed(0)
    model = build_model(config, REGISTRY, data.spec)
    cls = REGISTRY.get("strategy", name).cls
    strategy = cls(config.strategy.params, model, config.train, Context())
    assert strategy.incompatibility(data) is None
    before = [p.detach().clone() for p in model.main_parameters()]

    def extra(draw: int) -> torch.Tensor:
        return data.extra_train_batch(0, draw, 16, seed=0)

    logged = strategy.update(Context().wrap(model), TrainingBatch(data.train_batch(0, 0, 16, 0), 0, data, 1.0, extra))
    assert {"loss", "recon", "kl"} <= set(logged) and all(math.isfinite(value) for value in logged.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.main_parameters(), strict=True))
    assert strategy.optimizers() and all(key.endswith("optimizer") for key in strategy.optimizers())
    fresh = cls(config.strategy.params, model, config.train, Context())
    fresh.load_state_dict(strategy.state_dict())
    for key, optimizer in fresh.optimizers().items():
        optimizer.load_state_dict(strategy.optimizers()[key].state_dict())
        loaded, saved = optimizer.state_dict(), strategy.optimizers()[key].state_dict()
        assert loaded["param_groups"] == saved["param_groups"] and loaded["state"].keys() == saved["state"].keys(), key
        for index, values in saved["state"].items():
            for name, value in values.items():
                mine = loaded["state"][index][name]
                assert torch.equal(mine, value) if torch.is_tensor(value) else mine == value, (key, index, name)
