"""The training loop, run directories, resuming, and evaluation of a finished run.

A run directory holds ``config.json`` (the resolved config), ``metrics.jsonl`` (one line per evaluation),
``checkpoint.pt`` (model, optimisers, RNG and step, written at every evaluation), ``results.json`` (final
test metrics, versions, seed, wall time) and ``latent_scatter.png``.

Determinism: the model is initialised after seeding, training batches are a pure function of (seed, epoch,
index), and evaluation runs under a forked RNG seeded from the run seed, so evaluating never perturbs
training. A checkpoint stores the RNG state, so N steps straight and N/2 + stop + resume are the same run.

Launched by torchrun, the run is data-parallel (``vaezoo.distributed`` states the contract): ``train.batch_size``
is the global batch, each rank trains on its shard of it, and rank 0 alone evaluates, writes and prints.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import numpy
import torch
from tqdm import tqdm

import vaezoo
from vaezoo.checkpoint import CHECKPOINT_NAME, load_checkpoint, remove_stale_temporaries, save_checkpoint
from vaezoo.config import RunConfig, TrainConfig
from vaezoo.distributed import Context
from vaezoo.distributions import isotropic_normal
from vaezoo.errors import TrainingDiverged, UsageError
from vaezoo.eval_prior import choose_test_variance
from vaezoo.figures import latent_scatter
from vaezoo.interfaces import Data
from vaezoo.metrics import code_separability, evaluate_priors
from vaezoo.model import VAE, build_model_for_data
from vaezoo.registry import Registry

DATA_DIR_VARIABLE = "VAEZOO_DATA"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.jsonl"
RESULTS_NAME = "results.json"
SCATTER_NAME = "latent_scatter.png"
DEFAULT_STEPS = 3000


def resolve_data_dir(explicit: str | Path | None) -> Path | None:
    """``--data-dir`` if given, else ``$VAEZOO_DATA``, else None; a named directory must exist."""
    chosen = explicit if explicit is not None else os.environ.get(DATA_DIR_VARIABLE)
    if chosen is None or str(chosen) == "":
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--data-dir" if explicit is not None else DATA_DIR_VARIABLE
        raise UsageError(f"data directory {str(path)!r} (from {source}) does not exist")
    return path


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"train.device {name!r} is not a torch device; valid: cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"train.device {name!r} is not available on this machine; valid: cpu")
    return device


@attrs.define
class Session:
    """Everything a run needs in memory: its config, data, model and device."""

    config: RunConfig
    data: Data
    model: VAE
    device: torch.device

    def batches(self, split: str) -> Iterator[torch.Tensor]:
        for x in self.data.batches(split, self.config.eval.batch_size, self.config.eval.limit):
            yield x.to(self.device)


def configure_cpu(train: TrainConfig) -> None:
    """Apply ``train.threads`` to torch's CPU thread count (none: torch's default)."""
    if train.threads is not None:
        if train.threads < 1:
            raise UsageError(f"train.threads must be >= 1, got {train.threads}")
        torch.set_num_threads(train.threads)


def flushing_subnormals() -> bool:
    """Whether this thread's CPU arithmetic treats subnormal floats as zero. torch can set the mode but not read
    it; a product below the smallest normal float32 (1.2e-38) reads 0 only when it is on."""
    return bool((torch.tensor([1e-30]) * torch.tensor([1e-10])).item() == 0)


@contextmanager
def subnormals_flushed(enabled: bool) -> Iterator[None]:
    """Run a block with subnormal floats flushed to zero (``enabled``) or not, and restore the mode after it.

    Flushing matters for recurrent networks: the gradient of an LSTM's last state shrinks at every step back
    through time and becomes subnormal after a couple of hundred tokens; x86 arithmetic on subnormals is slow
    enough that one backward pass of a 1024-unit LSTM over 32 sequences of 200 tokens takes 20 times as long
    (``python -m benchmarks.perf --parts subnormals``).
    Subnormals are below 1.2e-38, far beneath anything a float32 gradient step can resolve. The mode belongs to
    the thread (backward passes on the CPU run in the calling thread) and affects all its float arithmetic, so it
    is scoped to the work of vaezoo rather than left set in the caller's process."""
    before = flushing_subnormals()
    torch.set_flush_denormal(enabled)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def open_session(
    config: RunConfig, registry: Registry, data_dir: Path | None, device: torch.device | None = None
) -> Session:
    """Load the data and build a freshly initialised model (seeded) on ``device``, else the configured one."""
    device = device if device is not None else resolve_device(config.train.device)
    configure_cpu(config.train)
    source = registry.get("data", config.data.name).cls(config.data.params)
    if source.needs_data_dir and data_dir is None:
        raise UsageError(f"data {config.data.name!r} reads files: pass --data-dir or set {DATA_DIR_VARIABLE}")
    data = source.load(data_dir, config.train.seed)
    torch.manual_seed(config.train.seed)
    model = build_model_for_data(config, registry, data).to(device)
    return Session(config, data, model, device)


