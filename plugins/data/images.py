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

Splits are kept apart (:mod:`vaezoo_plugins.data.checks`): two splits read from one file, or sharing more than 5 %
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
reading PNGs needs Pillow, which matplotlib (a dependency of vaezoo) installs. The readers of these formats, and
the divisions into splits, are the public ones of :mod:`vaezoo.api` (modules ``vaezoo.datafiles``, see
docs/data-plugins.md); this module chooses the files and makes the splits.
"""

from __future__ import annotations

import sys
from abc import abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from vaezoo.api import (
    CHARDATA,
    CHOSEN_BY_AUTO,
    MNIST_CSV,
    MNIST_FILE_WHAT,
    MNIST_IDX,
    OMNIGLOT_IMAGES,
    OMNIGLOT_IMAGES_WHAT,
    OMNIGLOT_NPZ,
    SPLITS,
    Data,
    DataSource,
    DataSpec,
    Rows,
    UsageError,
    auto_note,
    file_param,
    first_present,
    given_path,
    hold_out_last,
    limited,
    param,
    part_selection,
    read_chardata,
    read_mnist_csv,
    read_mnist_file,
    read_omniglot_images,
    read_omniglot_npz,
    share_parts,
    split_by_group,
    unused_note,
)
from vaezoo_plugins.data.checks import ALLOW_OVERLAP_HELP, Read, check_splits_apart, image_keys
from vaezoo_plugins.data.file_sources import (
    FIXED_BITS,
    TRAINING_BITS,
    HeldOutFractions,
    derived_seed,
    run_test_from_file,
)

SIDE = 28
IMAGE_SPEC = DataSpec((1, SIDE, SIDE), "binary")


# ---------------------------------------------------------------------------------------------------------------
# Binarisation


#: Streams of fixed bits: the file of the training split (or the shipped file), and a file of test images.
TRAIN_STREAM, TEST_STREAM = 0, 1


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
# Blocks: the images of one file and the splits they make


def without_test(by_split: Mapping[str, Any]) -> dict[str, Any]:
    """``by_split`` without its test split."""
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


@attrs.frozen
class ImageParams(HeldOutFractions):
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
            return found, CHOSEN_BY_AUTO if self.params.source == "auto" else f"data.source={source}"
        if found is not None and split == "test" and self.params.source == "auto":
            return found, CHOSEN_BY_AUTO
        return None

    def file_notes(self, data_dir: Path, source: str, files: Mapping[str, tuple[Path, str] | None]) -> list[str]:
        """Notes on the standard files present in the data directory: those ``data.source=auto`` chose for
        ``files``, and those ``files`` do not include."""
        notes = []
        for split, names in self.standard_files.items():
            found = first_present(data_dir / self.folder, names)
            used = files[split]
            use = "as the test split" if split == "test" else "for train and valid"
            if used is not None and used[1] == CHOSEN_BY_AUTO:
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
            why = CHOSEN_BY_AUTO if p.source == "auto" else "data.source=chardata"
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
