"""Standard files of every data set, named by data parameters or found in the data directory: LeCun's MNIST idx
files, Lake et al.'s Omniglot PNG folders and zips, He et al.'s and Mikolov's one-document-per-line test files.

Every file here holds real data: idx files of the shipped MNIST images, PNGs taken from the shipped Omniglot zips,
documents of the shipped Yahoo and PTB files. Each test checks the splits' sizes and contents, the provenance each
split records (``Data.sources``), the note printed for a standard file present but not used, and the one-line
error for a missing or malformed file, naming it and what is wrong.
"""

from __future__ import annotations

import gzip
import json
import shutil
import zipfile
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

from vaezoo.api import (
    MNIST_CSV,
    OMNIGLOT_NPZ,
    SPLITS,
    as_grey,
    read_lines,
    read_mnist_csv,
    read_mnist_file,
    read_omniglot_images,
    share_parts,
)
from vaezoo.base.errors import UsageError
from vaezoo.cli.main import main
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.datafiles.idx import IDX1_UBYTE, IDX3_UBYTE
from vaezoo_plugins.data.images import MNIST, Omniglot, fixed_bits
from vaezoo_plugins.data.text import PTB, PTB_TRAIN, PTB_VALID, YAHOO_VALID, YAHOO_VOCAB, Yahoo

SHIPPED_ZIPS = ("images_background_small1.zip", "images_background_small2.zip")


def sizes(data) -> list[int]:
    return [data.size(split) for split in SPLITS]


def link(data_dir: Path, target: Path, *files) -> Path:
    """``target`` as a data directory holding links to the shipped ``files`` (DataFile objects) of ``data_dir``."""
    for file in files:
        file.path(target).parent.mkdir(parents=True, exist_ok=True)
        file.path(target).symlink_to(file.path(data_dir))
    return target


def one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    """``vaezoo ARGV`` in this process exits 2 with one line of error holding every fragment."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("vaezoo: error: ") and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_a_division_gives_the_part_of_a_split_read_from_a_file_to_the_first_split_left():
    parts = {"train": np.array([5, 1, 3]), "valid": np.array([0, 4]), "test": np.array([2, 6])}
    alone = share_parts(parts, ())
    assert {split: names for split, (_, names) in alone.items()} == {s: [s] for s in SPLITS}
    assert alone["train"][0].tolist() == [5, 1, 3], "a single part keeps its (random) order"
    with_test = share_parts(parts, {"test"})
    assert with_test["train"] == (pytest.approx(np.array([1, 2, 3, 5, 6])), ["train", "test"])
    assert with_test["valid"][0].tolist() == [0, 4], "valid keeps its part: the same examples"
    assert share_parts(parts, {"train", "test"})["valid"][0].tolist() == list(range(7))
    assert share_parts(parts, set(SPLITS)) == {}


# ---------------------------------------------------------------------------------------------------------------
# MNIST: LeCun's idx files


def write_idx(path: Path, pixels: np.ndarray, magic: int = IDX3_UBYTE) -> Path:
    """``pixels (n, h, w)`` as an idx file (big-endian int32 magic, n, h, w, then the bytes), gzip'd if named .gz."""
    raw = np.array([magic, *pixels.shape], dtype=">i4").tobytes() + pixels.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


@pytest.fixture(scope="module")
def mnist_pixels(data_dir) -> np.ndarray:
    """The 5,000 real MNIST images of the shipped CSV, ``(5000, 28, 28)`` uint8."""
    with gzip.open(MNIST_CSV.path(data_dir)) as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)


@pytest.fixture
def mnist_dir(tmp_path, data_dir, mnist_pixels) -> Path:
    """A data directory with the shipped CSV and LeCun's two idx files: 300 training and 40 test images (real MNIST
    images taken from the CSV, so the idx files share images with it; here only their format matters)."""
    link(data_dir, tmp_path, MNIST_CSV)
    write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", mnist_pixels[:300])
    write_idx(tmp_path / "mnist" / "t10k-images-idx3-ubyte", mnist_pixels[4960:])
    return tmp_path


