"""No silent data mix-ups: splits that share a file or examples are refused (or, allowed, noted), text mostly
outside the vocabulary is noted with its rate, and a trained run evaluated on another test file keeps its own train
and valid splits. On the real data sets of the shared data folder."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from vaezoo.api import MNIST_CSV, SPLITS, read_lines
from vaezoo.base.errors import UsageError
from vaezoo.cli.main import main
from vaezoo.components.interfaces import TrainedData
from vaezoo_plugins.data.checks import (
    MAX_SHARED_FRACTION,
    MAX_UNKNOWN_TOKEN_RATE,
    Read,
    check_splits_apart,
)
from vaezoo_plugins.data.images import MNIST, Omniglot
from vaezoo_plugins.data.synthetic import SyntheticData
from vaezoo_plugins.data.text import PTB, PTB_TRAIN, PTB_VALID, YAHOO_VALID, Yahoo

pytestmark = pytest.mark.adversarial

ALLOWED = "(allowed by data.allow_overlap=true)"


def loaded(source_class, data_dir: Path, trained: TrainedData | None = None, **params):
    """The data of ``source_class`` under ``params``, loaded as a trained run's when ``trained`` is given."""
    source = source_class(source_class.Params(**params))
    source.trained = trained
    return source.load(data_dir, seed=0)


@pytest.fixture(scope="module")
def ptb(data_dir):
    """PTB's standard splits as a run without a test file loads them (the notes it printed are in ``notes``)."""
    return loaded(PTB, data_dir)


@pytest.fixture(scope="module")
def ptb_lines(data_dir) -> dict[str, list[str]]:
    """The lines of PTB's standard splits, read without the data's own encoding."""
    return PTB(PTB.Params()).read(data_dir)


def independent_shared(first: list[str], second: list[str]) -> int:
    """How many documents of ``second`` occur in ``first``, compared word by word."""
    seen = {tuple(line.split()) for line in first}
    return sum(tuple(line.split()) in seen for line in second)


# ---------------------------------------------------------------------------------------------------------------
# The rule


def test_one_file_read_for_two_splits_is_refused_even_without_a_shared_example(tmp_path):
    reads = [Read(tmp_path / "a.txt", ("train", "valid")), Read(tmp_path / "a.txt", ("test",))]
    keys = {"train": ["x", "y"], "valid": ["z"], "test": ["w"]}
    with pytest.raises(UsageError) as error:
        check_splits_apart(reads, keys, allow=False)
    message = str(error.value)
    assert f"the test split reads '{tmp_path / 'a.txt'}', the file of the train and valid splits" in message
    assert "data.allow_overlap=true" in message and "\n" not in message
    notes, counts = check_splits_apart(reads, keys, allow=True)
    assert len(notes) == 1 and notes[0].endswith(ALLOWED) and counts == {s: {} for s in SPLITS}


def test_shared_examples_above_the_fraction_are_refused_and_up_to_it_noted(tmp_path):
    reads = [Read(tmp_path / split, (split,)) for split in SPLITS]
    train = [f"t{i}" for i in range(1000)]
    at_limit = round(MAX_SHARED_FRACTION * 100)

    def keys(shared: int) -> dict[str, list[str]]:
        """100 test examples, ``shared`` of them also in train."""
        return {"train": train, "valid": ["v"], "test": train[:shared] + [f"new{i}" for i in range(100 - shared)]}

    notes, counts = check_splits_apart(reads, keys(at_limit), allow=False)
    assert notes == [
        f"{at_limit} of the 100 examples of the test split (5.0 %) also occur in the train split (up to 5 % is "
        "accepted)"
    ]
    assert counts["test"] == {"train": at_limit} and counts["train"] == {"test": at_limit}
    above = rf"{at_limit + 1} of the 100 examples of the test split \(6\.0 %\) also occur in the train split"
    with pytest.raises(UsageError, match=above):
        check_splits_apart(reads, keys(at_limit + 1), allow=False)


def test_a_small_training_file_inside_the_test_split_is_measured_by_its_own_fraction(tmp_path):
    """A split held wholly in a larger one is refused, though it is a small part of the larger."""
    reads = [Read(tmp_path / split, (split,)) for split in SPLITS]
    test = [f"d{i}" for i in range(1000)]
    with pytest.raises(
        UsageError, match=r"10 of the 10 examples of the train split \(100\.0 %\) also occur in the test"
    ):
        check_splits_apart(reads, {"train": test[:10], "valid": ["v"], "test": test}, allow=False)


