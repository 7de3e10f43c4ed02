"""Lake et al.'s Omniglot images: a folder, or the ``.zip`` of ``brendenlake/omniglot`` (``images_background``,
``images_evaluation``), of 105x105 PNGs laid out ``ALPHABET/CHARACTER/*.png``.

Each image is made 28x28 exactly as the shipped npz was (converted to L, inverted, resized 105→28 with PIL's
``Image.BOX``). Checked: a path that is not a folder is a ``.zip`` that opens, every PNG lies in an
``ALPHABET/CHARACTER/`` folder, there is at least one, and each is an image of 105x105 pixels. A PNG found twice
under one key is read once; macOS resource files are skipped. Reading PNGs needs Pillow, which matplotlib (a
dependency of vaezoo) installs.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vaezoo.base.errors import UsageError
from vaezoo.datafiles.files import parsing, read_bytes, require
from vaezoo.datafiles.grey_images import SIDE, as_grey

if TYPE_CHECKING:
    from torch import Tensor

#: Lake et al.'s sets, by split, as the names tried in ``DATA_DIR/omniglot`` (first found first). The background
#: set makes the train and valid splits.
OMNIGLOT_IMAGES = {
    "train": ("images_background", "images_background.zip"),
    "test": ("images_evaluation", "images_evaluation.zip"),
}
OMNIGLOT_IMAGES_WHAT = (
    "a folder or zip of Lake et al.'s Omniglot images (ALPHABET/CHARACTER/*.png, 105x105, like images_background)"
)
OMNIGLOT_RAW_SIDE = 105
#: Each PNG's (alphabet, character, file name) and a reader of its bytes.
Member = tuple[tuple[str, str, str], Callable[[], bytes]]


def import_pil(path: Path) -> Any:
    """PIL's ``Image`` module, imported only when PNGs are read (Pillow comes with matplotlib)."""
    try:
        from PIL import Image
    except ImportError:
        raise UsageError(
            f"reading the PNGs of '{path}' needs Pillow (a dependency of matplotlib): pip install pillow"
        ) from None
    return Image


def omniglot_members(path: Path) -> list[Member]:
    """The PNGs of a folder or zip of Omniglot images, each as its (alphabet, character, file) key (the last three
    parts of its path) and a reader of its bytes, sorted by key; a key seen twice (the alphabets both "background
    small" sets hold) is kept once, as the shipped npz was built. macOS resource files are skipped."""
    what = OMNIGLOT_IMAGES_WHAT
    if path.is_dir():
        found = [(p.relative_to(path).parts, p.read_bytes) for p in path.rglob("*.png") if p.is_file()]
    else:
        require(path.suffix == ".zip", path, what, "it is neither a folder nor a .zip")
        with parsing(path, what):
            archive = zipfile.ZipFile(io.BytesIO(read_bytes(path)))
        names = [name for name in archive.namelist() if name.lower().endswith(".png") and not name.endswith("/")]
        found = [(tuple(name.split("/")), lambda name=name: archive.read(name)) for name in names]
    members: dict[tuple[str, str, str], Callable[[], bytes]] = {}
    for parts, reader in found:
        if "__MACOSX" in parts or parts[-1].startswith("._"):
            continue
        layout = f"'{'/'.join(parts)}' lies outside an ALPHABET/CHARACTER/ folder"
        require(len(parts) >= 3, path, what, layout)
        members.setdefault((parts[-3], parts[-2], parts[-1]), reader)
    require(bool(members), path, what, "it holds no PNG images")
    return sorted(members.items())


def read_omniglot_images(path: Path) -> tuple[Tensor, np.ndarray]:
    """Grey levels of the Omniglot PNGs of a folder or zip (see :func:`omniglot_members`), in key order, and each
    image's character key ``'alphabet/character'``.

    Each 105x105 image is made 28x28 as the shipped npz was (``omniglot/PROVENANCE.md``): converted to L, inverted
    (``255 - x``, so ink is 255) and resized 105→28 with PIL's ``Image.BOX`` (area averaging); grey = value / 255.
    An image of another size, or a file that is not an image, is a UsageError naming it."""
    image_module = import_pil(path)
    what = "a 105x105 Omniglot PNG"
    pixels, keys = [], []
    for (alphabet, character, name), reader in omniglot_members(path):
        member = path / alphabet / character / name
        with parsing(member, what), image_module.open(io.BytesIO(reader())) as image:
            size = "x".join(map(str, image.size))
            require(image.size == (OMNIGLOT_RAW_SIDE,) * 2, member, what, f"it is {size}")
            ink = 255 - np.asarray(image.convert("L"), dtype=np.uint8)
        pixels.append(np.asarray(image_module.fromarray(ink).resize((SIDE, SIDE), image_module.BOX)))
        keys.append(f"{alphabet}/{character}")
    return as_grey(np.stack(pixels), 255.0), np.array(keys)
