"""LeCun's idx3 files of unsigned bytes, the format of MNIST's ``train-images-idx3-ubyte`` and
``t10k-images-idx3-ubyte``.

The header is four big-endian int32s: the magic number 2051 (0x00000803: unsigned bytes, 3 dimensions), the number
of images n, then 28 and 28; the n images follow row by row, one byte per pixel (0..255). The file is gzip'd when
its name ends in ``.gz``. Checked: the header is complete, the magic number is 2051 (2049, an idx1 file of labels,
is named as such), the images are 28x28, there is at least one, and the file holds exactly the bytes its header
counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaezoo.datafiles.files import gunzipped, parsing, require
from vaezoo.datafiles.grey_images import SIDE

IDX_WHAT = "an idx3 file of 28x28 MNIST images (like LeCun's train-images-idx3-ubyte; gzip'd if named .gz)"
#: Magic number of an idx file of unsigned bytes in 3 dimensions (0x00000803), and of one in 1 dimension (labels).
IDX3_UBYTE, IDX1_UBYTE = 2051, 2049
HEADER_BYTES = 16


def idx_pixels(path: Path, raw: bytes) -> np.ndarray:
    """The pixels ``(n, 28, 28)`` (uint8, 0..255) of an idx3 file of unsigned bytes, its bytes ``raw`` (gzip'd if
    the name ends in ``.gz``); anything else is a UsageError naming the file and what is wrong."""
    with parsing(path, IDX_WHAT):
        data = gunzipped(path, raw)
        problem = f"it holds {len(data)} bytes, fewer than the {HEADER_BYTES} of the header"
        require(len(data) >= HEADER_BYTES, path, IDX_WHAT, problem)
        magic, count, height, width = (int(v) for v in np.frombuffer(data[:HEADER_BYTES], dtype=">i4"))
        labels = f" ({IDX1_UBYTE} is an idx1 file, e.g. of labels)" if magic == IDX1_UBYTE else ""
        require(magic == IDX3_UBYTE, path, IDX_WHAT, f"its magic number is {magic}, not {IDX3_UBYTE}{labels}")
        require((height, width) == (SIDE, SIDE), path, IDX_WHAT, f"its images are {height}x{width}, not 28x28")
        require(count > 0, path, IDX_WHAT, "its header counts no images")
        expected = HEADER_BYTES + count * SIDE * SIDE
        problem = f"it holds {len(data)} bytes, but its header's {count} images take {expected}"
        require(len(data) == expected, path, IDX_WHAT, problem)
        return np.frombuffer(data, dtype=np.uint8, offset=HEADER_BYTES).reshape(count, SIDE, SIDE)
