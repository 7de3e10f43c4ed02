"""The arithmetic of the networks: ``train.precision`` (fp32, or bf16 through torch.autocast).

Under bf16 the matrix multiplies and convolutions of the forward pass run in bfloat16 on CPU and CUDA alike, while
the parameters, their gradients and the optimiser's state stay float32 (torch.autocast casts on the fly). Every
number that is summed stays float32: posteriors are built from float32 parameters
(:func:`vaezoo.components.distributions.diagonal_normal_from`), decoders compute their log-likelihoods from float32
logits,
and losses and metrics are accumulated from those. The backward pass runs outside the autocast region, as torch
recommends; its operations follow the dtypes the forward pass recorded.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: torch.device) -> AbstractContextManager[None]:
    """A context in which the forward passes on ``device`` compute at ``precision`` (a no-op for fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
