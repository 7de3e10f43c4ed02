"""The trainer: run directories, resume equality, the NaN guard and atomic checkpoints."""

from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import sys
import textwrap
from typing import ClassVar

import pytest
import torch

from tests.conftest import small_config, small_raw
from vaezoo import hookimpl
from vaezoo.base.errors import TrainingDiverged, UsageError
from vaezoo.components.distributions import diagonal_normal_from
from vaezoo.components.interfaces import Encoder, Regularizer
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.plugins.loading import load_plugins
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint, remove_stale_temporaries, save_checkpoint
from vaezoo.runs.session import flushing_subnormals
from vaezoo.training.trainer import Trainer


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_run_directory_contents(registry, tmp_path):
    config = small_config(registry)
    results = Trainer(config, registry, tmp_path, None).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.json",
        "history.jsonl",
        "latent_scatter.png",
        "metrics.jsonl",
        "results.json",
    ]
    lines = read_metrics(tmp_path)
    assert [line["step"] for line in lines] == [10, 20, 30, 40]
    for line in lines:
        assert {"neg_elbo", "recon", "kl", "mi", "au"} <= set(line["valid"])
        assert line["train"]["loss"] == pytest.approx(line["train"]["recon"] + line["train"]["beta_kl"], rel=1e-6)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["steps"] == saved["tested_step"] == 40 and saved["seed"] == 0
    assert saved["versions"]["torch"] == torch.__version__ and saved["examples"] == {"test": 256}
    assert saved["metrics"]["iw_examples"] == 256, "IW-NLL over every test example without eval.iw_limit"
    assert saved["metrics"] == results["metrics"]
    assert saved["metrics"]["iw_nll"] <= saved["metrics"]["neg_elbo"] + 1.0  # IW bound is the tighter one
    assert resolve(merge_raw(json.loads((tmp_path / "config.json").read_text())), registry) == config
    assert (tmp_path / "latent_scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_training_approaches_the_entropy_of_the_data(registry, tmp_path):
    """On N(0, I) data the best possible -ELBO is the data entropy, dim * 0.5 * log(2 pi e)."""
    config = small_config(registry, train={"steps": 200, "eval_every": 20})
    Trainer(config, registry, tmp_path, None).run()
    lines = read_metrics(tmp_path)
    entropy = 20 * 0.5 * math.log(2 * math.pi * math.e)
    assert lines[-1]["valid"]["neg_elbo"] < lines[0]["valid"]["neg_elbo"] - 0.5
    assert entropy - 0.5 < lines[-1]["valid"]["neg_elbo"] < entropy + 0.5


@pytest.mark.slow
def test_same_seed_same_run_and_other_seed_differs(registry, tmp_path):
    first = Trainer(small_config(registry), registry, tmp_path / "a", None).run()["metrics"]
    second = Trainer(small_config(registry), registry, tmp_path / "b", None).run()["metrics"]
    other = Trainer(small_config(registry, train={"seed": 1}), registry, tmp_path / "c", None).run()["metrics"]
    assert first == second
    assert first != other


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(registry, tmp_path):
    straight = Trainer(small_config(registry), registry, tmp_path / "straight", None).run()
    half = tmp_path / "half"
    Trainer(small_config(registry, train={"steps": 20}), registry, half, None).run()
    assert load_checkpoint(half / CHECKPOINT_NAME)["step"] == 20
    resumed = Trainer(small_config(registry), registry, half, None).run(resume=True)
    assert resumed["metrics"] == straight["metrics"]
    assert read_metrics(half) == read_metrics(tmp_path / "straight")
    a = load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME)["model"]
    b = load_checkpoint(half / CHECKPOINT_NAME)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resume_drops_metric_lines_written_after_the_checkpoint(registry, tmp_path):
    Trainer(small_config(registry, train={"steps": 20}), registry, tmp_path, None).run()
    with (tmp_path / "metrics.jsonl").open("a") as handle:  # a line from a step whose checkpoint was lost
        handle.write(json.dumps({"step": 30, "valid": {}}) + "\n")
    Trainer(small_config(registry), registry, tmp_path, None).run(resume=True)
    assert [line["step"] for line in read_metrics(tmp_path)] == [10, 20, 30, 40]


class ExplodesAt15(Regularizer):
    """beta-VAE whose loss turns to NaN at step 15, to exercise the guard."""

    name = "explodes"

    @staticmethod
    def forward(step):
        kl = step.kl().mean()
        return {"kl_term": kl * float("nan") if step.step >= 15 else kl}


class ExplodingPlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(ExplodesAt15)


@pytest.mark.slow
def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    registry = load_plugins(extra=(ExplodingPlugin(),)).registry
    config = small_config(registry, regularizer={"name": "explodes"})
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 15.*step 10"):
        Trainer(config, registry, tmp_path, None).run()
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert [line["step"] for line in read_metrics(tmp_path)] == [10]
    assert not (tmp_path / "results.json").exists()


class LearnedOffset(Regularizer):
    """A regulariser with a parameter of its own, trained by its own optimiser toward the mean code."""

    name = "learned-offset"

    def __init__(self, params, latent_dim):
        super().__init__(params, latent_dim)
        self.offset = torch.nn.Parameter(torch.zeros(()))

    def forward(self, step):
        return {"kl": step.kl().mean()}

    def auxiliary_parameters(self):
        return [self.offset]

    def auxiliary_loss(self, step):
        return (self.offset - 3.0) ** 2


class OffsetPlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(LearnedOffset)


@pytest.mark.slow
def test_auxiliary_parameters_get_their_own_optimiser_and_are_checkpointed(tmp_path):
    registry = load_plugins(extra=(OffsetPlugin(),)).registry
    config = small_config(registry, regularizer={"name": "learned-offset"}, train={"lr": 0.05})
    trainer = Trainer(config, registry, tmp_path, None)
    assert all(
        p is not trainer.session.model.regularizer.offset
        for p in trainer.strategy.optimizers()["optimizer"].param_groups[0]["params"]
    )
    trainer.run()
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["model"]["regularizer.offset"].item() == pytest.approx(trainer.session.model.regularizer.offset.item())
    assert 1.0 < state["model"]["regularizer.offset"].item() < 3.5
    assert state["auxiliary_optimizer"]["state"], "the auxiliary optimiser's state must be saved"


@pytest.mark.slow
def test_a_crash_mid_write_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "weights": torch.ones(3)})
    # A real process dies (os._exit, no cleanup) halfway through writing the next checkpoint's bytes.
    script = textwrap.dedent(
        f"""
        import os, torch
        from pathlib import Path
        from vaezoo.runs import checkpoint
        from vaezoo.base import files
        real_write = os.write
        def dying_write(fd, data):
            real_write(fd, bytes(data[: len(data) // 2]))
            os._exit(9)
        files.os.write = dying_write
        checkpoint.save_checkpoint(Path({str(path)!r}), {{"step": 2, "weights": torch.zeros(30000)}})
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert crashed.returncode == 9, crashed.stderr
    leftovers = list(tmp_path.glob(".checkpoint.pt.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0, "the crash must happen mid-write"
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(3))
    remove_stale_temporaries(tmp_path)
    assert not list(tmp_path.glob(".checkpoint.pt.*.tmp"))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "weights": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UsageError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_altered_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint(path, {"step": 1, "weights": torch.ones(1000)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit pattern inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="does not match its sha256 digest"):
        load_checkpoint(path)
    torch.save({"step": 1}, path)  # a torch file that is not a vaezoo checkpoint
    with pytest.raises(UsageError, match="not a vaezoo checkpoint"):
        load_checkpoint(path)


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    # An attacker can compute the digest too: the pickle must be refused by the loader itself.
    buffer = io.BytesIO()
    torch.save({"step": 1, "payload": Boom()}, buffer)
    payload = buffer.getvalue()
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(b"vaezoo-checkpoint sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(UsageError, match="refusing to load"):
        load_checkpoint(path)
    assert not Boom.ran


class Boom:
    ran = False

    def __reduce__(self):
        return (Boom.mark, ())

    @staticmethod
    def mark():
        Boom.ran = True
        return "executed"


class NaNEncoder(Encoder):
    """An encoder whose output turns to NaN from step 12 on (it counts its calls in training mode)."""

    name = "nan-after-12"

    def __init__(self, params, spec, latent_dim):
        super().__init__(params, spec, latent_dim)
        self.linear = torch.nn.Linear(spec.shape[0], 2 * latent_dim)
        self.calls = 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls > 12:
                out = out * float("nan")
        return diagonal_normal_from(out)


class NaNEncoderPlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(NaNEncoder)


@pytest.mark.slow
def test_a_diverging_encoder_stops_through_the_guard_not_a_traceback(tmp_path):
    registry = load_plugins(extra=(NaNEncoderPlugin(),)).registry
    config = resolve(merge_raw({**small_raw(), "encoder": {"name": "nan-after-12"}}), registry)
    with pytest.raises(TrainingDiverged, match="loss became nan at step 12"):
        Trainer(config, registry, tmp_path, None).run()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 10


def test_threads_setting_is_applied_and_validated(registry, tmp_path):
    before = torch.get_num_threads()
    try:
        Trainer(small_config(registry, train={"threads": 1, "steps": 2}), registry, tmp_path, None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UsageError, match=r"train: 'threads' must be >= 1: 0"):
        small_config(registry, train={"threads": 0})


class FlushProbeEncoder(NaNEncoder):
    """Records, at every training forward pass, whether subnormal floats are being flushed to zero."""

    name = "flush-probe"
    seen: ClassVar[list[bool]] = []

    def forward(self, x):
        if self.training:
            FlushProbeEncoder.seen.append(flushing_subnormals())
        return diagonal_normal_from(self.linear(x))


class FlushProbePlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(FlushProbeEncoder)


@pytest.mark.slow
@pytest.mark.parametrize("flush", [True, False])
def test_training_flushes_subnormals_as_configured_and_restores_the_mode(flush, tmp_path):
    registry = load_plugins(extra=(FlushProbePlugin(),)).registry
    raw = {**small_raw(train={"steps": 3, "flush_denormal": flush}), "encoder": {"name": "flush-probe"}}
    FlushProbeEncoder.seen = []
    for outside in (False, True):
        torch.set_flush_denormal(outside)
        try:
            Trainer(resolve(merge_raw(raw), registry), registry, tmp_path / f"{outside}", None).run()
            assert flushing_subnormals() == outside, "the caller's mode is restored"
        finally:
            torch.set_flush_denormal(False)
    assert len(FlushProbeEncoder.seen) == 6 and set(FlushProbeEncoder.seen) == {flush}
