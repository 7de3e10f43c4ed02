"""The 28x28 images of MNIST and Omniglot as the image readers return them: float32 tensors ``'n 1 28 28'`` of
grey levels in [0, 1]."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

#: Height and width of the images the readers return.
SIDE = 28


def as_grey(pixels: np.ndarray, scale: float) -> Tensor:
    """``pixels 'n 28 28'`` divided by ``scale`` as float32 grey levels, shaped ``'n 1 28 28'``."""
    # Imported here so that modules parsing pixels only (idx, CSV) can be imported without loading torch.
    import torch

    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / np.float32(scale)).unsqueeze(1)
