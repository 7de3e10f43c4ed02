"""Aggressive inference-network training (He et al. 2019): the inner loop's stopping rule, which optimiser steps
when, the end of the aggressive phase, the extra batches it draws, and a resumed run through the trainer."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import small_config, small_raw
from tests.test_training import read_metrics
from vaezoo.base.errors import UsageError
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.model.assembly import build_model
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.training.distributed import Context
from vaezoo.training.strategy import TrainingBatch, build_strategy
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.data.text import PTB, PTBParams
from vaezoo_plugins.strategies.aggressive import Aggressive, AggressiveParams


def aggressive(registry, **params) -> Aggressive:
    config = small_config(registry)
    torch.manual_seed(0)
    model = build_model(config, registry, registry.get("data", "synthetic").cls(config.data.params).load(None, 0).spec)
    return Aggressive(AggressiveParams(**params), model, config.train, Context())


def scripted_forward(strategy: Aggressive, losses: list[float]):
    """A forward pass whose loss takes the scripted values in turn (then the last one), connected to every parameter
    so that both optimisers have gradients; counts its calls."""
    calls = []

    def forward(x, step, data, kl_scale):
        value = losses[min(len(calls), len(losses) - 1)]
        calls.append(x)
        tied = sum(p.sum() for p in strategy.model.main_parameters()) * 0.0
        loss = tied + value
        return None, loss, {"loss": loss, "recon": loss, "kl": tied}

    return forward, calls


def batch_of(step: int = 0) -> TrainingBatch:
    x = torch.randn(8, 20)
    return TrainingBatch(x, step, None, 1.0, lambda draw: torch.full((8, 20), float(draw)))


def adam_steps(optimizer: torch.optim.Optimizer) -> set[int]:
    return {int(state["step"]) for state in optimizer.state.values()}


def test_the_inner_loop_stops_when_a_windows_mean_loss_rises(registry):
    strategy = aggressive(registry, check_every=3)
    # windows of 3 updates: means 9, 6, 7 -> the third window rose: 9 updates, then the decoder's
    losses = [10, 9, 8, 7, 6, 5, 8, 7, 6, 100]
    forward, calls = scripted_forward(strategy, losses)
    logged = strategy.update(forward, batch_of())
    assert logged["encoder_updates"] == 9 and len(calls) == 10
    assert adam_steps(strategy.encoder_optimizer) == {9} and adam_steps(strategy.decoder_optimizer) == {1}
    assert logged["loss"] == 100, "the decoder's update is logged"


def test_the_first_update_uses_the_steps_batch_then_random_ones_and_the_decoder_the_steps_batch(registry):
    strategy = aggressive(registry, check_every=2, max_inner_steps=4)
    forward, calls = scripted_forward(strategy, [5.0])  # never rises: the cap ends the loop
    batch = batch_of()
    assert strategy.update(forward, batch)["encoder_updates"] == 4
    assert calls[0] is batch.x and calls[-1] is batch.x
    assert [float(x[0, 0]) for x in calls[1:4]] == [1.0, 2.0, 3.0], "extra draws 1, 2, 3 of this step"


def test_the_phase_ends_after_patience_lines_below_the_best_not_necessarily_in_a_row(registry):
    strategy = aggressive(registry, patience=2)
    for value, still in [(0.1, True), (0.3, True), (0.2, True), (0.4, True), (0.35, False)]:
        strategy.evaluated(0, {"mi_he": value})
        assert strategy.aggressive is still
    forward, calls = scripted_forward(strategy, [5.0])
    assert strategy.update(forward, batch_of())["encoder_updates"] == 0 and len(calls) == 1
    assert adam_steps(strategy.encoder_optimizer) == {1} == adam_steps(strategy.decoder_optimizer)


def test_defaults_follow_the_reference_per_kind_of_data(registry):
    image_like = aggressive(registry)
    assert (image_like.check_every, image_like.patience) == (10, 5)
    image_like.evaluated(0, {"mi_he": -0.01})  # below their starting value 0
    assert image_like.stalled == 1


def test_a_missing_validation_metric_is_named(registry):
    strategy = aggressive(registry, metric="mi_nope")
    with pytest.raises(Exception, match=r"reads the validation metric 'mi_nope'.*it reports: au, mi"):
        strategy.evaluated(0, {"mi": 0.1, "au": 1})


def test_text_losses_are_compared_per_predicted_word(registry, data_dir):
    ptb = PTB(PTBParams(limit=2000)).load(data_dir, 0)
    text = {"data": {"name": "ptb", "limit": 2000}, "encoder": {"name": "lstm"}, "decoder": {"name": "lstm"}}
    config = resolve(merge_raw(small_raw(), text), registry)
    torch.manual_seed(0)
    model = build_model(config, registry, ptb.spec)
    strategy = Aggressive(AggressiveParams(), model, config.train, Context())
    x = ptb.train_batch(0, 0, 16, 0)
    words = int((x != ptb.spec.pad_id).sum()) - 16  # every token after the start token is predicted
    assert strategy._units(x) == words and strategy.check_every == 15 and strategy.patience == 1


def test_extra_batches_are_pure_functions_of_seed_step_and_draw_and_come_from_the_epochs_batches(data_dir):
    ptb = PTB(PTBParams(limit=2000)).load(data_dir, 0)
    first = ptb.extra_train_batch(7, 1, 32, 0)
    assert torch.equal(first, ptb.extra_train_batch(7, 1, 32, 0))
    assert not torch.equal(first, ptb.extra_train_batch(7, 2, 32, 0))
    epoch = [ptb.train_batch(0, index, 32, 0) for index in range(ptb.steps_per_epoch(32))]
    assert any(batch.shape == first.shape and torch.equal(batch, first) for batch in epoch), (
        "one of the epoch's batches"
    )


@pytest.mark.slow
def test_an_aggressive_run_resumed_across_the_end_of_its_phase_is_the_run_straight_through(registry, tmp_path):
    # the validation -ELBO falls at once: as the watched metric, it ends the phase at the line of step 20
    phase = {"name": "aggressive", "max_inner_steps": 6, "check_every": 2, "patience": 1, "metric": "neg_elbo"}
    sections = {"strategy": phase}
    straight_config = small_config(registry, **sections)
    straight = Trainer(straight_config, registry, tmp_path / "straight", None)
    results = straight.run()
    updates = [line["train"]["encoder_updates"] for line in read_metrics(tmp_path / "straight")]
    assert all(4 <= mean <= 6 for mean in updates[:2]) and updates[2:] == [0.0, 0.0], updates  # 2 windows at least
    half = tmp_path / "half"
    Trainer(small_config(registry, train={"steps": 20}, **sections), registry, half, None).run()
    resumed = Trainer(straight_config, registry, half, None)
    assert resumed.run(resume=True)["metrics"] == results["metrics"]
    a, b = (load_checkpoint(path / CHECKPOINT_NAME) for path in (tmp_path / "straight", half))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert str(a["encoder_optimizer"]) == str(b["encoder_optimizer"])


def test_a_strategy_that_cannot_train_data_parallel_is_refused_in_a_distributed_run(registry):
    config = small_config(registry, strategy={"name": "aggressive"})
    data = registry.get("data", "synthetic").cls(config.data.params).load(None, 0)
    model = build_model(config, registry, data.spec)
    with pytest.raises(UsageError, match=r"^strategy 'aggressive' cannot train data-parallel \(2 processes\)"):
        build_strategy(config, registry, model, data, Context(rank=0, world_size=2))
    assert build_strategy(config, registry, model, data, Context()).aggressive
