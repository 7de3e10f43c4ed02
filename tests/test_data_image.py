"""The image data sources `omniglot` and `mnist`: binarisation, splits, Burda's chardata.mat, clear file errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vaezoo.api import CHARDATA, MNIST_CSV, OMNIGLOT_NPZ
from vaezoo.base.errors import UsageError
from vaezoo.base.params import build_params
from vaezoo.components.interfaces import evaluation_rows
from vaezoo_plugins.data.file_sources import FIXED_BITS, TRAINING_BITS, derived_seed
from vaezoo_plugins.data.images import MNIST, BinarisedImages, Omniglot, OmniglotParams

SIDE = 28


def load(cls, data_dir: Path, seed: int = 0, **params):
    return cls(cls.Params(**params)).load(data_dir, seed)


@pytest.fixture(scope="module")
def omniglot(data_dir):
    return load(Omniglot, data_dir)


@pytest.fixture(scope="module")
def mnist(data_dir):
    return load(MNIST, data_dir)


def copy_into(tmp_path: Path, data_dir: Path, *files) -> Path:
    """A fresh data directory under tmp_path holding copies of ``files`` (DataFile objects) from the real one."""
    for file in files:
        target = file.path(tmp_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file.path(data_dir), target)
    return tmp_path


def whole_epoch(data, epoch: int, seed: int, batch_size: int = 500) -> torch.Tensor:
    steps = data.steps_per_epoch(batch_size)
    return torch.cat([data.train_batch(epoch, i, batch_size, seed) for i in range(steps)])


# ---------------------------------------------------------------------------------------------------------------
# Binarisation


@pytest.mark.parametrize("name", ["omniglot", "mnist"])
def test_training_bits_have_the_mean_grey_level_and_are_binary(name, request):
    data = request.getfixturevalue(name)
    grey = data.splits["train"]
    assert grey.dtype == torch.float32 and grey.min() >= 0 and grey.max() <= 1
    assert len(grey.unique()) > 2, "the train split keeps grey levels"
    bits = whole_epoch(data, epoch=0, seed=3)
    assert bits.shape == grey.shape and set(bits.unique().tolist()) == {0.0, 1.0}
    # about 2.7M bits: the standard error of their mean is below 2e-4
    assert bits.mean().item() == pytest.approx(grey.mean().item(), abs=2e-3)
    fixed = torch.cat(list(data.batches("train", 1000)))
    assert set(fixed.unique().tolist()) == {0.0, 1.0}
    assert fixed.mean().item() == pytest.approx(grey.mean().item(), abs=2e-3)


def test_each_pixel_is_bernoulli_of_its_grey_level(omniglot):
    grey = omniglot.splits["train"][:8]
    draws = 2000
    bits = omniglot.prepare_train_batch(grey.repeat(draws, 1, 1, 1), epoch=0, index=0, seed=0)
    frequency = bits.view(draws, *grey.shape).mean(0)
    # per-pixel standard error <= 0.5 / sqrt(2000) = 0.011
    assert (frequency - grey).abs().max().item() < 0.06
    assert torch.all(frequency[grey == 0] == 0) and torch.all(frequency[grey == 1] == 1)


def test_training_bits_are_fresh_per_epoch_and_batch_but_reproducible(omniglot, data_dir):
    grey = omniglot.splits["train"][:64]
    draw = omniglot.prepare_train_batch
    assert torch.equal(draw(grey, 2, 5, 7), draw(grey, 2, 5, 7))
    for other in [(3, 5, 7), (2, 6, 7), (2, 5, 8)]:
        assert not torch.equal(draw(grey, 2, 5, 7), draw(grey, *other)), other
    # a freshly loaded copy (a resumed run) sees the very same batches
    again = load(Omniglot, data_dir, seed=0)
    assert torch.equal(omniglot.train_batch(4, 3, 32, seed=11), again.train_batch(4, 3, 32, seed=11))
    # fixed and training bits never share a random stream (SeedSequence pads with zeros: (0,) == (0, 0, 0))
    assert derived_seed(FIXED_BITS, 0) != derived_seed(TRAINING_BITS, 0, 0, 0)
    # the same images in two epochs get different bits
    epoch0, epoch1 = (whole_epoch(omniglot, e, seed=1) for e in (0, 1))
    assert not torch.equal(epoch0.sort(0).values, epoch1.sort(0).values)


@pytest.mark.parametrize("cls", [Omniglot, MNIST])
def test_valid_and_test_bits_are_fixed_across_loads_and_run_seeds(cls, data_dir, request):
    first = request.getfixturevalue(cls.name)
    other_seed = load(cls, data_dir, seed=12345)
    for split in ("valid", "test"):
        bits = first.splits[split]
        assert bits.dtype == torch.float32 and set(bits.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(bits, other_seed.splits[split]), split
    assert torch.equal(first.splits["train"], other_seed.splits["train"]), "the split must not follow the run seed"
    reseeded = load(cls, data_dir, eval_binarisation_seed=1)
    assert not torch.equal(first.splits["valid"], reseeded.splits["valid"])
    assert torch.equal(first.splits["train"], reseeded.splits["train"])


def test_an_images_fixed_bits_do_not_depend_on_its_split():
    images = torch.rand(10, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    a = BinarisedImages(images, {"train": np.arange(6), "valid": np.array([6, 7]), "test": np.array([8, 9])}, 4)
    b = BinarisedImages(images, {"train": np.arange(2, 8), "valid": np.array([0, 1]), "test": np.array([8, 9])}, 4)
    assert torch.equal(a.splits["test"], b.splits["test"])
    assert torch.equal(a.splits["valid"], next(b.batches("train", 10))[4:6])
    assert torch.equal(b.splits["valid"], next(a.batches("train", 10))[:2])


# ---------------------------------------------------------------------------------------------------------------
# Splits


def test_omniglot_splits_share_no_character(data_dir, omniglot):
    with np.load(OMNIGLOT_NPZ.path(data_dir)) as archive:
        characters = [f"{a}/{c}" for a, c in zip(archive["alphabet"], archive["character"], strict=True)]
        images = archive["images"]
    source = Omniglot(Omniglot.Params())
    _, rows = source.read(data_dir)
    owners = {split: {characters[r] for r in rows[split]} for split in rows}
    assert not owners["train"] & owners["valid"]
    assert not owners["train"] & owners["test"]
    assert not owners["valid"] & owners["test"]
    assert sorted(np.concatenate(list(rows.values()))) == list(range(len(characters)))
    # 242 characters of 20 drawers: round(24.2) valid and round(48.4) test characters
    assert [len(owners[s]) for s in ("train", "valid", "test")] == [170, 24, 48]
    assert [omniglot.size(s) for s in ("train", "valid", "test")] == [3400, 480, 960]
    # the loaded train split is exactly those images, in file orientation
    expected = torch.from_numpy(images[rows["train"]].astype(np.float32) / 255).unsqueeze(1)
    assert torch.equal(omniglot.splits["train"], expected)
    # another split_seed draws other characters
    _, other = Omniglot(Omniglot.Params(split_seed=1)).read(data_dir)
    assert {characters[r] for r in other["valid"]} != owners["valid"]


def test_mnist_splits_are_disjoint_and_sized(data_dir, mnist):
    _, rows = MNIST(MNIST.Params()).read(data_dir)
    seen = np.concatenate([rows["train"], rows["valid"], rows["test"]])
    assert len(seen) == len(set(seen.tolist())) == 5000, "no image index in two splits"
    assert [mnist.size(s) for s in ("train", "valid", "test")] == [3500, 500, 1000]
    smaller = load(MNIST, data_dir, valid_fraction=0.2, test_fraction=0.3)
    assert [smaller.size(s) for s in ("train", "valid", "test")] == [2500, 1000, 1500]


def test_limit_keeps_a_random_subset_of_training_images_only(data_dir, omniglot):
    limited = load(Omniglot, data_dir, limit=100)
    assert limited.size("train") == 100
    assert torch.equal(limited.splits["valid"], omniglot.splits["valid"])
    assert torch.equal(limited.splits["train"], omniglot.splits["train"][:100])


def test_a_limited_evaluation_spans_every_test_character(data_dir, omniglot):
    """Test rows come grouped by character: a prefix of 96 would hold 5 of the 48 test characters."""
    with np.load(OMNIGLOT_NPZ.path(data_dir)) as archive:
        characters = [f"{a}/{c}" for a, c in zip(archive["alphabet"], archive["character"], strict=True)]
    _, rows = Omniglot(Omniglot.Params()).read(data_dir)
    test_characters = [characters[r] for r in rows["test"]]
    chosen = evaluation_rows(len(test_characters), 96)
    assert len(set(chosen.tolist())) == 96 and bool((chosen.diff() > 0).all())
    assert {test_characters[i] for i in chosen.tolist()} == set(test_characters)
    evaluated = torch.cat(list(omniglot.batches("test", 40, limit=96)))
    assert torch.equal(evaluated, omniglot.splits["test"][chosen])
    assert torch.equal(torch.cat(list(omniglot.batches("test", 500))), omniglot.splits["test"])


def test_fractions_that_leave_no_training_data_are_refused(data_dir):
    with pytest.raises(UsageError, match="valid_fraction"):
        build_params(OmniglotParams, {"valid_fraction": 0.5, "test_fraction": 0.5}, "data")
    with pytest.raises(UsageError, match="leave a split empty"):
        load(Omniglot, data_dir, valid_fraction=0.001)


def test_each_split_records_the_file_it_comes_from(data_dir, omniglot, mnist, capsys):
    division = "divided at random by {}: valid_fraction 0.1, test_fraction 0.2, split_seed 123; shipped"
    for data, file, group in ((omniglot, OMNIGLOT_NPZ, "character"), (mnist, MNIST_CSV, "image")):
        assert list(data.sources) == ["train", "valid", "test"] and data.notes == []
        for split, record in data.sources.items():
            assert record["file"] == str(file.path(data_dir)) and record["examples"] == data.size(split)
            total = 4840 if file is OMNIGLOT_NPZ else 5000
            assert record["selection"] == f"the {split} part of its {total} examples, {division.format(group)}"
    assert mnist.source_lines()[0] == (
        f"data train: 3500 examples from '{MNIST_CSV.path(data_dir)}' ({mnist.sources['train']['selection']})"
    )
    assert capsys.readouterr().err == "", "the shipped files alone: nothing to note"


# ---------------------------------------------------------------------------------------------------------------
# Errors for missing and broken files


@pytest.mark.parametrize(("cls", "file"), [(Omniglot, OMNIGLOT_NPZ), (MNIST, MNIST_CSV)])
def test_a_missing_file_is_named_with_what_it_should_be(cls, file, tmp_path):
    with pytest.raises(UsageError) as error:
        load(cls, tmp_path)
    message = str(error.value)
    assert f"'{file.path(tmp_path)}' is missing" in message
    assert "expected" in message and "PROVENANCE.md" in message


def test_chardata_asked_for_but_missing_says_where_it_comes_from(tmp_path):
    with pytest.raises(UsageError) as error:
        load(Omniglot, tmp_path, source="chardata")
    assert str(CHARDATA.path(tmp_path)) in str(error.value) and "yburda/iwae" in str(error.value)


@pytest.mark.parametrize(("cls", "file"), [(Omniglot, OMNIGLOT_NPZ), (MNIST, MNIST_CSV)])
def test_a_checksum_mismatch_names_the_file_and_both_hashes(cls, file, data_dir, tmp_path):
    copy_into(tmp_path, data_dir, file)
    path = file.path(tmp_path)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(UsageError) as error:
        load(cls, tmp_path)
    message = str(error.value)
    assert str(path) in message and file.sha256 in message
    assert hashlib.sha256(path.read_bytes()).hexdigest() in message


@pytest.mark.parametrize(("cls", "file"), [(Omniglot, OMNIGLOT_NPZ), (MNIST, MNIST_CSV)])
def test_a_truncated_file_is_a_clear_error_even_without_the_checksum(cls, file, data_dir, tmp_path):
    copy_into(tmp_path, data_dir, file)
    path = file.path(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UsageError, match="fails its checksum"):
        load(cls, tmp_path)
    with pytest.raises(UsageError) as error:
        load(cls, tmp_path, check_sha256=False)
    assert f"'{path}' is corrupt or not" in str(error.value)


def test_an_npz_with_wrong_arrays_is_refused(tmp_path):
    path = OMNIGLOT_NPZ.path(tmp_path)
    path.parent.mkdir(parents=True)
    np.savez(path, images=np.zeros((4, 27, 27), np.uint8), alphabet=np.array(["a"] * 4), character=np.arange(4))
    with pytest.raises(UsageError, match=r"is not the 28x28 Omniglot npz.*images is uint8 \(4, 27, 27\)"):
        load(Omniglot, tmp_path, check_sha256=False)
    np.savez(path, images=np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(UsageError, match=r"arrays \['alphabet', 'character'\] are missing"):
        load(Omniglot, tmp_path, check_sha256=False)


# ---------------------------------------------------------------------------------------------------------------
# Burda's chardata.mat


def synthetic_chardata(n_data: int = 30, n_test: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Binary upright images: training ones with an inked top row, test ones with an inked left column."""
    rng = np.random.default_rng(0)
    data = (rng.random((n_data, SIDE, SIDE)) < 0.3).astype(np.float64)
    data[:, 0, :], data[:, -1, :] = 1, 0
    test = (rng.random((n_test, SIDE, SIDE)) < 0.3).astype(np.float64)
    test[:, :, 0], test[:, :, -1] = 1, 0
    return data, test