def test_idx_images_are_read_and_binarised_like_the_shipped_csv(data_dir, mnist_dir, mnist_pixels):
    grey = read_mnist_file(mnist_dir / "mnist" / "train-images-idx3-ubyte.gz")
    assert grey.shape == (300, 1, 28, 28) and grey.dtype == torch.float32
    assert torch.equal(grey, read_mnist_csv(data_dir, check_sha256=True)[:300]), "the CSV's grey levels, pixel/255"
    assert torch.equal(grey, as_grey(mnist_pixels[:300], 255.0))


def test_auto_reads_both_idx_files_with_valid_held_out_of_the_training_file(mnist_dir, mnist_pixels, capsys):
    data = MNIST(MNIST.Params()).load(mnist_dir, seed=0)
    assert sizes(data) == [270, 30, 40]
    folder = mnist_dir / "mnist"
    note = "vaezoo: note: data 'mnist': data.source=auto uses '{}', present in the data directory, {}; --set " + (
        "data.source=csv would not"
    )
    assert (
        capsys.readouterr().err.splitlines()
        == data.notes
        == [
            note.format(folder / "train-images-idx3-ubyte.gz", "for train and valid"),
            note.format(folder / "t10k-images-idx3-ubyte", "as the test split"),
        ]
    )
    grey = as_grey(mnist_pixels, 255.0)
    train_rows = [int(np.flatnonzero((grey[:300] == image).all(dim=(1, 2, 3)))[0]) for image in data.splits["train"]]
    assert len(set(train_rows)) == 270, "train holds 270 distinct images of the training file"
    test = fixed_bits(grey[4960:], eval_seed=0, stream=1)
    assert torch.equal(data.splits["test"], test), "the test file's fixed bits, in file order"
    train_file = str(mnist_dir / "mnist" / "train-images-idx3-ubyte.gz")
    assert data.sources["train"] == {
        "file": train_file,
        "examples": 270,
        "selection": "the train part of its 300 examples, divided at random by image: valid_fraction 0.1, "
        "split_seed 123; data.source=auto, as it is present",
    }
    assert data.sources["valid"]["file"] == train_file and data.sources["valid"]["examples"] == 30
    assert data.sources["test"] == {
        "file": str(mnist_dir / "mnist" / "t10k-images-idx3-ubyte"),
        "examples": 40,
        "selection": "all its 40 examples; data.source=auto, as it is present",
    }
    assert data.source_lines()[2] == (
        f"data test: 40 examples from '{mnist_dir / 'mnist' / 't10k-images-idx3-ubyte'}' (all its 40 examples; "
        "data.source=auto, as it is present)"
    )


def test_a_test_file_alone_replaces_the_csvs_test_part_which_joins_train(mnist_dir, data_dir, capsys):
    (mnist_dir / "mnist" / "train-images-idx3-ubyte.gz").unlink()
    shipped = MNIST(MNIST.Params()).load(link(data_dir, mnist_dir.parent / "plain", MNIST_CSV), seed=0)
    overlap = MNIST.Params(allow_overlap=True)  # the fixture's test images are the CSV's own
    data = MNIST(overlap).load(mnist_dir, seed=0)
    assert sizes(shipped) == [3500, 500, 1000] and sizes(data) == [4500, 500, 40]
    assert torch.equal(data.splits["valid"], shipped.splits["valid"]), "valid keeps its images"
    assert data.sources["train"]["selection"].startswith("the train and test parts of its 5000 examples")
    assert data.sources["test"]["file"].endswith("t10k-images-idx3-ubyte")
    assert capsys.readouterr().err.count("data.source=auto uses") == len(data.notes) - 1 == 1
    assert "(allowed by data.allow_overlap=true)" in data.notes[1]
    # the test file's bits do not depend on the file the training images come from
    idx = MNIST(attrs.evolve(overlap, source="idx", train_file="mnist_5k.csv.gz")).load(mnist_dir, seed=0)
    assert torch.equal(idx.splits["test"], data.splits["test"])
    assert sizes(idx) == [4500, 500, 40] and idx.sources["train"]["selection"].endswith("data.train_file")


