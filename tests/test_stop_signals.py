"""A stop signal at any moment of training ends the run at a step its checkpoint holds, so a resume trains no step
twice and skips none. The signal is raised in the trainer's own process (the main thread, as from a scheduler)
at a chosen moment: inside a step, between two steps, during a validation."""

from __future__ import annotations

import json
import signal

import pytest

from tests.conftest import small_config
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.runs.interrupts import Interrupted, StopSignals
from vaezoo.training.trainer import Trainer

SIGNAL_AFTER_CALLS = 13  # the 13th step: not an evaluation point (every 10 steps)


def signal_after(method_name: str, calls: int, monkeypatch) -> None:
    """Make ``Trainer.METHOD`` raise SIGINT in this process when its ``calls``-th call returns."""
    original = getattr(Trainer, method_name)
    count = {"calls": 0}

    def wrapped(self, *args, **kwargs):
        returned = original(self, *args, **kwargs)
        count["calls"] += 1
        if count["calls"] == calls:
            signal.raise_signal(signal.SIGINT)
        return returned

    monkeypatch.setattr(Trainer, method_name, wrapped)


def test_a_signal_recorded_in_a_deferred_block_raises_on_entering_an_immediate_one_and_the_modes_nest():
    with StopSignals() as signals, signals.deferred():
        signal.raise_signal(signal.SIGINT)  # recorded, not raised
        assert signals.requested == signal.SIGINT
        with pytest.raises(Interrupted), signals.immediate():
            pass
        with signals.deferred():
            pass
        signals.requested = None
        try:
            signal.raise_signal(signal.SIGINT)
        except Interrupted:
            pytest.fail("the outer block no longer defers once the nested blocks have ended")
        assert signals.requested == signal.SIGINT


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method_name", "calls"),
    [
        ("_train_step", SIGNAL_AFTER_CALLS),  # inside a step
        ("_advance", SIGNAL_AFTER_CALLS),  # between two steps, where no step is being taken
        ("_validate", 1),  # during the first validation, after its checkpoint
    ],
)
def test_a_stop_signal_at_any_moment_leaves_the_checkpoint_of_the_step_it_stopped_at(
    registry, tmp_path, monkeypatch, one_torch_thread, method_name, calls
):
    config = small_config(registry)
    straight = Trainer(config, registry, tmp_path / "straight", None).run()
    signal_after(method_name, calls, monkeypatch)
    stopped = Trainer(config, registry, tmp_path / "stopped", None)
    with pytest.raises(Interrupted):
        stopped.run()
    history = [json.loads(line) for line in (tmp_path / "stopped" / "history.jsonl").read_text().splitlines()]
    checkpointed = load_checkpoint(tmp_path / "stopped" / CHECKPOINT_NAME)["step"]
    assert history[-1]["event"] == "interrupted" and history[-1]["step"] == checkpointed == stopped.progress.step
    assert 0 < checkpointed < config.train.steps
    monkeypatch.undo()
    resumed = Trainer(config, registry, tmp_path / "stopped", None).run(resume=True)
    assert resumed["metrics"] == straight["metrics"]