def write_chardata(data_dir: Path, data: np.ndarray, test: np.ndarray) -> Path:
    """Store images as Burda's file does: one column per image, each image flattened column-major."""
    scipy_io = pytest.importorskip("scipy.io")
    path = CHARDATA.path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        key: images.reshape(len(images), -1, order="F").T for key, images in (("data", data), ("testdata", test))
    }
    scipy_io.savemat(path, columns)
    return path


def test_chardata_is_read_upright_with_the_papers_split(tmp_path, data_dir):
    data, test = synthetic_chardata()
    write_chardata(tmp_path, data, test)
    copy_into(tmp_path, data_dir, OMNIGLOT_NPZ)  # auto prefers chardata.mat over the npz
    loaded = load(Omniglot, tmp_path, chardata_valid=5, split_seed=123)
    assert [loaded.size(s) for s in ("train", "valid", "test")] == [25, 5, 7]
    assert {record["file"] for record in loaded.sources.values()} == {str(CHARDATA.path(tmp_path))}
    assert loaded.sources["test"]["selection"].startswith("the test part of its 37 examples, Burda's: 'data' (30)")
    assert loaded.sources["test"]["selection"].endswith("data.source=auto, as it is present")
    order = np.random.RandomState(123).permutation(30)
    as_tensor = lambda images: torch.from_numpy(images.astype(np.float32)).unsqueeze(1)  # noqa: E731
    assert torch.equal(loaded.splits["train"], as_tensor(data[order[:-5]]))
    assert torch.equal(loaded.splits["valid"], as_tensor(data[order[-5:]]))  # binary grey levels: bits = grey
    assert torch.equal(loaded.splits["test"], as_tensor(test))
    assert torch.all(loaded.splits["train"][:, 0, 0, :] == 1), "the inked row must be the top row, not a column"
    # the public loaders' convention: data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='F')
    raw = data.reshape(30, -1, order="F").T
    public = raw.T.reshape((-1, SIDE, SIDE)).reshape((-1, SIDE * SIDE), order="F").reshape(-1, SIDE, SIDE)
    assert np.array_equal(public, data)
    assert load(Omniglot, tmp_path, source="npz").size("train") == 3400