def test_idx_files_present_but_not_used_are_noted_with_the_setting_that_uses_them(mnist_dir, capsys):
    data = MNIST(MNIST.Params(source="csv", limit=100)).load(mnist_dir, seed=0)
    assert sizes(data) == [100, 500, 1000]
    assert data.sources["train"]["selection"].endswith(
        "shipped; the first 100 after a shuffle by split_seed (data.limit)"
    )
    notes = capsys.readouterr().err.splitlines()
    assert notes == data.notes and len(notes) == 2
    assert f"'{mnist_dir / 'mnist' / 'train-images-idx3-ubyte.gz'}' is present but not used" in notes[0]
    assert "--set data.source=idx" in notes[0]
    assert f"'{mnist_dir / 'mnist' / 't10k-images-idx3-ubyte'}' is present but not used" in notes[1]
    assert "--set data.test_file=t10k-images-idx3-ubyte uses it as the test split" in notes[1]


def test_a_csv_test_file_relative_or_absolute(mnist_dir, mnist_pixels):
    table = np.concatenate([mnist_pixels[:7].reshape(7, -1), np.arange(7)[:, None]], axis=1)
    np.savetxt(mnist_dir / "extra.csv", table, fmt="%d", delimiter=",")
    for value in ("../extra.csv", str(mnist_dir / "extra.csv")):
        # the test images are the CSV's own
        data = MNIST(MNIST.Params(source="csv", test_file=value, allow_overlap=True)).load(mnist_dir, seed=0)
        assert (
            sizes(data) == [4500, 500, 7] and data.sources["test"]["selection"] == "all its 7 examples; data.test_file"
        )
        assert data.sources["test"]["file"] == str(mnist_dir / "extra.csv")


@pytest.mark.parametrize(
    ("pixels", "magic", "problem"),
    [
        (
            np.zeros((3, 28, 28)),
            IDX1_UBYTE,
            "its magic number is 2049, not 2051 (2049 is an idx1 file, e.g. of labels)",
        ),
        (np.zeros((3, 27, 28)), IDX3_UBYTE, "its images are 27x28, not 28x28"),
        (np.zeros((0, 28, 28)), IDX3_UBYTE, "its header counts no images"),
    ],
)
def test_a_malformed_idx_file_is_named_with_its_problem(mnist_dir, pixels, magic, problem):
    path = write_idx(mnist_dir / "mnist" / "t10k-images-idx3-ubyte", pixels, magic)
    with pytest.raises(UsageError) as error:
        MNIST(MNIST.Params()).load(mnist_dir, seed=0)
    assert str(error.value) == f"data 'mnist': data file '{path}' is not an idx3 file of 28x28 MNIST images " + (
        f"(like LeCun's train-images-idx3-ubyte; gzip'd if named .gz): {problem}"
    )


def test_a_truncated_or_corrupt_idx_file_is_a_clear_error(mnist_dir):
    path = mnist_dir / "mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-5]))
    with pytest.raises(UsageError, match=r"it holds 235211 bytes, but its header's 300 images take 235216"):
        MNIST(MNIST.Params()).load(mnist_dir, seed=0)
    path.write_bytes(raw)  # not gzip'd, though named .gz
    with pytest.raises(UsageError, match=rf"data file '{path}' is corrupt or not an idx3 file.*BadGzipFile"):
        MNIST(MNIST.Params()).load(mnist_dir, seed=0)