# ---------------------------------------------------------------------------------------------------------------
# The shipped data sets' standard splits


@pytest.mark.parametrize("source_class", [MNIST, Omniglot, Yahoo])
def test_shipped_splits_that_share_no_example_load_without_a_note(source_class, data_dir, capsys):
    data = loaded(source_class, data_dir)
    assert all("shared_with" not in record for record in data.sources.values())
    assert "also occur" not in capsys.readouterr().err


def test_ptb_standard_splits_load_and_their_few_repeated_sentences_are_noted_and_recorded(ptb, ptb_lines):
    data, lines = ptb, ptb_lines
    for split, other in [("valid", "train"), ("test", "train"), ("test", "valid")]:
        count = independent_shared(lines[other], lines[split])
        assert 0 < count <= MAX_SHARED_FRACTION * len(lines[split]), (split, other)
        assert data.sources[split]["shared_with"][other] == count
    note = next(line for line in data.notes if "also occur" in line)
    assert note.startswith("vaezoo: note: data 'ptb': ") and note.endswith("(up to 5 % is accepted)")
    valid_in_train = data.sources["valid"]["shared_with"]["train"]
    assert f"{valid_in_train} of the 1685 examples of the valid split" in note


def test_synthetic_splits_are_independent_draws_that_share_no_example():
    """The synthetic task draws its splits one after the other from one seeded stream: no example is read twice,
    and equal draws of 100 real coordinates do not happen."""
    data = SyntheticData(SyntheticData.Params()).load(None, seed=0)
    rows = {split: {tuple(x.tolist()) for x in data.splits[split]} for split in SPLITS}
    assert len(rows["train"]) == data.size("train")
    assert not (rows["train"] & rows["valid"] or rows["train"] & rows["test"] or rows["valid"] & rows["test"])


# ---------------------------------------------------------------------------------------------------------------
# Files and examples shared


def test_the_same_image_file_for_train_and_test_is_refused_naming_splits_file_and_counts(data_dir):
    with pytest.raises(UsageError) as error:
        loaded(MNIST, data_dir, train_file="mnist_5k.csv.gz", test_file="mnist_5k.csv.gz")
    message = str(error.value)
    csv = MNIST_CSV.path(data_dir)
    assert message.startswith(f"data 'mnist': the test split reads '{csv}', the file of the train and valid splits")
    assert "4500 of the 4500 examples of the train split (100.0 %) also occur in the test split" in message
    assert "500 of the 500 examples of the valid split (100.0 %)" in message and "data.allow_overlap=true" in message


def test_allowed_overlap_loads_and_is_noted_and_recorded(data_dir, capsys):
    data = loaded(MNIST, data_dir, test_file="mnist_5k.csv.gz", allow_overlap=True)
    note = capsys.readouterr().err.strip().splitlines()[-1]
    assert note.startswith("vaezoo: note: data 'mnist': the test split reads") and note.endswith(ALLOWED)
    assert data.sources["test"]["shared_with"] == {"train": data.size("train"), "valid": data.size("valid")}


def test_a_copy_of_the_training_file_under_another_name_is_refused_by_its_examples(data_dir, tmp_path):
    copy = tmp_path / "renamed.txt"
    copy.write_text("\n".join(read_lines(PTB_TRAIN, data_dir, check_sha256=False)) + "\n")
    with pytest.raises(UsageError) as error:
        loaded(PTB, data_dir, test_file=str(copy))
    message = str(error.value)
    assert "the test split (100.0 %) also occur in the train split" in message
    assert f"('{copy}' and '{PTB_TRAIN.path(data_dir)}')" in message


def test_a_validation_file_that_is_the_shipped_validation_file_is_refused(data_dir):
    with pytest.raises(UsageError, match=r"the test split reads '.*ptb\.valid\.txt\.gz', the file of the valid split"):
        loaded(PTB, data_dir, valid_file="ptb.valid.txt.gz")


