"""Data-parallel training in real processes (gloo on the CPU): the same run as one process with the global batch.

Two processes are started either by ``torchrun`` (the command line, as users run it) or by
``torch.multiprocessing`` with torchrun's environment variables (to run a model with test components). Every
child uses one thread: the machine's cores are shared.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import torch
import torch.multiprocessing
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from tests.conftest import small_raw
from vaezoo import hookimpl
from vaezoo.base.errors import UsageError
from vaezoo.components.distributions import diagonal_normal, diagonal_normal_from, isotropic_normal
from vaezoo.components.interfaces import WHOLE_BATCH, BatchStatistics, Step
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.plugins.loading import load_plugins
from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from vaezoo.training.distributed import Context, ShardedBatch, process_group
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.networks.mlp import MLPEncoder

pytestmark = pytest.mark.slow  # every test here trains or starts processes

WORLD = 2
CHILD_ENV = {"OMP_NUM_THREADS": "1"}
TIMEOUT_S = 180  # a hung process group fails the test instead of the whole suite
# Parameters of a 1-process and a 2-process run differ only by the order of floating-point sums.
PARAMETER_TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spawn(task, *args) -> None:
    """Run ``task(rank, *args)`` in WORLD real processes that see torchrun's environment variables."""
    children = torch.multiprocessing.spawn(_child, args=(free_port(), task, args), nprocs=WORLD, join=False)
    deadline = time.monotonic() + TIMEOUT_S
    while not children.join(timeout=1):
        if time.monotonic() > deadline:
            for child in children.processes:
                child.kill()
            pytest.fail(f"the {WORLD} processes did not finish within {TIMEOUT_S} s")


def _child(rank: int, port: int, task, args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        **CHILD_ENV,
    )
    torch.set_num_threads(1)
    task(rank, *args)


# -- loss terms built from batch statistics ---------------------------------------------------------------------


class Terms(nn.Module):
    """A linear encoder and a regulariser: the regulariser's loss and its Step for a batch and fixed prior draws."""

    def __init__(self, regularizer: nn.Module) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Linear(5, 4)
        self.regularizer = regularizer

    def step(self, x: Tensor, prior_draws: Tensor, batch: BatchStatistics = WHOLE_BATCH) -> Step:
        posterior = diagonal_normal_from(self.encoder(x))
        prior = isotropic_normal(2, 1.0)
        prior.sample = lambda shape: prior_draws[: shape[0]]  # the same draws in every process
        return Step(x, posterior, posterior.mean, torch.zeros(len(x)), prior, None, 0, batch=batch)

    def forward(self, x: Tensor, prior_draws: Tensor, batch: BatchStatistics = WHOLE_BATCH) -> Tensor:
        return sum(self.regularizer(self.step(x, prior_draws, batch)).values())


def regularizer(name: str, **params) -> nn.Module:
    registry = load_plugins().registry
    config = resolve(merge_raw(small_raw(regularizer={"name": name, **params})), registry)
    torch.manual_seed(1)
    return registry.get("regularizer", name).cls(config.regularizer.params, 2)


CASES = {
    "infovae": {"lambda": 10.0},  # the MMD of the whole batch
    "betavae": {"free_bits": 0.5},  # free bits clamp the whole batch's mean KL per dim
    "aae": {"hidden": [8]},  # the discriminator's own gradients are averaged over processes
}


def batch_and_draws() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(8, 5, generator=generator), 0.3 * torch.randn(8, 2, generator=generator)


def gradients(terms: Terms, x: Tensor, draws: Tensor, module: nn.Module, context: Context) -> dict[str, Tensor]:
    """The loss's gradients of the encoder and, for a regulariser with its own optimiser, of its parameters; the
    batch statistics are those of the shards of all processes when ``context`` is a process group's."""
    batch = ShardedBatch() if context.backend is not None else WHOLE_BATCH
    loss = module(x, draws, batch)
    loss.backward()
    out = {f"encoder.{name}": p.grad.clone() for name, p in terms.encoder.named_parameters()}
    out["loss"] = loss.detach()
    auxiliary = terms.regularizer.auxiliary_parameters()
    if auxiliary:
        for parameter in auxiliary:
            parameter.grad = None
        step = terms.step(x, draws)
        terms.regularizer.auxiliary_loss(attrs.evolve(step, z=step.z.detach())).backward()
        context.average_gradients(auxiliary)
        out.update({f"auxiliary.{i}": p.grad.clone() for i, p in enumerate(auxiliary)})
    return out