def test_missing_and_incomplete_idx_files_are_refused(mnist_dir):
    (mnist_dir / "mnist" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(UsageError) as error:
        MNIST(MNIST.Params(source="idx")).load(mnist_dir, seed=0)
    folder = mnist_dir / "mnist"
    expected = f"'{folder / 't10k-images-idx3-ubyte.gz'}' or '{folder / 't10k-images-idx3-ubyte'}', which is missing"
    assert expected in str(error.value) and "LeCun" in str(error.value)
    with pytest.raises(UsageError, match=r"but the test images from no file: set data\.test_file"):
        MNIST(MNIST.Params(train_file="train-images-idx3-ubyte.gz")).load(mnist_dir, seed=0)
    with pytest.raises(UsageError) as error:
        MNIST(MNIST.Params(test_file="t10k-images-idx3-ubyte.gz")).load(mnist_dir, seed=0)
    assert str(error.value) == (
        f"data 'mnist': data.test_file: '{folder / 't10k-images-idx3-ubyte.gz'}' does not exist (a relative path is "
        f"taken from '{folder}')"
    )
    with pytest.raises(UsageError, match="it is a folder"):
        MNIST(MNIST.Params(test_file=".")).load(mnist_dir, seed=0)


# ---------------------------------------------------------------------------------------------------------------
# Omniglot: Lake et al.'s PNG folders and zips

BACKGROUND = {"Balinese": 5, "Korean": 5}  # alphabet: characters taken, 4 drawers each
EVALUATION = {"Tagalog": 3}


def extract(zip_path: Path, alphabets: dict[str, int], target: Path) -> list[str]:
    """The first drawers' PNGs of the first characters of ``alphabets`` in a shipped zip, copied byte for byte
    into ``target/ALPHABET/CHARACTER/``; their ``ALPHABET/CHARACTER/FILE`` keys."""
    keys = []
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(archive.namelist()):
            _, alphabet, character, file = [*name.split("/"), "", "", ""][:4]
            if not file.endswith(".png") or alphabet not in alphabets:
                continue
            if int(character.removeprefix("character")) > alphabets[alphabet] or int(file[-6:-4]) > 4:
                continue
            (target / alphabet / character).mkdir(parents=True, exist_ok=True)
            (target / alphabet / character / file).write_bytes(archive.read(name))
            keys.append(f"{alphabet}/{character}/{file}")
    return keys


@pytest.fixture(scope="module")
def omniglot_tree(data_dir, tmp_path_factory) -> Path:
    """``omniglot/images_background`` (2 alphabets x 5 characters x 4 drawers) and ``images_evaluation`` (Tagalog,
    3 characters x 4 drawers) folders of real PNGs from the shipped zips, next to the shipped npz."""
    root = tmp_path_factory.mktemp("omniglot_tree")
    link(data_dir, root, OMNIGLOT_NPZ)
    folder = data_dir / "omniglot"
    assert len(extract(folder / SHIPPED_ZIPS[0], BACKGROUND, root / "omniglot" / "images_background")) == 40
    assert len(extract(folder / SHIPPED_ZIPS[1], EVALUATION, root / "omniglot" / "images_evaluation")) == 12
    return root


def copy_tree(tree: Path, target: Path) -> Path:
    shutil.copytree(tree, target, symlinks=True)
    return target


def test_pngs_are_made_28x28_exactly_as_the_shipped_npz_was(data_dir):
    """The PROVENANCE recipe (L, 255 - x, BOX resize 105 -> 28) on the shipped zips gives the npz's images."""
    with np.load(OMNIGLOT_NPZ.path(data_dir)) as archive:
        by_path = {str(path): image for path, image in zip(archive["path"], archive["images"], strict=True)}
    seen = set()
    for name in SHIPPED_ZIPS:
        images, keys = read_omniglot_images(data_dir / "omniglot" / name)
        with zipfile.ZipFile(data_dir / "omniglot" / name) as archive:
            paths = sorted("/".join(n.split("/")[1:]) for n in archive.namelist() if n.endswith(".png"))
        assert len(images) == len(paths) == len(keys) and keys[0] == paths[0].rsplit("/", 1)[0]
        expected = np.stack([by_path[path] for path in paths])
        assert torch.equal(images, as_grey(expected, 255.0)), name
        seen.update(paths)
    assert len(seen) == len(by_path) == 4840, "the two zips hold the npz's 4,840 distinct images"


def test_the_image_folders_make_train_valid_by_character_and_test(omniglot_tree, capsys):
    data = Omniglot(Omniglot.Params()).load(omniglot_tree, seed=0)
    assert sizes(data) == [36, 4, 12], "10 background characters, 1 held out for valid; the evaluation set is test"
    announced = capsys.readouterr().err.splitlines()
    assert len(announced) == 2 and all("data.source=auto uses" in line for line in announced)
    assert (
        "images_background', present in the data directory, for train and valid; --set data.source=npz"
        in (announced[0])
    )
    images, keys = read_omniglot_images(omniglot_tree / "omniglot" / "images_background")
    rows = {split: [int(np.flatnonzero((images == x).all(dim=(1, 2, 3)))[0]) for x in data.splits["train"]]
            for split in ["train"]}  # fmt: skip
    train_characters = {keys[row] for row in rows["train"]}
    assert len(train_characters) == 9 and len(set(keys)) == 10
    assert {data.sources[s]["file"] for s in SPLITS} == {
        str(omniglot_tree / "omniglot" / "images_background"),
        str(omniglot_tree / "omniglot" / "images_evaluation"),
    }
    assert data.sources["valid"]["selection"] == (
        "the valid part of its 40 examples, divided at random by character: valid_fraction 0.1, split_seed 123; "
        "data.source=auto, as it is present"
    )
    evaluation, _ = read_omniglot_images(omniglot_tree / "omniglot" / "images_evaluation")
    assert torch.equal(data.splits["test"], fixed_bits(evaluation, eval_seed=0, stream=1))


def test_zips_read_like_folders_and_the_npz_is_noted_not_silently_kept(omniglot_tree, tmp_path, capsys):
    tree = copy_tree(omniglot_tree, tmp_path / "zips")
    for name in ("images_background", "images_evaluation"):
        shutil.make_archive(str(tree / "omniglot" / name), "zip", tree / "omniglot", name)
        shutil.rmtree(tree / "omniglot" / name)
    zipped = Omniglot(Omniglot.Params()).load(tree, seed=0)
    folders = Omniglot(Omniglot.Params()).load(omniglot_tree, seed=0)
    for split in SPLITS:
        assert torch.equal(zipped.splits[split], folders.splits[split]), split
    assert zipped.sources["test"]["file"] == str(tree / "omniglot" / "images_evaluation.zip")
    capsys.readouterr()
    npz = Omniglot(Omniglot.Params(source="npz")).load(tree, seed=0)
    assert sizes(npz) == [3400, 480, 960]
    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 2 and all("is present but not used" in note for note in notes)
    assert "images_background.zip' is present but not used; --set data.source=images uses it" in notes[0]
    assert "images_evaluation.zip' is present but not used; --set data.test_file=images_evaluation.zip" in notes[1]


def test_an_evaluation_set_alone_is_the_test_split_of_the_npz(omniglot_tree, tmp_path, data_dir):
    tree = copy_tree(omniglot_tree, tmp_path / "tree")
    shutil.rmtree(tree / "omniglot" / "images_background")
    data = Omniglot(Omniglot.Params(allow_overlap=True)).load(tree, seed=0)  # the fixture's PNGs are the npz's
    npz = Omniglot(Omniglot.Params()).load(link(data_dir, tmp_path / "npz", OMNIGLOT_NPZ), seed=0)
    assert sizes(data) == [3400 + 960, 480, 12]
    assert torch.equal(data.splits["valid"], npz.splits["valid"]), "valid keeps its characters"
    assert data.sources["test"]["selection"] == "all its 12 examples; data.source=auto, as it is present"
    with pytest.raises(UsageError, match=r"data\.source=images reads .*images_background.*which is missing"):
        Omniglot(Omniglot.Params(source="images")).load(tree, seed=0)


def test_chardata_takes_no_image_files(omniglot_tree, tmp_path):
    tree = copy_tree(omniglot_tree, tmp_path / "tree")
    (tree / "omniglot" / "chardata.mat").write_bytes(b"")  # only its presence matters here
    with pytest.raises(UsageError) as error:
        Omniglot(Omniglot.Params(test_file="images_evaluation")).load(tree, seed=0)
    assert "data.test_file does not apply to Burda's chardata.mat (data.source=chardata, chosen by auto" in str(
        error.value
    )
    assert "set data.source=npz or images" in str(error.value)
    data = Omniglot(Omniglot.Params(source="images")).load(tree, seed=0)
    assert sizes(data) == [36, 4, 12] and "chardata.mat' is present but not used" in data.notes[0]


def test_malformed_omniglot_images_are_named_with_their_problem(omniglot_tree, tmp_path):
    from PIL import Image

    tree = copy_tree(omniglot_tree, tmp_path / "tree")
    evaluation = tree / "omniglot" / "images_evaluation"
    png = sorted(evaluation.rglob("*.png"))[0]
    original = png.read_bytes()
    Image.open(png).resize((50, 50)).save(png)
    with pytest.raises(UsageError, match=rf"data file '{png}' is not a 105x105 Omniglot PNG: it is 50x50"):
        Omniglot(Omniglot.Params()).load(tree, seed=0)
    png.write_bytes(original[:100])
    with pytest.raises(UsageError, match=rf"data file '{png}' is corrupt or not a 105x105 Omniglot PNG"):
        Omniglot(Omniglot.Params()).load(tree, seed=0)
    png.write_bytes(original)
    (evaluation / "loose.png").write_bytes(original)
    with pytest.raises(UsageError, match=r"'loose\.png' lies outside an ALPHABET/CHARACTER/ folder"):
        Omniglot(Omniglot.Params()).load(tree, seed=0)
    (evaluation / "loose.png").unlink()
    (tree / "empty").mkdir()
    with pytest.raises(UsageError, match=rf"data file '{tree / 'empty'}' is not a folder or zip .*: it holds no PNG"):
        Omniglot(Omniglot.Params(test_file=str(tree / "empty"))).load(tree, seed=0)
    (tree / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(UsageError, match=r"broken\.zip' is corrupt or not a folder or zip .*BadZipFile"):
        Omniglot(Omniglot.Params(test_file="../broken.zip")).load(tree, seed=0)


# ---------------------------------------------------------------------------------------------------------------
# Text: He et al.'s and Mikolov's one-document-per-line files


@pytest.fixture
def text_dir(tmp_path, data_dir) -> Path:
    """A data directory linking the shipped Yahoo and PTB files."""
    return link(data_dir, tmp_path / "data", YAHOO_VALID, YAHOO_VOCAB, PTB_TRAIN, PTB_VALID)


@pytest.fixture(scope="module")
def yahoo_lines(data_dir) -> list[str]:
    return read_lines(YAHOO_VALID, data_dir, check_sha256=False)


def test_a_yahoo_test_file_leaves_train_and_valid_to_the_shipped_documents(text_dir, yahoo_lines, tmp_path, capsys):
    """He et al.'s format (a document per line); here 30 real Yahoo documents, gzip'd or not, relative or absolute."""
    shipped = Yahoo(Yahoo.Params()).load(text_dir, seed=0)
    (tmp_path / "yahoo.test.txt").write_text("\n".join(yahoo_lines[:30]) + "\n")
    with gzip.open(text_dir / "yahoo" / "mine.txt.gz", "wt") as handle:
        handle.write("\n".join(yahoo_lines[:30]))
    for value in (str(tmp_path / "yahoo.test.txt"), "mine.txt.gz"):
        data = Yahoo(Yahoo.Params(test_file=value, allow_overlap=True)).load(text_dir, seed=0)  # shipped documents
        assert sizes(shipped) == [8000, 1000, 1000] and sizes(data) == [9000, 1000, 30]
        assert torch.equal(data.splits["valid"], shipped.splits["valid"]), "valid keeps its documents"
        assert data.decode(data.splits["test"]) == [" ".join(line.split()) for line in yahoo_lines[:30]]
        assert data.vocabulary.tokens == shipped.vocabulary.tokens
        assert data.sources["test"]["selection"] == "all its 30 examples; data.test_file"
        train = dict(data.sources["train"])
        assert 0 < train.pop("unknown_token_rate") < 0.1, "Yahoo's own text, mostly in its vocabulary"
        shared = {split: data.sources[split]["shared_with"] for split in ("train", "valid")}
        assert shared == {"train": {"test": 30 - shared["valid"]["test"]}, "valid": {"test": shared["valid"]["test"]}}
        assert train.pop("shared_with") == shared["train"], "each shipped test document is in train or in valid"
        assert train == {
            "file": str(YAHOO_VALID.path(text_dir)),
            "examples": 9000,
            "selection": "the train and test parts of its 10000 examples, divided at random: valid_fraction 0.1, "
            "test_fraction 0.1, split_seed 123; shipped",
        }
    assert data.sources["test"]["file"] == str(text_dir / "yahoo" / "mine.txt.gz")
    assert all("(allowed by data.allow_overlap=true)" in line for line in capsys.readouterr().err.splitlines())


def test_a_present_yahoo_test_file_is_used_by_auto_and_noted_otherwise(text_dir, yahoo_lines, capsys):
    standard = text_dir / "yahoo" / "yahoo.test.txt"
    standard.write_text("\n".join(yahoo_lines[-20:]) + "\n")
    data = Yahoo(Yahoo.Params(allow_overlap=True)).load(text_dir, seed=0)  # the test documents are shipped ones
    assert sizes(data) == [9000, 1000, 20]
    test = dict(data.sources["test"])
    assert sum(test.pop("shared_with").values()) == 20, "each is a shipped document of train or valid"
    assert 0 < test.pop("unknown_token_rate") < 0.1, "Yahoo's own text, mostly in its vocabulary"
    assert test == {
        "file": str(standard),
        "examples": 20,
        "selection": "all its 20 examples; data.source=auto, as it is present",
    }
    assert capsys.readouterr().err.splitlines()[0] == (
        f"vaezoo: note: data 'yahoo': data.source=auto uses '{standard}', present in the data directory, as the test "
        "split; --set data.source=shipped would not"
    )
    shipped = Yahoo(Yahoo.Params(source="shipped")).load(text_dir, seed=0)
    assert sizes(shipped) == [8000, 1000, 1000]
    note = (
        f"vaezoo: note: data 'yahoo': '{standard}' is present but not used; --set data.test_file=yahoo.test.txt uses it"
    )
    assert capsys.readouterr().err == note + "\n" and shipped.notes == [note]
    # a training file is used by auto only with its test file (the full corpus); alone, it is noted
    standard.rename(text_dir / "yahoo" / "yahoo.train.txt")
    alone = Yahoo(Yahoo.Params()).load(text_dir, seed=0)
    assert sizes(alone) == [8000, 1000, 1000] and "--set data.train_file=yahoo.train.txt uses it" in alone.notes[0]
    named = Yahoo(Yahoo.Params(train_file="yahoo.train.txt", allow_overlap=True)).load(text_dir, seed=0)
    assert sizes(named) == [20, 9000, 1000], "the shipped documents make valid (the rest) and test (its part)"
    assert len(named.notes) == 1 and "(allowed by data.allow_overlap=true)" in named.notes[0]


def test_a_yahoo_valid_file_gives_the_valid_part_to_train(text_dir, yahoo_lines, tmp_path):
    (tmp_path / "valid.txt").write_text("\n".join(yahoo_lines[:5]))
    data = Yahoo(Yahoo.Params(valid_file=str(tmp_path / "valid.txt"), allow_overlap=True)).load(text_dir, seed=0)
    assert sizes(data) == [9000, 5, 1000]
    assert data.sources["train"]["selection"].startswith("the train and valid parts of its 10000 examples")


def test_a_ptb_test_file_makes_ptb_valid_all_valid(text_dir, data_dir, capsys):
    """Mikolov's format (a sentence per line, each starting with a space); 40 real sentences as the test file."""
    sentences = read_lines(PTB_VALID, data_dir, check_sha256=False)
    default = PTB(PTB.Params()).load(text_dir, seed=0)
    (text_dir / "ptb" / "ptb.test.txt").write_text("\n".join(sentences[:40]) + "\n")
    data = PTB(PTB.Params(allow_overlap=True)).load(text_dir, seed=0)  # the test sentences are ptb.valid's own
    assert sizes(default) == [42068, 1685, 1685] and sizes(data) == [42068, 3370, 40]
    assert (
        torch.equal(data.splits["train"], default.splits["train"])
        and data.vocabulary.tokens == default.vocabulary.tokens
    )
    assert data.decode(data.splits["test"]) == [" ".join(s.split()) for s in sentences[:40]]
    assert [data.sources[s]["file"] for s in SPLITS] == [
        str(PTB_TRAIN.path(text_dir)), str(PTB_VALID.path(text_dir)), str(text_dir / "ptb" / "ptb.test.txt")
    ]  # fmt: skip
    assert data.sources["valid"]["selection"] == "all its 3370 examples; shipped"
    assert "vaezoo: note: data 'ptb': data.source=auto uses" in capsys.readouterr().err
    # the torchtext adapter's way of reading the splits (ptb_corpus) sees the same files
    lines = PTB(PTB.Params()).read(text_dir, PTB(PTB.Params()).uses_full(text_dir))
    assert [len(lines[s]) for s in SPLITS] == [42068, 3370, 40]
    assert len(PTB(PTB.Params()).read(text_dir, full=False)["test"]) == 1685


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "it holds no lines"),
        (b"a good line\nthe label\tthen text\n", "line 2 holds a tab (a label<TAB>text file is another format)"),
    ],
)
def test_a_malformed_test_file_is_named_with_its_problem(text_dir, content, problem):
    path = text_dir / "ptb" / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UsageError) as error:
        PTB(PTB.Params(test_file="bad.txt")).load(text_dir, seed=0)
    assert str(error.value) == (
        f"data 'ptb': data file '{path}' is not a UTF-8 text file of one document per line, its tokens separated by "
        f"spaces (gzip'd if named .gz): {problem}"
    )