def test_chardata_with_wrong_contents_or_split_is_refused(tmp_path):
    data, test = synthetic_chardata()
    path = write_chardata(tmp_path, data[:, :, :27], test)
    with pytest.raises(UsageError, match=rf"'{path}' is not Burda.*'data' is float64 \(756, 30\)"):
        load(Omniglot, tmp_path)
    write_chardata(tmp_path, data * 2, test)
    with pytest.raises(UsageError, match=r"'data' has values outside \[0, 1\]"):
        load(Omniglot, tmp_path)
    write_chardata(tmp_path, data, test)
    with pytest.raises(UsageError, match="chardata_valid=30 must be between 1 and 29"):
        load(Omniglot, tmp_path, chardata_valid=30)
    path.write_bytes(b"not a MATLAB file at all")
    with pytest.raises(UsageError, match=f"'{path}' is corrupt or not Burda"):
        load(Omniglot, tmp_path)


def test_chardata_without_scipy_says_which_extra_to_install(tmp_path, monkeypatch):
    write_chardata(tmp_path, *synthetic_chardata())
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(UsageError, match=r"needs scipy: pip install 'vaezoo\[mat\]'"):
        load(Omniglot, tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Command line, in a real process


def vaezoo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "VAEZOO_DATA"}
    command = [sys.executable, "-m", "vaezoo", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_cli_trains_on_omniglot(data_dir, tmp_path):
    result = vaezoo(
        "run", "--data", "omniglot", "--data-dir", str(data_dir), "--encoder", "mlp", "--decoder", "mlp",
        "--steps", "6", "--batch-size", "32", "--set", "train.eval_every=6", "--set", "eval.iw_samples=0",
        "--set", "eval.limit=200", "--no-progress", "--out", str(tmp_path / "run"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "neg_elbo" in result.stdout


@pytest.mark.slow
def test_cli_without_a_data_directory_or_file_exits_2_with_a_message(tmp_path):
    result = vaezoo("run", "--data", "omniglot", "--steps", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "--data-dir" in result.stderr and "VAEZOO_DATA" in result.stderr and "Traceback" not in result.stderr
    result = vaezoo("run", "--data", "mnist", "--data-dir", str(tmp_path), "--steps", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert f"'{MNIST_CSV.path(tmp_path)}' is missing" in result.stderr and "Traceback" not in result.stderr