def _batch_statistics_task(rank: int, out: Path) -> None:
    x, draws = batch_and_draws()
    shard = slice(rank * 4, (rank + 1) * 4)
    results = {}
    with process_group(torch.device("cpu")) as context:
        for name, params in CASES.items():
            terms = Terms(regularizer(name, **params))
            ddp = DistributedDataParallel(terms)
            results[name] = gradients(terms, x[shard], draws[shard], ddp, context)
    torch.save(results, out / f"rank{rank}.pt")


def test_batch_statistic_losses_are_those_of_the_whole_batch_across_processes(tmp_path):
    """Two processes holding half a batch each get the loss and the gradients of one process holding all of it."""
    spawn(_batch_statistics_task, tmp_path)
    x, draws = batch_and_draws()
    for name, params in CASES.items():
        terms = Terms(regularizer(name, **params))
        expected = gradients(terms, x, draws, terms, Context())
        half = Terms(regularizer(name, **params))
        shard_only = gradients(half, x[:4], draws[:4], half, Context())
        ranks = [torch.load(tmp_path / f"rank{rank}.pt")[name] for rank in range(WORLD)]
        # a rank's loss mixes means over its shard with statistics of the whole batch: their mean is the loss
        mean_loss = sum(got.pop("loss") for got in ranks) / WORLD
        torch.testing.assert_close(mean_loss, expected.pop("loss"), rtol=1e-5, atol=1e-6)
        for rank, got in enumerate(ranks):
            assert got.keys() == expected.keys()
            for key, value in expected.items():
                torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6, msg=f"{name} {key} rank {rank}")
        # the check has teeth: half a batch on its own gives other gradients
        assert not torch.allclose(shard_only["encoder.weight"], expected["encoder.weight"], rtol=1e-3)


# -- a whole training run ---------------------------------------------------------------------------------------


class PointEncoder(MLPEncoder):
    """The mlp encoder with a fixed posterior scale of 1e-6: z is nearly the mean, so random draws hardly matter.

    Processes draw their own reparameterisation noise; with it negligible, a 2-process run must match the
    1-process run up to rounding, which makes the comparison exact enough to catch any sharding or averaging error.
    """

    name = "point-mlp"

    def forward(self, x: Tensor):
        loc = super().forward(x).mean
        return diagonal_normal(loc, torch.full_like(loc, math.log(1e-6)))


class PointPlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(PointEncoder)


def point_config():
    registry = load_plugins(extra=(PointPlugin(),)).registry
    raw = small_raw(
        encoder={"name": "point-mlp", "hidden": [32]},
        train={"steps": 40, "batch_size": 32, "optimizer": "sgd", "lr": 0.02, "momentum": 0.5},
    )
    return resolve(merge_raw(raw), registry), registry