def test_missing_undecodable_or_folder_test_files_are_clear_errors(text_dir):
    folder = text_dir / "ptb"
    (folder / "ptb.test.txt").write_text(" a sentence\n")
    with pytest.raises(UsageError) as error:
        PTB(PTB.Params(test_file="ptb.test.txt.gz")).load(text_dir, seed=0)
    assert str(error.value) == (
        f"data 'ptb': data.test_file: '{folder / 'ptb.test.txt.gz'}' does not exist (a relative path is taken from "
        f"'{folder}'); there is '{folder / 'ptb.test.txt'}'"
    )
    (folder / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(UsageError, match=r"latin1\.txt' is corrupt or not a UTF-8 text file.*UnicodeDecodeError"):
        PTB(PTB.Params(test_file="latin1.txt")).load(text_dir, seed=0)
    (folder / "plain.txt.gz").write_text(" not gzip'd\n")
    with pytest.raises(UsageError, match=r"plain\.txt\.gz' is corrupt or not a UTF-8 text file.*BadGzipFile"):
        PTB(PTB.Params(test_file="plain.txt.gz")).load(text_dir, seed=0)
    with pytest.raises(UsageError, match=rf"data file '{folder}' is not a UTF-8 .*: it is a folder"):
        PTB(PTB.Params(test_file=str(folder))).load(text_dir, seed=0)
    with pytest.raises(UsageError, match=r"ptb\.test\.txt\.gz' \(or 'ptb/ptb\.test\.txt'\) is missing"):
        (folder / "ptb.test.txt").unlink()
        PTB(PTB.Params(source="full")).load(text_dir, seed=0)


# ---------------------------------------------------------------------------------------------------------------
# vaezoo eval: data settings that keep the model's input, and only those


def text_run(registry, run_dir: Path, **data) -> Path:
    """A run directory holding only the config.json of a small Yahoo run with data settings ``data``: enough for
    ``vaezoo eval`` to check its data settings (it does so before it reads the checkpoint)."""
    raw = {
        "data": {"name": "yahoo", "limit": 48, "max_len": 20, **data},
        "encoder": {"name": "lstm", "embed_dim": 8, "hidden": 8},
        "decoder": {"name": "lstm", "embed_dim": 8, "hidden": 8},
    }
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(resolve(merge_raw(raw), registry).as_dict()))
    return run_dir


def test_eval_changes_only_the_data_settings_that_choose_evaluation_data(registry, text_dir, tmp_path, capsys):
    run = text_run(registry, tmp_path / "run")
    allowed = "for data 'yahoo': data.test_file, data.check_sha256"
    for setting in ("data.max_vocab=100", "data.name=ptb", "regularizer.beta=2"):
        argv = ["eval", str(run), "--data-dir", str(text_dir), "--set", setting]
        one_line_error(capsys, argv, "vaezoo eval changes evaluation settings only", allowed, repr(setting))
    argv = ["eval", str(run), "--data-dir", str(text_dir), "--set", "data.test_file=nope.txt"]
    one_line_error(capsys, argv, f"data.test_file: '{text_dir / 'yahoo' / 'nope.txt'}' does not exist")
