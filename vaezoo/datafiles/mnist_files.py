"""The user's MNIST files, named by a data parameter or found in the data directory under LeCun's names.

A file whose name ends in ``.csv`` or ``.csv.gz`` is read as a CSV like the shipped one
(:mod:`vaezoo.datafiles.mnist_csv`), any other as an idx3 file (:mod:`vaezoo.datafiles.idx`); a folder is refused.
Not shipped, so no checksum: the format checks of those modules apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vaezoo.datafiles.files import read_bytes, require
from vaezoo.datafiles.grey_images import as_grey
from vaezoo.datafiles.idx import IDX_WHAT, idx_pixels
from vaezoo.datafiles.mnist_csv import csv_pixels

if TYPE_CHECKING:
    from torch import Tensor

#: LeCun's files, by split, as the names tried in ``DATA_DIR/mnist`` (first found first). The training file makes
#: the train and valid splits.
MNIST_IDX = {
    "train": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
}
MNIST_FILE_WHAT = f"{IDX_WHAT}, or a CSV like mnist/mnist_5k.csv.gz (784 pixel columns 0..255, then the label)"


def read_mnist_file(path: Path) -> Tensor:
    """Grey levels, in file order, of an MNIST file named by a parameter or found in the data directory: an idx3
    file (see :func:`~vaezoo.datafiles.idx.idx_pixels`), or a CSV like the shipped one when its name ends in
    ``.csv`` or ``.csv.gz``; grey levels as for the shipped CSV (pixel / 255)."""
    require(path.is_file(), path, MNIST_FILE_WHAT, "it is a folder")
    raw = read_bytes(path)
    is_csv = path.name.removesuffix(".gz").endswith(".csv")
    return as_grey(csv_pixels(path, raw, MNIST_FILE_WHAT) if is_csv else idx_pixels(path, raw), 255.0)