def test_list_data_shows_the_setting_that_allows_overlap(capsys):
    assert main(["list", "data"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if "allow_overlap (bool, default False)" in line]
    assert len(listed) == 4, "mnist, omniglot, ptb and yahoo"
    assert all("5 %" in line and "noted either way" in line for line in listed)


# ---------------------------------------------------------------------------------------------------------------
# Tokens outside the vocabulary


def unknown_rate(data, lines: list[str]) -> float:
    """The fraction of the words the sequences keep (the first max_len - 2 of each line) that the vocabulary does
    not hold, or that the corpus spells as its unknown token, counted without the data's own encoding."""
    known = set(data.vocabulary.tokens) - {data.vocabulary.specials.unk}
    kept = [word for line in lines for word in line.split()[: data.spec.shape[0] - 2]]
    return sum(word not in known for word in kept) / len(kept)


def test_a_test_file_of_another_corpus_is_noted_with_its_rate_and_recorded(data_dir, capsys):
    data = loaded(PTB, data_dir, test_file=str(YAHOO_VALID.path(data_dir)))
    rate = unknown_rate(data, read_lines(YAHOO_VALID, data_dir, check_sha256=False))
    assert rate > MAX_UNKNOWN_TOKEN_RATE
    assert data.sources["test"]["unknown_token_rate"] == pytest.approx(rate, abs=1e-4)
    notes = [line for line in capsys.readouterr().err.splitlines() if "outside the vocabulary" in line]
    assert notes == [
        f"vaezoo: note: data 'ptb': {100 * rate:.1f} % of the test split's tokens are outside the vocabulary and read "
        "as '<unk>' (more than 10.0 %; the shipped corpora's own splits have 4 to 5 %): is it text of this corpus, "
        "tokenised as it is?"
    ]


def test_the_corpus_own_splits_are_below_the_threshold_and_get_no_note(ptb, ptb_lines):
    for split in ("valid", "test"):
        rate = unknown_rate(ptb, ptb_lines[split])
        assert 0 < rate <= MAX_UNKNOWN_TOKEN_RATE
        assert ptb.sources[split]["unknown_token_rate"] == pytest.approx(rate, abs=1e-4)
    assert not any("outside the vocabulary" in note for note in ptb.notes)


# ---------------------------------------------------------------------------------------------------------------
# A trained run's own splits


def test_a_new_test_file_keeps_the_runs_ptb_validation_split(ptb, ptb_lines, data_dir, tmp_path):
    run = ptb
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(ptb_lines["test"]) + "\n")
    trained = TrainedData(PTB.Params(), run.sources)
    evaluated = loaded(PTB, data_dir, trained, test_file=str(held_out), allow_overlap=True)
    for split in ("train", "valid"):
        assert torch.equal(evaluated.splits[split], run.splits[split]), split
        assert evaluated.sources[split] == run.sources[split], split
    assert evaluated.size("test") == run.size("test")


def test_a_test_file_added_to_the_data_directory_keeps_the_runs_splits(data_dir, tmp_path):
    folder = tmp_path / "data"
    for file in (PTB_TRAIN, PTB_VALID):
        file.path(folder).parent.mkdir(parents=True, exist_ok=True)
        file.path(folder).symlink_to(file.path(data_dir))
    run = loaded(PTB, folder)
    (folder / "ptb" / "ptb.test.txt").write_text("\n".join(PTB(PTB.Params()).read(folder)["test"][:40]) + "\n")
    evaluated = loaded(PTB, folder, TrainedData(PTB.Params(), run.sources))
    assert torch.equal(evaluated.splits["valid"], run.splits["valid"])
    assert evaluated.size("test") == 40 and evaluated.sources["test"]["file"] == str(folder / "ptb" / "ptb.test.txt")


def test_an_image_run_evaluated_on_a_test_file_keeps_its_training_split(data_dir, tmp_path):
    run = loaded(MNIST, data_dir)
    other = tmp_path / "other.csv"
    with gzip.open(MNIST_CSV.path(data_dir), "rt") as handle:
        rows = handle.read().splitlines()
    other.write_text("\n".join(rows[:10]) + "\n")
    evaluated = loaded(
        MNIST, data_dir, TrainedData(MNIST.Params(), run.sources), test_file=str(other), allow_overlap=True
    )
    for split in ("train", "valid"):
        assert torch.equal(evaluated.splits[split], run.splits[split]), split
    assert evaluated.size("test") == 10


def test_a_run_whose_test_split_came_from_a_file_needs_one_at_evaluation(data_dir, tmp_path):
    trained = TrainedData(PTB.Params(test_file=str(tmp_path / "held_out.txt")))
    with pytest.raises(UsageError, match=r"took its test split from a file.*name a test file \(data\.test_file\)"):
        loaded(PTB, data_dir, trained)


