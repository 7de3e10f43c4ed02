"""The public readers of data files (``vaezoo.api``, modules ``vaezoo.datafiles``), called as a third-party data
plugin calls them: each damaged file is refused with one line naming the file and the problem, each division is
the one documented, and the example plugin of docs/data-plugins.md loads real images and refuses a damaged file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import subprocess
import sys
import types

import numpy as np
import pytest

from tests.conftest import REPO
from vaezoo.api import (
    MNIST_CSV,
    DataFile,
    Specials,
    UsageError,
    as_grey,
    auto_note,
    csv_pixels,
    decode_lines,
    first_present,
    given_path,
    gunzipped,
    hold_out_last,
    idx_pixels,
    limited,
    parsing,
    part_selection,
    present,
    random_parts,
    read_bytes,
    read_documents,
    read_mnist_csv,
    read_omniglot_npz,
    read_vocabulary,
    require,
    split_by_group,
    unused_note,
    user_file,
)

SIDE = 28
DOCS = REPO / "docs" / "data-plugins.md"


def idx_bytes(pixels: np.ndarray, magic: int = 2051) -> bytes:
    return np.array([magic, len(pixels), SIDE, SIDE], dtype=">i4").tobytes() + pixels.astype(np.uint8).tobytes()


@pytest.fixture(scope="module")
def mnist_pixels(data_dir) -> np.ndarray:
    """The first 300 shipped MNIST images as uint8 pixels."""
    return (read_mnist_csv(data_dir, check_sha256=True)[:300, 0].numpy() * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Any file


def test_data_file_refuses_a_missing_file_and_a_checksum_mismatch_naming_it(tmp_path):
    file = DataFile("set/a.bin", "a test file", "nowhere", sha256=hashlib.sha256(b"right").hexdigest())
    with pytest.raises(UsageError, match=r"data file '.*set/a\.bin' is missing; expected a test file, from nowhere"):
        file.read(tmp_path, check_sha256=True)
    file.path(tmp_path).parent.mkdir()
    file.path(tmp_path).write_bytes(b"right")
    assert file.read(tmp_path, check_sha256=True) == (tmp_path / "set/a.bin", b"right")
    file.path(tmp_path).write_bytes(b"wrong")
    with pytest.raises(UsageError, match=r"a\.bin' fails its checksum: expected sha256 [0-9a-f]{64}, got") as error:
        file.read(tmp_path, check_sha256=True)
    assert "data.check_sha256=false" in str(error.value)
    assert file.read(tmp_path, check_sha256=False)[1] == b"wrong"


def test_read_bytes_of_a_folder_names_it(tmp_path):
    with pytest.raises(UsageError, match=rf"data file '{re.escape(str(tmp_path))}' cannot be read: "):
        read_bytes(tmp_path)


def test_gunzipped_decompresses_by_name_only(tmp_path):
    packed = gzip.compress(b"text")
    assert gunzipped(tmp_path / "a.txt.gz", packed) == b"text"
    assert gunzipped(tmp_path / "a.txt", packed) == packed


def test_parsing_and_require_give_one_line_naming_file_what_and_problem(tmp_path):
    path = tmp_path / "f.dat"
    with pytest.raises(UsageError) as error, parsing(path, "a thing"):
        int("x")
    assert str(error.value) == f"data file '{path}' is corrupt or not a thing: ValueError: {_int_error('x')}"
    with pytest.raises(UsageError) as error, parsing(path, "a thing"):
        require(False, path, "a thing", "it is empty")
    assert str(error.value) == f"data file '{path}' is not a thing: it is empty"  # not wrapped a second time
    require(True, path, "a thing", "never said")


def _int_error(text: str) -> str:
    try:
        int(text)
    except ValueError as error:
        return str(error)
    raise AssertionError


# ---------------------------------------------------------------------------------------------------------------
# Which files


def test_given_path_resolves_relative_to_the_folder_and_points_at_the_twin(tmp_path):
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "a.txt.gz").write_bytes(b"")
    assert given_path(tmp_path, "set", "test_file", "sub/../a.txt.gz") == tmp_path / "set" / "a.txt.gz"
    assert given_path(tmp_path, "set", "test_file", str(tmp_path / "set" / "a.txt.gz")) == tmp_path / "set/a.txt.gz"
    with pytest.raises(UsageError) as error:
        given_path(tmp_path, "set", "test_file", "a.txt")
    expected = f"data.test_file: '{tmp_path / 'set/a.txt'}' does not exist (a relative path is taken from"
    assert str(error.value).startswith(expected)
    assert str(error.value).endswith(f"; there is '{tmp_path / 'set/a.txt.gz'}'")
    with pytest.raises(UsageError, match=r"^data\.train_file: 'x{300}' is not a usable path \(.*too long"):
        given_path(tmp_path, "set", "train_file", "x" * 300)


def test_first_present_and_present_take_the_first_candidate_found(tmp_path):
    (tmp_path / "b").write_text("")
    (tmp_path / "c").mkdir()
    assert first_present(tmp_path, ["a", "b", "c"]) == tmp_path / "b"
    assert first_present(tmp_path, ["c", "b"]) == tmp_path / "c"  # folders count
    assert first_present(tmp_path, ["a"]) is None
    files = [DataFile(name, "x", "y") for name in ("a", "c", "b")]
    assert present(tmp_path, files) == files[2]  # a folder is not a file


def test_notes_name_the_source_the_file_and_the_remedy(tmp_path):
    path = tmp_path / "t.txt"
    assert unused_note("ptb", path, "--set data.test_file=t.txt uses it") == (
        f"vaezoo: note: data 'ptb': '{path}' is present but not used; --set data.test_file=t.txt uses it"
    )
    assert auto_note("ptb", path, "as the test split", "shipped") == (
        f"vaezoo: note: data 'ptb': data.source=auto uses '{path}', present in the data directory, as the test "
        "split; --set data.source=shipped would not"
    )


# ---------------------------------------------------------------------------------------------------------------
# Splits


def test_split_by_group_keeps_groups_whole_in_the_documented_sizes():
    groups = np.repeat(np.arange(40), 3)
    rows = split_by_group(groups, 0.1, 0.25, seed=5)
    assert [len(set(groups[rows[s]])) for s in ("train", "valid", "test")] == [26, 4, 10]
    assert sorted(np.concatenate(list(rows.values()))) == list(range(120))
    assert not set(groups[rows["valid"]]) & set(groups[rows["train"]])
    assert list(rows["valid"]) == sorted(rows["valid"])  # file order
    again = split_by_group(groups, 0.1, 0.5, seed=5)
    assert list(again["valid"]) == list(rows["valid"])  # valid does not depend on test_fraction
    assert len(split_by_group(groups, 0.1, 0.0, seed=5)["test"]) == 0
    with pytest.raises(UsageError, match=r"valid_fraction=0\.01 and test_fraction=0\.2 of 40 groups leave a split"):
        split_by_group(groups, 0.01, 0.2, seed=5)


def test_hold_out_last_and_random_parts_divide_all_rows():
    rows = hold_out_last(10, 4, 3, seed=1)
    assert sorted([*rows["train"], *rows["valid"]]) == list(range(10)) and len(rows["valid"]) == 3
    assert list(rows["test"]) == [10, 11, 12, 13]
    with pytest.raises(UsageError, match=r"chardata_valid=10 must be between 1 and 9"):
        hold_out_last(10, 4, 10, seed=1)
    rest, held = random_parts(20, [0.25], seed=2)
    assert (len(rest), len(held)) == (15, 5) and sorted([*rest, *held]) == list(range(20))
    with pytest.raises(
        UsageError, match=r"fractions \[0\.01\] of 20 documents leave a split empty \(sizes \[20, 0\]\)"
    ):
        random_parts(20, [0.01], seed=2)


def test_selection_texts():
    assert part_selection(["train"], 5, 5, "divided") == "all its 5 examples"
    assert part_selection(["train", "test"], 4, 5, "divided") == "the train and test parts of its 5 examples, divided"
    assert (
        limited("all its 5 examples", 3) == "all its 5 examples; the first 3 after a shuffle by split_seed (data.limit)"
    )


# ---------------------------------------------------------------------------------------------------------------
# Image formats


def test_idx_pixels_reads_an_idx3_file_gzipped_or_not(tmp_path, mnist_pixels):
    raw = idx_bytes(mnist_pixels)
    assert np.array_equal(idx_pixels(tmp_path / "a-idx3-ubyte", raw), mnist_pixels)
    assert np.array_equal(idx_pixels(tmp_path / "a-idx3-ubyte.gz", gzip.compress(raw)), mnist_pixels)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda raw: raw[:4] + np.array([0], ">i4").tobytes() + raw[8:], "its header counts no images"),
        (lambda raw: raw[:10], "it holds 10 bytes, fewer than the 16 of the header"),
        (
            lambda raw: np.array([2049], ">i4").tobytes() + raw[4:],
            "its magic number is 2049, not 2051 (2049 is an idx1",
        ),
        (lambda raw: raw[:8] + np.array([32, 32], ">i4").tobytes() + raw[16:], "its images are 32x32, not 28x28"),
    ],
)
def test_a_damaged_idx_file_is_refused_naming_it_and_the_problem(tmp_path, mnist_pixels, damage, problem):
    path = tmp_path / "train-images-idx3-ubyte"
    with pytest.raises(UsageError) as error:
        idx_pixels(path, damage(idx_bytes(mnist_pixels)))
    message = str(error.value)
    assert message.startswith(f"data file '{path}' is not an idx3 file of 28x28 MNIST images")
    assert problem in message and "\n" not in message


def test_a_truncated_idx_file_names_both_sizes(tmp_path, mnist_pixels):
    raw = idx_bytes(mnist_pixels)[:-5]
    with pytest.raises(
        UsageError, match=rf"it holds {len(raw)} bytes, but its header's 300 images take {len(raw) + 5}"
    ):
        idx_pixels(tmp_path / "t", raw)


def test_a_csv_of_the_wrong_width_is_refused_naming_its_shape(tmp_path):
    path = tmp_path / "digits.csv"
    with pytest.raises(UsageError) as error:
        csv_pixels(path, b"1,2,3\n4,5,6\n", "an MNIST CSV")
    assert str(error.value) == f"data file '{path}' is not an MNIST CSV: the table is (2, 3)"
    with pytest.raises(UsageError, match=r"is corrupt or not an MNIST CSV: (BadGzipFile|OSError)"):
        csv_pixels(tmp_path / "digits.csv.gz", b"not gzip", "an MNIST CSV")


def test_a_csv_line_read_back_gives_its_grey_levels(tmp_path, mnist_pixels):
    rows = np.concatenate([mnist_pixels[:3].reshape(3, -1), [[7], [0], [9]]], axis=1)
    text = "\n".join(",".join(map(str, row)) for row in rows).encode()
    grey = as_grey(csv_pixels(tmp_path / "d.csv", text, MNIST_CSV.what), 255.0)
    assert grey.shape == (3, 1, SIDE, SIDE) and str(grey.dtype) == "torch.float32"
    assert np.array_equal((grey[:, 0].numpy() * 255).round().astype(np.uint8), mnist_pixels[:3])


def test_a_damaged_omniglot_npz_is_refused_naming_the_missing_arrays(tmp_path):
    path = tmp_path / "omniglot" / "omniglot28_background_small.npz"
    path.parent.mkdir()
    buffer = io.BytesIO()
    np.savez(buffer, images=np.zeros((2, SIDE, SIDE), np.uint8), alphabet=np.array(["a", "b"]))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UsageError) as error:
        read_omniglot_npz(tmp_path, check_sha256=False)
    assert str(error.value).startswith(f"data file '{path}' is not the 28x28 Omniglot npz")
    assert str(error.value).endswith("arrays ['character'] are missing (it has ['alphabet', 'images'])")
    with pytest.raises(UsageError, match="fails its checksum"):
        read_omniglot_npz(tmp_path, check_sha256=True)


# ---------------------------------------------------------------------------------------------------------------
# Text formats


def test_read_documents_refuses_tabs_empty_files_and_bad_utf8_naming_the_file(tmp_path):
    good = tmp_path / "d.txt.gz"
    good.write_bytes(gzip.compress(b"a b\nc\n"))
    assert read_documents(good) == ["a b", "c"]
    for name, content, problem in [
        ("tab.txt", b"pos\ta b\n", "line 1 holds a tab"),
        ("empty.txt", b"", "it holds no lines"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UsageError, match=rf"^data file '.*{name}' is not a UTF-8 text file .*: {problem}"):
            read_documents(tmp_path / name)
    with pytest.raises(UsageError, match=r"^data file '.*' is not a UTF-8 text file .*: it is a folder$"):
        read_documents(tmp_path)
    with pytest.raises(UsageError, match=r"^data file '.*bad\.txt' is corrupt or not lines: UnicodeDecodeError"):
        decode_lines(tmp_path / "bad.txt", b"\xff\xfe", "lines")


def test_user_file_tries_the_gzipped_name_first(tmp_path):
    gz, plain = user_file("ptb/ptb.test", "PTB test", "Mikolov")
    assert (gz.relative, plain.relative) == ("ptb/ptb.test.txt.gz", "ptb/ptb.test.txt")
    assert gz.sha256 is None and plain.what == "PTB test"


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ("<pad>\t0\n<bos>\t1\n<eos>\t2\n<unk>\t3\n", "is not a vocab: it lists no words"),
        ("<pad>\t0\n<bos>\t1\n<eos>\t2\n<unk>\t3\nword\t7\n", "is corrupt or not a vocab: ValueError: the ids are not"),
        ("<pad>\n<bos>\n<eos>\nword\n", "is corrupt or not a vocab: ValueError: the special tokens ['<unk>'] are"),
    ],
)
def test_a_damaged_vocabulary_file_is_refused_naming_it_and_the_problem(tmp_path, lines, problem):
    file = DataFile("v/vocab.txt.gz", "a vocab", "here")
    file.path(tmp_path).parent.mkdir()
    file.path(tmp_path).write_bytes(gzip.compress(lines.encode()))
    with pytest.raises(UsageError) as error:
        read_vocabulary(file, tmp_path, Specials(), check_sha256=False)
    assert str(error.value).startswith(f"data file '{file.path(tmp_path)}' {problem}")


def test_read_vocabulary_reads_ids_in_any_order(tmp_path):
    file = DataFile("vocab.txt", "a vocab", "here")
    file.path(tmp_path).write_text("word\t4\n<unk>\t3\n<eos>\t2\n<bos>\t1\n<pad>\t0\n")
    vocabulary = read_vocabulary(file, tmp_path, Specials(), check_sha256=False)
    assert vocabulary.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "word")
    assert vocabulary.encode([["word", "other"]])[0].tolist() == [4, 3]


# ---------------------------------------------------------------------------------------------------------------
# The modules, and the guide's example


@pytest.mark.slow
def test_reading_modules_load_neither_torch_nor_models_training_or_runs():
    """Importing every reading module loads no torch (a reader of images loads it when it builds its tensor) and
    nothing of vaezoo's models, training or runs."""
    modules = sorted(p.stem for p in (REPO / "vaezoo" / "datafiles").glob("*.py") if p.stem != "__init__")
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module('vaezoo.datafiles.' + name)\n"
        "heavy = ('torch', 'vaezoo.model', 'vaezoo.training', 'vaezoo.runs', 'vaezoo.components')\n"
        "print(sorted({h for h in heavy for name in sys.modules if name == h or name.startswith(h + '.')}))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert len(modules) >= 12
    assert result.stdout.strip() == "[]"