@contextmanager
def evaluation_rng(session: Session, salt: int = 0) -> Iterator[None]:
    """Run a block with its own seeded RNG and restore the training RNG afterwards."""
    devices = [session.device] if session.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(session.config.train.seed + 7919 * salt)
        yield


def evaluate_split(session: Session, split: str, test_prior: str, iw_samples: int) -> dict[str, float]:
    """Metrics of ``split`` under the chosen test prior (its variance is reported as ``test_prior_variance``)."""
    return evaluate_split_priors(session, split, [test_prior], iw_samples)[test_prior]


def evaluate_split_priors(
    session: Session, split: str, test_priors: Sequence[str], iw_samples: int
) -> dict[str, dict[str, float]]:
    """:func:`evaluate_split` under each of ``test_priors`` (choices such as ``tuned`` or ``2.5``), keyed by
    choice, in one pass: each choice's figures equal its evaluation alone (see ``evaluate_priors``)."""
    model, cfg = session.model, session.config.eval
    was_training = model.training
    model.eval()
    try:
        with evaluation_rng(session), subnormals_flushed(session.config.train.flush_denormal):
            variances = {
                choice: choose_test_variance(choice, model.regularizer, model.encoder, lambda: session.batches("valid"))
                for choice in test_priors
            }
            like = next(model.parameters())
            priors = {
                choice: isotropic_normal(session.config.model.latent_dim, variance, like=like)
                for choice, variance in variances.items()
            }
            metrics = evaluate_priors(
                model.encoder,
                model.decoder,
                priors,
                session.batches(split),
                iw_samples=iw_samples,
                iw_chunk=cfg.iw_chunk,
                au_threshold=cfg.au_threshold,
            )
    finally:
        model.train(was_training)
    return {choice: {**metrics[choice], "test_prior_variance": variances[choice]} for choice in test_priors}