def _training_task(rank: int, run_dirs: list[Path]) -> None:
    config, registry = point_config()
    with process_group(torch.device("cpu")) as context:
        Trainer(config, registry, run_dirs[rank], None, context).run()


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_like_one_process_with_the_combined_batch_and_only_rank_0_writes(tmp_path):
    config, registry = point_config()
    initial = Trainer(config, registry, tmp_path / "unused", None).session.model.state_dict()
    single = Trainer(config, registry, tmp_path / "single", None).run()
    run_dirs = [tmp_path / "rank0", tmp_path / "rank1"]
    spawn(_training_task, run_dirs)

    assert not run_dirs[1].exists(), "rank 1 wrote files"
    a = load_checkpoint(tmp_path / "single" / CHECKPOINT_NAME)["model"]
    b = load_checkpoint(run_dirs[0] / CHECKPOINT_NAME)["model"]
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    print(f"parameters moved by up to {moved:.3g}; 1 and 2 processes differ by up to {difference:.3g}")
    assert moved > 1000 * PARAMETER_TOLERANCE, "training must move the parameters for the comparison to mean anything"
    assert difference < PARAMETER_TOLERANCE
    results = json.loads((run_dirs[0] / "results.json").read_text())
    for name, value in single["metrics"].items():
        assert results["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-4), name
    # the training losses logged are means over both processes' shards, i.e. over the global batch
    for one, two in zip(read_metrics(tmp_path / "single"), read_metrics(run_dirs[0]), strict=True):
        assert one["step"] == two["step"]
        for name, value in one["train"].items():
            assert two["train"][name] == pytest.approx(value, rel=1e-4), name


# -- the command line under torchrun ----------------------------------------------------------------------------

RUN = [
    "run", "--steps", "40", "--batch-size", "32", "--set", "train.eval_every=10", "--set", "data.dim=20",
    "--set", "data.n_train=512", "--set", "data.n_valid=128", "--set", "data.n_test=128",
    "--set", "eval.iw_samples=10", "--set", "model.latent_dim=2", "--no-progress",
]  # fmt: skip


def torchrun(*args: str, logs: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node 2 -m vaezoo ARGS``; each rank's output goes to its own files under
    ``logs``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}"]
    command += ["--redirects", "3", "--log-dir", str(logs), "-m", "vaezoo", *args]
    env = {**os.environ, **CHILD_ENV}
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = launcher.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        launcher.terminate()  # torchrun stops its workers (which run in sessions of their own) on SIGTERM
        launcher.communicate(timeout=60)
        pytest.fail(f"torchrun did not finish within {TIMEOUT_S} s: {' '.join(args)}")
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)


def rank_output(logs: Path, rank: int, stream: str) -> str:
    (path,) = logs.glob(f"**/attempt_0/{rank}/{stream}.log")
    return path.read_text()


def test_torchrun_run_prints_on_rank_0_and_resumes_to_the_straight_result(tmp_path):
    straight = tmp_path / "straight"
    done = torchrun(*RUN, "--out", str(straight), logs=tmp_path / "logs-straight")
    assert done.returncode == 0, done.stderr
    assert "test metrics after 40 steps" in rank_output(tmp_path / "logs-straight", 0, "stdout")
    assert rank_output(tmp_path / "logs-straight", 1, "stdout") == ""
    assert [line["step"] for line in read_metrics(straight)] == [10, 20, 30, 40]  # one writer, no duplicate lines
    assert len(load_checkpoint(straight / CHECKPOINT_NAME)["rank_rngs"]) == WORLD

    half = tmp_path / "half"
    stopped = torchrun(*RUN[:2], "20", *RUN[3:], "--out", str(half), logs=tmp_path / "logs-half")
    assert stopped.returncode == 0, stopped.stderr
    resumed = torchrun("run", "--resume", str(half), "--steps", "40", "--no-progress", logs=tmp_path / "logs-resumed")
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(half) == read_metrics(straight)
    final = json.loads((half / "results.json").read_text())["metrics"]
    assert final == json.loads((straight / "results.json").read_text())["metrics"]


# -- refusals ---------------------------------------------------------------------------------------------------


def test_batches_that_do_not_split_evenly_are_refused():
    context = Context(rank=0, world_size=3, local_rank=0, backend="gloo")
    with pytest.raises(UsageError, match=r"train\.batch_size 64 does not split evenly across 3 processes"):
        context.check_batches(64, 600)
    with pytest.raises(UsageError, match=r"last batch of each epoch holds 8 examples .* across 3 processes"):
        context.check_batches(48, 200)
    context.check_batches(48, 207)  # a last batch of 15


def test_a_device_several_processes_cannot_share_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    refused = r"train\.device 'meta' cannot be used by several processes; valid: cpu, cuda"
    with pytest.raises(UsageError, match=refused), process_group(torch.device("meta")):
        pass


def test_one_process_uses_no_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with process_group(torch.device("cpu")) as context:
        assert context == Context() and context.is_main
        assert not torch.distributed.is_initialized()