def guide_plugin() -> types.ModuleType:
    """The example plugin of docs/data-plugins.md, its ```python block run as a module."""
    code = re.search(r"^`fashion\.py`\n\n```python\n(.*?)^```$", DOCS.read_text(), re.MULTILINE | re.DOTALL)
    assert code, "docs/data-plugins.md has no `fashion.py` python block"
    module = types.ModuleType("fashion")
    exec(compile(code.group(1), str(DOCS), "exec"), module.__dict__)
    return module


def test_the_guide_example_loads_idx_files_and_refuses_a_damaged_one(tmp_path, mnist_pixels):
    fashion = guide_plugin()
    (tmp_path / "fashion").mkdir()
    fashion.TRAIN.path(tmp_path).write_bytes(gzip.compress(idx_bytes(mnist_pixels[:200])))
    fashion.TEST.path(tmp_path).write_bytes(gzip.compress(idx_bytes(mnist_pixels[200:])))
    data = fashion.Fashion(fashion.FashionParams()).load(tmp_path, seed=0)
    assert [data.size(split) for split in ("train", "valid", "test")] == [180, 20, 100]
    assert set(data.splits["test"].unique().tolist()) <= {0.0, 1.0}
    expected_test = (mnist_pixels[200:] / 255 > 0.5).astype(np.float32)
    assert np.array_equal(data.splits["test"][:, 0].numpy(), expected_test)
    fashion.TEST.path(tmp_path).write_bytes(gzip.compress(idx_bytes(mnist_pixels[200:])[:-1]))
    with pytest.raises(UsageError, match=r"t10k-images-idx3-ubyte\.gz' is not an idx3 file .*: it holds 78415 bytes"):
        fashion.Fashion(fashion.FashionParams()).load(tmp_path, seed=0)
