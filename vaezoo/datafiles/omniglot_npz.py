"""The shipped 28x28 Omniglot file, ``omniglot/omniglot28_background_small.npz``.

A numpy ``.npz`` (no pickles) of three arrays of equal length: ``images`` uint8 ``(n, 28, 28)`` (ink 255),
``alphabet`` and ``character`` (each image's alphabet and character names). Checked: its sha256 (unless disabled),
that it loads, the three arrays are there with equal lengths, and ``images`` is a non-empty uint8 ``(n, 28, 28)``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vaezoo.datafiles.files import DataFile, parsing, require
from vaezoo.datafiles.grey_images import SIDE, as_grey

if TYPE_CHECKING:
    from torch import Tensor

OMNIGLOT_NPZ = DataFile(
    "omniglot/omniglot28_background_small.npz",
    "the 28x28 Omniglot npz (arrays images uint8 (4840, 28, 28), alphabet, character)",
    "the shared data folder, derived from brendenlake/omniglot images_background_small{1,2}.zip "
    "(see omniglot/PROVENANCE.md there)",
    sha256="3509196294611d682a5acbf323ba979482fbd892658caf44efb760bddc652bed",
)


def read_omniglot_npz(data_dir: Path, check_sha256: bool) -> tuple[Tensor, np.ndarray]:
    """Grey levels (value / 255) of the shipped npz in file order and each image's character key
    ``'alphabet/character'``; a bad file is a UsageError naming it and the problem."""
    path, raw = OMNIGLOT_NPZ.read(data_dir, check_sha256)
    what = OMNIGLOT_NPZ.what
    with parsing(path, what), np.load(io.BytesIO(raw), allow_pickle=False) as archive:
        missing = sorted({"images", "alphabet", "character"} - set(archive.files))
        require(not missing, path, what, f"arrays {missing} are missing (it has {sorted(archive.files)})")
        images, alphabet, character = archive["images"], archive["alphabet"], archive["character"]
        shape_ok = images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (SIDE, SIDE)
        require(shape_ok, path, what, f"images is {images.dtype} {images.shape}")
        require(len(images) > 0, path, what, "it holds no images")
        lengths = (len(images), len(alphabet), len(character))
        require(len(set(lengths)) == 1, path, what, f"images, alphabet, character have lengths {lengths}")
        keys = np.char.add(np.char.add(alphabet.astype(str), "/"), character.astype(str))
    return as_grey(images, 255.0), keys