def total_steps(config: RunConfig, data: Data) -> int:
    if config.train.epochs is not None:
        return config.train.epochs * data.steps_per_epoch(config.train.batch_size)
    return config.train.steps if config.train.steps is not None else DEFAULT_STEPS


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _versions() -> dict[str, str]:
    return {
        "vaezoo": vaezoo.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _keep_metric_lines_up_to(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint we resume from (they will be written again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a killed process
            continue
        if record["step"] <= step:
            kept.append(line)
    path.write_text("".join(f"{line}\n" for line in kept))


def _append_line(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def make_optimizer(config: RunConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    train = config.train
    if train.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=train.lr, momentum=train.momentum)
    return torch.optim.Adam(parameters, lr=train.lr)


class Trainer:
    """Trains one run in ``run_dir``; ``run`` returns the final results (also written to results.json).

    ``context`` places the process in a data-parallel run (default: the only process).
    """

    def __init__(
        self,
        config: RunConfig,
        registry: Registry,
        run_dir: Path,
        data_dir: Path | None,
        context: Context | None = None,
    ) -> None:
        self.context = context or Context()
        device = self.context.device(resolve_device(config.train.device))
        self.session = open_session(config, registry, data_dir, device)
        self.config, self.run_dir = config, run_dir
        self.context.check_batches(config.train.batch_size, self.session.data.size("train"))
        model = self.session.model
        self.optimizer = make_optimizer(config, model.main_parameters())
        auxiliary = model.regularizer.auxiliary_parameters()
        self.auxiliary_optimizer = model.regularizer.auxiliary_optimizer(config.train.lr) if auxiliary else None
        self.step = 0
        self.wall_time = 0.0
        self._seed_rank(step=0)

    def _seed_rank(self, step: int) -> None:
        """Give a rank other than 0 random draws of its own (rank 0 keeps the one-process stream)."""
        seed = self.context.rank_seed(self.config.train.seed, step)
        if seed is not None:
            torch.manual_seed(seed)

    # -- checkpoints -------------------------------------------------------------------------------
    def _state(self, rank_rngs: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint; ``rank_rngs`` holds every rank's RNG state (rank 0's is also ``rng``)."""
        state = {
            "step": self.step,
            "model": self.session.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "auxiliary_optimizer": self.auxiliary_optimizer.state_dict() if self.auxiliary_optimizer else {},
            "rng": rank_rngs[0],
            "wall_time": self.wall_time,
        }
        if len(rank_rngs) > 1:
            state["rank_rngs"] = rank_rngs
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint; every rank of a distributed run loads the same one.

        A rank takes back its own RNG state when the checkpoint was written by as many processes; otherwise
        rank 0 takes the saved ``rng`` and the other ranks are seeded afresh from (seed, rank, step).
        """
        self.session.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.auxiliary_optimizer is not None:
            self.auxiliary_optimizer.load_state_dict(state["auxiliary_optimizer"])
        self.step, self.wall_time = int(state["step"]), float(state["wall_time"])
        rank_rngs = state.get("rank_rngs", [state["rng"]])
        if len(rank_rngs) == self.context.world_size:
            _set_rng_state(rank_rngs[self.context.rank])
        elif self.context.is_main:
            _set_rng_state(state["rng"])
        else:
            self._seed_rank(self.step)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        """Train to the configured length (from the checkpoint when ``resume``); the results on rank 0, else {}."""
        with subnormals_flushed(self.config.train.flush_denormal):
            return self._run(resume)

    def _run(self, resume: bool) -> dict[str, Any]:
        checkpoint = self.run_dir / CHECKPOINT_NAME
        metrics_path = self.run_dir / METRICS_NAME
        main = self.context.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
        if resume and checkpoint.exists():
            self.restore(load_checkpoint(checkpoint))
        if main:
            _keep_metric_lines_up_to(metrics_path, self.step if resume else -1)
            (self.run_dir / CONFIG_NAME).write_text(json.dumps(self.config.as_dict(), indent=2) + "\n")

        session, train_cfg = self.session, self.config.train
        model, data = session.model, session.data
        n_steps = total_steps(self.config, data)
        per_epoch = data.steps_per_epoch(train_cfg.batch_size)
        sums: dict[str, float] = defaultdict(float)
        since_eval = 0
        started = time.perf_counter() - self.wall_time
        model.train()
        show = train_cfg.progress and main
        # The DDP wrapper lives only while training, not in a traceback either: the process group must outlive it.
        forward = self.context.wrap(model)
        bar = tqdm(total=n_steps, initial=self.step, desc="train", disable=not show, dynamic_ncols=True)
        try:
            while self.step < n_steps:
                epoch, index = divmod(self.step, per_epoch)
                batch = data.train_batch(epoch, index, train_cfg.batch_size, train_cfg.seed)
                x = self.context.shard(batch).to(session.device)
                try:
                    record, loss, logged = forward(x, self.step, data)
                except ValueError as error:
                    # torch.distributions refuses NaN or inf parameters before any loss exists
                    if "invalid values" not in str(error):
                        raise
                    loss = torch.tensor(float("nan"), device=session.device)
                # every rank sees the same mean, so all of them stop together
                loss_everywhere = self.context.mean_loss(loss)
                if not torch.isfinite(loss_everywhere):
                    raise TrainingDiverged(
                        f"loss became {loss_everywhere.item()} at step {self.step}; stopped. The last good checkpoint "
                        f"(step {self._checkpoint_step(checkpoint)}) is kept in {str(checkpoint)!r}"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if train_cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.main_parameters(), train_cfg.grad_clip)
                self.optimizer.step()
                if self.auxiliary_optimizer is not None:
                    self._auxiliary_step(record)
                for name, value in logged.items():
                    sums[name] += value.item()
                since_eval += 1
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{logged['loss'].item():.2f}", kl=f"{logged['kl'].item():.3f}", refresh=False)
                if self.step % train_cfg.eval_every == 0 or self.step == n_steps:
                    self.wall_time = time.perf_counter() - started
                    sums_everywhere = self.context.mean_over_ranks(dict(sums))
                    train_means = {name: total / since_eval for name, total in sums_everywhere.items()}
                    rank_rngs = self.context.gather(_rng_state())
                    # Rank 0 evaluates alone, exactly as one process would (same batches and seeded RNG, so MI's
                    # aggregate posterior is the same evaluation batch); the others wait in their next collective.
                    if main:
                        valid = evaluate_split(session, "valid", self.config.eval.test_prior, iw_samples=0)
                        _append_line(
                            metrics_path,
                            {
                                "step": self.step,
                                "epoch": round(self.step / per_epoch, 3),
                                "train": train_means,
                                "valid": valid,
                            },
                        )
                        save_checkpoint(checkpoint, self._state(rank_rngs))
                    sums.clear()
                    since_eval = 0
        finally:
            bar.close()
            del forward
        return self.finish() if main else {}

    def _auxiliary_step(self, record) -> None:
        """One step of the regulariser's own optimiser on the detached codes of this batch.

        This loss is not computed in DDP's forward pass, so DDP does not average its gradients: this method does.
        """
        detached = attrs.evolve(record, z=record.z.detach(), log_px=record.log_px.detach())
        assert self.auxiliary_optimizer is not None
        regularizer = self.session.model.regularizer
        self.auxiliary_optimizer.zero_grad(set_to_none=True)
        regularizer.auxiliary_loss(detached).backward()
        self.context.average_gradients(regularizer.auxiliary_parameters())
        self.auxiliary_optimizer.step()

    @staticmethod
    def _checkpoint_step(path: Path) -> int | str:
        return load_checkpoint(path)["step"] if path.exists() else "none written yet"

    def finish(self) -> dict[str, Any]:
        """Test metrics (with IW-NLL), the latent scatter, and results.json (rank 0's work)."""
        session, cfg = self.session, self.config
        test = evaluate_split(session, "test", cfg.eval.test_prior, iw_samples=cfg.eval.iw_samples)
        data_codes, noise_codes = test_codes(session)
        title = f"{cfg.regularizer.name} on {cfg.data.name}"
        latent_scatter(data_codes.samples, noise_codes and noise_codes.samples, self.run_dir / SCATTER_NAME, title)
        if noise_codes is not None:
            test["separability"] = code_separability(data_codes.samples, noise_codes.samples, seed=cfg.train.seed)
        results = {
            "metrics": test,
            "test_prior": cfg.eval.test_prior,
            "steps": self.step,
            "seed": cfg.train.seed,
            "wall_time_s": round(self.wall_time, 3),
            "versions": _versions(),
            "config": cfg.as_dict(),
        }
        (self.run_dir / RESULTS_NAME).write_text(json.dumps(results, indent=2) + "\n")
        return results


@attrs.frozen
class Codes:
    """Posterior samples and means of a set of examples, ``'b d'`` each, on the CPU."""

    samples: torch.Tensor
    means: torch.Tensor


@torch.no_grad()
def test_codes(session: Session, limit: int = 2000) -> tuple[Codes, Codes | None]:
    """Codes of test data and, when the data set has noise of its own, of its test noise."""
    model = session.model
    model.eval()

    def encode(x: torch.Tensor) -> Codes:
        posterior = model.encoder(x[:limit].to(session.device))
        return Codes(posterior.sample().cpu(), posterior.mean.cpu())

    with evaluation_rng(session, salt=1):
        noise = session.data.noise.get("test")
        return encode(session.data.splits["test"]), encode(noise) if noise is not None else None


def load_trained(run_dir: Path, registry: Registry, data_dir: Path | None, overrides: dict | None = None) -> Session:
    """A finished or interrupted run's session with the weights of its latest checkpoint."""
    from vaezoo.config import merge_raw, read_config_file, resolve

    config_path = run_dir / CONFIG_NAME
    if not config_path.is_file():
        raise UsageError(f"{str(run_dir)!r} is not a run directory (no {CONFIG_NAME})")
    config = resolve(merge_raw(read_config_file(config_path), overrides or {}), registry)
    session = open_session(config, registry, data_dir)
    session.model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_NAME)["model"])
    return session