def test_a_test_file_at_evaluation_keeps_a_trained_vocabulary(data_dir, tmp_path):
    """With a vocabulary trained on the training split, a test file that moved the shipped test part into
    training would change the model's vocabulary; the run's training split stays, so its vocabulary does."""
    run = loaded(Yahoo, data_dir, vocab="train", source="shipped")
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(Yahoo(Yahoo.Params(source="shipped")).read(data_dir)["test"][:50]) + "\n")
    trained = TrainedData(Yahoo.Params(vocab="train", source="shipped"), run.sources)
    evaluated = loaded(Yahoo, data_dir, trained, vocab="train", source="shipped", test_file=str(held_out))
    assert evaluated.vocabulary.tokens == run.vocabulary.tokens
    assert "shared_with" not in evaluated.sources["test"], "the run's held-out documents are in no other split"


# ---------------------------------------------------------------------------------------------------------------
# The command line


def assert_one_line_usage_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vaezoo: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_run_refuses_one_file_for_train_and_test_before_making_its_directory(data_dir, tmp_path):
    out = tmp_path / "run"
    same = ["--set", "data.train_file=mnist_5k.csv.gz", "--set", "data.test_file=mnist_5k.csv.gz"]
    result = run_cli("run", "--data", "mnist", "--steps", "1", *same, "--out", str(out), "--no-progress")
    assert_one_line_usage_error(
        result,
        f"the test split reads '{MNIST_CSV.path(data_dir)}', the file of the train and valid splits",
        "4500 of the 4500 examples of the train split (100.0 %)",
        "data.allow_overlap=true",
    )
    assert not out.exists()


TINY_PTB = [
    "--data", "ptb", "--encoder", "lstm", "--decoder", "lstm", "--latent-dim", "4",
    "--set", "encoder.embed_dim=16", "--set", "encoder.hidden=16", "--set", "decoder.embed_dim=16",
    "--set", "decoder.hidden=16", "--set", "data.limit=48", "--set", "data.max_len=20",
    "--steps", "2", "--batch-size", "16", "--set", "train.eval_every=2", "--set", "eval.iw_samples=0",
    "--set", "eval.limit=64", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def ptb_run(tmp_path_factory) -> Path:
    """A tiny PTB run trained without a test file (its test split is half of ptb.valid)."""
    out = tmp_path_factory.mktemp("ptb") / "run"
    trained = run_cli("run", *TINY_PTB, "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert trained.returncode == 0, trained.stderr
    return out


def evaluate(run: Path, *args: str):
    return run_cli(
        "eval", str(run), "--iw-samples", "0", "--no-progress", "--json", *args, env={"OMP_NUM_THREADS": "1"}
    )


@pytest.mark.slow
def test_eval_refuses_the_runs_training_file_as_test_file(ptb_run, data_dir):
    result = evaluate(ptb_run, "--set", "data.test_file=ptb.train.txt.gz")
    assert_one_line_usage_error(
        result,
        f"the test split reads '{PTB_TRAIN.path(data_dir)}', the file of the train split",
        "42068 of the 42068 examples of the test split (100.0 %) also occur in the train split",
    )


@pytest.mark.slow
def test_eval_on_a_new_test_file_validates_on_exactly_the_runs_validation_split(ptb_run, data_dir, tmp_path):
    run_valid = evaluate(ptb_run, "--split", "valid")
    assert run_valid.returncode == 0, run_valid.stderr
    held_out = tmp_path / "held_out.txt"
    held_out.write_text("\n".join(PTB(PTB.Params()).read(data_dir)["test"]) + "\n")
    with_file = evaluate(ptb_run, "--set", f"data.test_file={held_out}", "--split", "valid")
    assert with_file.returncode == 0, with_file.stderr
    recorded = json.loads((ptb_run / "results.json").read_text())["data_sources"]["valid"]
    line = f"data valid: {recorded['examples']} examples from '{recorded['file']}' ({recorded['selection']})"
    assert line in run_valid.stderr and line in with_file.stderr
    assert json.loads(with_file.stdout) == json.loads(run_valid.stdout), "the same validation examples"


@pytest.mark.slow
def test_eval_notes_a_test_file_mostly_outside_the_runs_vocabulary(ptb_run, data_dir):
    yahoo = YAHOO_VALID.path(data_dir)
    result = evaluate(ptb_run, "--set", f"data.test_file={yahoo}")
    assert result.returncode == 0, result.stderr
    data = loaded(PTB, data_dir, test_file=str(yahoo), max_len=20, limit=48)  # the run's vocabulary
    rate = unknown_rate(data, read_lines(YAHOO_VALID, data_dir, check_sha256=False))
    assert f"vaezoo: note: data 'ptb': {100 * rate:.1f} % of the test split's tokens are outside" in result.stderr
