"""Burda et al.'s 28x28 Omniglot, ``omniglot/chardata.mat`` (``yburda/iwae`` ``datasets/OMNIGLOT/chardata.mat``),
the split of the IWAE and NC-VAE papers: 24,345 training and 8,070 test images.

A MATLAB file holding ``data`` (784, n_train) and ``testdata`` (784, n_test), grey levels in [0, 1], one image per
column stored column-major (MATLAB order). Checked: it loads, both variables are there, numeric, 784 rows and at
least one column, finite and in [0, 1]. The user's copy is not shipped, so no checksum is enforced (the commonly
cited md5 of the original is 21ecaf34373511aa7691cf2e0802aa3d, but a copy may have been re-saved). Reading it needs
scipy (``pip install 'vaezoo[mat]'``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaezoo.base.errors import UsageError
from vaezoo.datafiles.files import DataFile, parsing, require
from vaezoo.datafiles.grey_images import SIDE, as_grey

if TYPE_CHECKING:
    from torch import Tensor

CHARDATA = DataFile(
    "omniglot/chardata.mat",
    "Burda et al.'s 28x28 Omniglot (MATLAB file with 'data' (784, 24345) and 'testdata' (784, 8070) in [0, 1])",
    "yburda/iwae datasets/OMNIGLOT/chardata.mat (md5 commonly cited as 21ecaf34373511aa7691cf2e0802aa3d)",
)


def import_loadmat(path: Path) -> Callable[..., dict[str, Any]]:
    """scipy.io.loadmat, imported only when a .mat file is read (scipy is an optional dependency)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UsageError(
            f"reading '{path}' needs scipy: pip install 'vaezoo[mat]' (or set data.source=npz to use the shipped "
            "Omniglot file instead)"
        ) from None
    return loadmat


def column_major_images(columns: np.ndarray) -> np.ndarray:
    """``(784, n)`` columns, each a 28x28 image stored column-major (MATLAB order), as upright ``(n, 28, 28)``.

    Same as the public loaders of Burda et al., Kim et al. and He et al.:
    ``data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='F')`` read row-major.
    """
    return columns.T.reshape(-1, SIDE, SIDE).transpose(0, 2, 1)


def read_chardata(data_dir: Path) -> tuple[Tensor, int]:
    """Grey levels of 'data' then 'testdata' of Burda's file, upright, and the number of 'data' images; a missing
    or bad file is a UsageError naming it and the problem."""
    path, raw = CHARDATA.read(data_dir, check_sha256=False)
    what = CHARDATA.what
    loadmat = import_loadmat(path)
    with parsing(path, what):
        contents = loadmat(io.BytesIO(raw))
        arrays = []
        for key in ("data", "testdata"):
            require(key in contents, path, what, f"it has no variable {key!r}")
            array = np.asarray(contents[key])
            ok = array.ndim == 2 and array.shape[0] == SIDE * SIDE and array.shape[1] > 0
            require(ok and np.issubdtype(array.dtype, np.number), path, what, f"{key!r} is {array.dtype} {array.shape}")
            in_range = bool(np.isfinite(array).all()) and array.min() >= 0 and array.max() <= 1
            require(in_range, path, what, f"{key!r} has values outside [0, 1]")
            arrays.append(column_major_images(array))
    return as_grey(np.concatenate(arrays), 1.0), arrays[0].shape[0]
