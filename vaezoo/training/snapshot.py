"""What a training checkpoint holds (model, optimisers, progress and every rank's random state) and taking it
back, so that a resumed run draws exactly the random numbers the run straight through would have."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vaezoo.training.distributed import Context
from vaezoo.training.progress import TrainingProgress
from vaezoo.training.strategy import TrainingStrategy


def rng_state() -> dict[str, Any]:
    """This process's random state (torch's, and CUDA's where there is a device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_rank(context: Context, seed: int, step: int) -> None:
    """Give a rank other than 0 random draws of its own (rank 0 keeps the one-process stream)."""
    rank_seed = context.rank_seed(seed, step)
    if rank_seed is not None:
        torch.manual_seed(rank_seed)


def checkpoint_state(
    progress: TrainingProgress, model: nn.Module, strategy: TrainingStrategy, rank_rngs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The checkpoint; ``rank_rngs`` holds every rank's RNG state (rank 0's is also ``rng``). Each optimiser of the
    training strategy is saved under its name, the strategy's own state under ``strategy``."""
    state = {
        **progress.checkpoint_fields(),
        "model": model.state_dict(),
        **{name: optimizer.state_dict() for name, optimizer in strategy.optimizers().items()},
        "strategy": strategy.state_dict(),
        "rng": rank_rngs[0],
    }
    if len(rank_rngs) > 1:
        state["rank_rngs"] = rank_rngs
    return state


def restore_checkpoint_state(
    state: dict[str, Any],
    progress: TrainingProgress,
    model: nn.Module,
    strategy: TrainingStrategy,
    context: Context,
    seed: int,
) -> None:
    """Continue from a checkpoint; every rank of a distributed run loads the same one.

    A rank takes back its own RNG state when the checkpoint was written by as many processes; otherwise rank 0
    takes the saved ``rng`` and the other ranks are seeded afresh from (seed, rank, step)."""
    model.load_state_dict(state["model"])
    for name, optimizer in strategy.optimizers().items():
        optimizer.load_state_dict(state[name])
    strategy.load_state_dict(state.get("strategy", {}))
    progress.restore(state)
    rank_rngs = state.get("rank_rngs", [state["rng"]])
    if len(rank_rngs) == context.world_size:
        set_rng_state(rank_rngs[context.rank])
    elif context.is_main:
        set_rng_state(state["rng"])
    else:
        seed_rank(context, seed, progress.step)
