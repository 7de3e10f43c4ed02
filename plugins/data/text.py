"""Corpora of one document per line read from the data directory: ``yahoo`` and ``ptb``.

Axis legend: ``b`` batch, ``n`` documents of a split, ``t`` tokens.

Files, relative to the data directory (``--data-dir`` or ``$VAEZOO_DATA``):

- ``yahoo/yahoo.valid.txt.gz`` and ``yahoo/vocab.txt.gz`` (shipped, sha256 checked): the 10,000-document
  validation split of Yang et al.'s (2017) Yahoo Answers corpus and a 20,000-entry vocabulary built from its
  training split (``token<TAB>index`` lines; see ``yahoo/PROVENANCE.md``). ``yahoo/yahoo.train.txt`` and
  ``yahoo/yahoo.test.txt`` (optionally gzip'd, ``.txt.gz``; the user's own copies, e.g. He et al.'s, not checked)
  are the corpus's other splits, 100k and 10k documents.
- ``ptb/ptb.train.txt.gz`` and ``ptb/ptb.valid.txt.gz`` (shipped, sha256 checked): Mikolov's Penn Treebank, one
  sentence per line (see ``ptb/PROVENANCE.md``). ``ptb/ptb.test.txt`` (optionally ``.txt.gz``) is the user's copy
  of its test split.

A document is a line; its words are its whitespace-separated tokens (the corpora are already tokenised and
lower-cased). Which file makes each split (:class:`TextSource`): the file named by ``data.train_file``,
``data.valid_file`` or ``data.test_file`` (absolute, or relative to the data set's folder, gzip'd if named ``.gz``);
else the corpus's own split file in that folder, which ``data.source=full`` requires and ``auto`` (the default)
uses when present (the training file only together with the test file: the full corpus); else the shipped files.
The shipped Yahoo file is divided at random into train, valid and test (``valid_fraction``, ``test_fraction``); PTB
keeps its training file and divides its validation file into valid and test (``test_fraction``). A part whose split
comes from a file goes to the first of train, valid, test that does not: with a Yahoo test file, the shipped
documents make train and valid only (valid keeps its part, so the same documents), and with a PTB test file,
``ptb.valid`` is all valid. When the data is loaded, a note on stderr names each split file present that ``auto``
uses (adding one changes the data of later runs) or that is not used (``data.source=shipped``, another file named,
or a training file without its test file), with the setting that would use it. The loaded
:class:`TextData` records which file made each split and how (``sources``), and the fraction of each split's words
read as the unknown token (``unknown_token_rate``; a note on stderr above 10 %, see
:mod:`vaezoo_plugins.data.checks`). Splits are kept apart: two splits read from one file, or sharing more than 5 % of
their documents (the same words), are refused unless ``data.allow_overlap`` is set; fewer shared documents (PTB's
splits repeat a few short sentences) are noted and counted (``shared_with``). A trained run evaluated on a test file
keeps its own train and valid splits, hence its vocabulary: the shipped files are divided as the run divided them.
Divisions depend on ``split_seed``, not on the run seed, so runs that differ only in their seed share one split; valid
and test keep file order, the training documents come in an order shuffled by ``split_seed`` (so ``limit`` keeps a
random subset).

The vocabulary is the corpus's vocabulary file (Yahoo ships one) or is trained on the training documents with
``tokenizers`` (a WordLevel model: words seen at least ``min_freq`` times, the most frequent first, ties broken by
the word, at most ``max_vocab`` entries in all). Either way ids 0..3 are padding, start, end and unknown for a
trained vocabulary, and whatever the file says for a vocabulary file (``<pad>``, ``<bos>``, ``<eos>``, ``_UNK``
for Yahoo). A word outside the vocabulary, or spelled like the padding, start or end token, becomes the unknown
token.

Sequences: the data ``x`` of a document of n words is ``BOS w1 .. wn EOS``, so ``x`` includes the start token;
a decoder predicts ``w1 .. wn EOS`` from ``BOS w1 .. wn`` (the positions a perplexity counts). A document longer
than ``max_len - 2`` words keeps its first ``max_len - 2`` words, then EOS. Every batch is a LongTensor ``'b t'``
padded with ``pad_id`` to its own longest sequence (t <= max_len); a padded position never contributes to a loss
or metric. ``Data.splits`` holds each split padded to its own longest sequence.

Training batches are bucketed by length: the epoch's shuffled documents are cut into pools of
``bucket_batches`` batches, each pool is sorted by length and cut into batches, and the epoch's batches are
shuffled. Every document appears once per epoch, there are ``ceil(n / batch_size)`` batches as for any data set,
and batch ``index`` of ``epoch`` is a pure function of (seed, epoch, index), so a resumed run sees the same data.

The files and the vocabulary are read by the public readers of :mod:`vaezoo.api` (modules
``vaezoo.datafiles.documents`` and ``vaezoo.datafiles.vocabulary``, see docs/data-plugins.md).
"""

from __future__ import annotations

import sys
from abc import abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from torch import Tensor

from vaezoo.api import (
    CHOSEN_BY_AUTO,
    SPLITS,
    Data,
    DataFile,
    DataSource,
    DataSpec,
    SourceRecord,
    Specials,
    UsageError,
    Vocabulary,
    auto_note,
    evaluation_rows,
    file_param,
    given_path,
    limited,
    param,
    part_selection,
    present,
    random_parts,
    read_documents,
    read_lines,
    read_vocabulary,
    share_parts,
    train_vocabulary,
    unused_note,
    user_file,
)
from vaezoo_plugins.data.checks import ALLOW_OVERLAP_HELP, Read, check_splits_apart, document_keys, unknown_token_note
from vaezoo_plugins.data.file_sources import BATCH_ORDER, HeldOutFractions, derived_seed, run_test_from_file

Documents = list[list[str]]


# ---------------------------------------------------------------------------------------------------------------
# Sequences and batches


def pad_sequences(flat: np.ndarray, lengths: np.ndarray, max_len: int, vocabulary: Vocabulary) -> Tensor:
    """Documents as ``'n t'`` rows ``BOS w1 .. wn EOS pad ..``, t the longest row; words past ``max_len - 2``
    are dropped. ``flat`` and ``lengths`` are what ``Vocabulary.encode`` returns."""
    kept = np.minimum(lengths, max_len - 2)  # 'n'
    width = int(kept.max(initial=0)) + 2
    rows = np.full((len(lengths), width), vocabulary.pad_id, dtype=np.int64)
    rows[:, 0] = vocabulary.bos_id
    column = np.arange(width - 2)
    is_word = column[None, :] < kept[:, None]  # 'n t-2'
    starts = np.cumsum(lengths) - lengths  # where each document begins in ``flat``
    rows[:, 1:-1][is_word] = flat[(starts[:, None] + column[None, :])[is_word]]
    rows[np.arange(len(lengths)), kept + 1] = vocabulary.eos_id
    return torch.from_numpy(rows)


class TextData(Data):
    """Token splits with length-bucketed training batches and per-batch padding (see the module docstring).

    ``splits[name] 'n t'`` holds each split padded to its longest sequence; ``lengths[name] 'n'`` the number of
    non-padding tokens of each sequence (start and end included); ``sources`` where each split comes from (see
    :class:`~vaezoo.components.interfaces.Data`; empty unless a source fills it).
    """

    def __init__(self, splits: Mapping[str, Tensor], vocabulary: Vocabulary, max_len: int, bucket_batches: int):
        spec = DataSpec(
            (max_len,),
            "tokens",
            vocab_size=len(vocabulary),
            pad_id=vocabulary.pad_id,
            bos_id=vocabulary.bos_id,
            eos_id=vocabulary.eos_id,
            unk_id=vocabulary.unk_id,
        )
        super().__init__(spec, splits["train"], splits["valid"], splits["test"])
        self.vocabulary = vocabulary
        self.bucket_batches = bucket_batches
        self.lengths = {name: (x != vocabulary.pad_id).sum(dim=1) for name, x in self.splits.items()}
        self._plan: tuple[tuple[int, int, int], list[Tensor]] | None = None

    def rows(self, split: str, rows: Tensor) -> Tensor:
        """Sequences ``rows`` of ``split`` as ``'b t'``, padded to the longest of them."""
        longest = int(self.lengths[split].index_select(0, rows).max())
        return self.splits[split].index_select(0, rows)[:, :longest]  # index_select: far faster than x[rows]

    def epoch_batches(self, seed: int, epoch: int, batch_size: int) -> list[Tensor]:
        """The training rows of every batch of ``epoch``, in order: a pure function of the arguments."""
        key = (seed, epoch, batch_size)
        if self._plan is None or self._plan[0] != key:
            generator = torch.Generator().manual_seed(derived_seed(BATCH_ORDER, seed, epoch))
            lengths = self.lengths["train"]
            batches: list[Tensor] = []
            for pool in torch.split(
                torch.randperm(len(lengths), generator=generator), batch_size * self.bucket_batches
            ):
                by_length = pool[torch.argsort(lengths[pool], stable=True)]
                batches.extend(torch.split(by_length, batch_size))
            order = torch.randperm(len(batches), generator=generator).tolist()
            self._plan = (key, [batches[i] for i in order])
        return self._plan[1]

    def batch_rows(self, seed: int, epoch: int, index: int, batch_size: int) -> Tensor:
        return self.epoch_batches(seed, epoch, batch_size)[index]

    def train_rows(self, rows: Tensor) -> Tensor:
        return self.rows("train", rows)

    def unknown_token_rates(self) -> dict[str, float]:
        """By split, the fraction of its words (the tokens between start and end, as the sequences hold them) read
        as the unknown token; 0 for a split without words."""
        v = self.vocabulary
        rates = {}
        for split, x in self.splits.items():
            words = (x != v.pad_id) & (x != v.bos_id) & (x != v.eos_id)
            rates[split] = float((x == v.unk_id).sum() / words.sum().clamp(min=1))
        return rates

    def batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[Tensor]:
        """Evaluation batches of ``split`` in split order (``limit`` as in :func:`evaluation_rows`), each padded
        to its own longest sequence."""
        for rows in evaluation_rows(self.size(split), limit).split(batch_size):
            yield self.rows(split, rows)

    def decode(self, ids: Tensor) -> list[str]:
        """Each row of ``ids 'b t'`` as text (see ``Vocabulary.decode``)."""
        return self.vocabulary.decode(ids)


@attrs.frozen
class SequenceParams:
    """Parameters of any text data source: sequence length, bucketing, and a cap on training documents."""

    max_len: int = param(
        202,
        ge=3,
        le=10_000,
        help="longest sequence in tokens, start and end included; longer documents lose their tail",
    )
    bucket_batches: int = param(
        50,
        ge=1,
        le=10**6,
        help="training batches are bucketed by length within pools of this many batches (1: no bucketing)",
    )
    limit: int = param(0, ge=0, le=10**9, help="use at most this many training documents (0: all), for quick runs")


def build_text_data(documents: Mapping[str, Sequence[Sequence[str]]], vocabulary: Vocabulary, params) -> TextData:
    """:class:`TextData` of ``documents`` (lists of words per split) under ``vocabulary``; ``params`` is a
    :class:`SequenceParams` (or derived). An empty split is a UsageError."""
    empty = [split for split in SPLITS if not documents[split]]
    if empty:
        raise UsageError(f"the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty")
    splits = {
        split: pad_sequences(*vocabulary.encode(documents[split]), params.max_len, vocabulary) for split in SPLITS
    }
    return TextData(splits, vocabulary, params.max_len, params.bucket_batches)


# ---------------------------------------------------------------------------------------------------------------
# The corpora's files and how the shipped ones are divided


def pick(lines: Sequence[str], rows: np.ndarray) -> list[str]:
    """The lines at ``rows``, in that order."""
    return [lines[i] for i in rows]


@attrs.frozen
class Division:
    """A shipped file and the splits it makes: the rest of its lines goes to ``splits[0]``, a part of each
    fraction of ``held_out`` (:func:`random_parts`) to each further split; ``text`` describes it."""

    file: DataFile
    splits: tuple[str, ...]
    held_out: tuple[float, ...] = ()
    text: str = ""


YAHOO_VALID = DataFile(
    "yahoo/yahoo.valid.txt.gz",
    "the 10,000-document validation split of Yang et al.'s Yahoo corpus (gzip, one document per line)",
    "the shared data folder, from harvardnlp/DeepLatentNLP data/yahoo/val.txt (see yahoo/PROVENANCE.md)",
    sha256="6c66013667d572c7ea9d16adfc1da5dea2ca95bf1bff3a115a05b7391fcc95db",
)
YAHOO_VOCAB = DataFile(
    "yahoo/vocab.txt.gz",
    "the 20,000-entry Yahoo vocabulary (gzip, token<TAB>index lines)",
    "the shared data folder, from yaoxiaoyuan/vae data/yahoo/vocab.txt (see yahoo/PROVENANCE.md)",
    sha256="d029e75499ea714a0fa2fcf60ae56409041641b9792b10b66d069a151fc6d7cf",
)
YAHOO_TRAIN = user_file(
    "yahoo/yahoo.train",
    "the 100k-document training split of Yang et al.'s Yahoo corpus (one document per line)",
    "harvardnlp/DeepLatentNLP data/yahoo/train.txt or He et al.'s yahoo_data/yahoo.train.txt",
)
YAHOO_TEST = user_file(
    "yahoo/yahoo.test",
    "the 10k-document test split of Yang et al.'s Yahoo corpus (one document per line)",
    "harvardnlp/DeepLatentNLP data/yahoo/test.txt or He et al.'s yahoo_data/yahoo.test.txt",
)
PTB_TRAIN = DataFile(
    "ptb/ptb.train.txt.gz",
    "Mikolov's Penn Treebank training split (gzip, one sentence per line)",
    "the shared data folder, from Mikolov's simple-examples ptb.train.txt (see ptb/PROVENANCE.md)",
    sha256="c4c6455d85f60640431f7bc738d51265ba2d55dcce10e8906322d6f9e3dcca81",
)
PTB_VALID = DataFile(
    "ptb/ptb.valid.txt.gz",
    "Mikolov's Penn Treebank validation split (gzip, one sentence per line)",
    "the shared data folder, from Mikolov's simple-examples ptb.valid.txt (see ptb/PROVENANCE.md)",
    sha256="f2148d96d82f827399b7e5040868a4541bd2d2612ebaf5a2ff213bc07fd74eb8",
)
PTB_TEST = user_file(
    "ptb/ptb.test",
    "Mikolov's Penn Treebank test split (one sentence per line)",
    "Mikolov's simple-examples data/ptb.test.txt",
)


# ---------------------------------------------------------------------------------------------------------------
# Sources


@attrs.frozen
class TextParams(SequenceParams):
    source: str = param(
        "auto",
        choices=("auto", "shipped", "full"),
        help="auto: the corpus's own test file (yahoo.test.txt, ptb.test.txt; gzip'd or not) in its folder of "
        "DATA_DIR makes the test split when present, its training file (yahoo.train.txt) too when both are present, "
        "the shipped files the rest; full: the corpus's own split files, which must be present; shipped: the "
        "shipped files only (a split file present is noted, not used); data.*_file overrides these per split",
    )
    vocab: str = param(
        "auto",
        choices=("auto", "file", "train"),
        help="file: the corpus's vocabulary file; train: trained on the training documents; auto: file if the "
        "corpus has one",
    )
    min_freq: int = param(1, ge=1, le=10**9, help="trained vocabulary: words seen fewer times in training are unknown")
    max_vocab: int = param(
        20000, ge=5, le=65536, help="trained vocabulary: at most this many entries, special tokens included"
    )
    split_seed: int = param(
        123,
        ge=0,
        le=2**32 - 1,
        help="seed of the divisions of shipped files, independent of the run seed (all runs share them)",
    )
    check_sha256: bool = param(True, help="verify the sha256 of the shipped files")
    allow_overlap: bool = param(False, help=ALLOW_OVERLAP_HELP)


#: The format a split file of a text source must have, for the parameters' help.
DOCUMENTS = "one document per line, gzip'd if named .gz"


@attrs.frozen
class YahooParams(TextParams, HeldOutFractions):
    valid_fraction: float = param(0.1, gt=0, lt=1, help="shipped: fraction of the shipped documents for valid")
    test_fraction: float = param(0.1, gt=0, lt=1, help="shipped: fraction of the shipped documents for test")
    train_file: str = file_param(
        "yahoo",
        f"train from this file ({DOCUMENTS}), e.g. the corpus's 100k-document yahoo.train.txt; the shipped 10k "
        "documents then make valid and test only (test keeps its test_fraction part, valid takes the rest)",
    )
    valid_file: str = file_param(
        "yahoo", f"valid from this file ({DOCUMENTS}); the shipped documents' valid part then joins train"
    )
    test_file: str = file_param(
        "yahoo",
        f"test from this file ({DOCUMENTS}), e.g. He et al.'s 10k-document yahoo.test.txt; the shipped 10k "
        "documents then make train and valid only (valid keeps its valid_fraction part, the same documents as "
        "without a test file; train takes the rest)",
    )


@attrs.frozen
class PTBParams(TextParams):
    test_fraction: float = param(
        0.5, gt=0, lt=1, help="shipped: fraction of ptb.valid held out as the test split (ptb.test is not shipped)"
    )
    train_file: str = file_param("ptb", f"train from this file ({DOCUMENTS}) instead of the shipped ptb.train.txt")
    valid_file: str = file_param(
        "ptb", f"valid from this file ({DOCUMENTS}); the shipped ptb.valid then goes to test (unless test_file is set)"
    )
    test_file: str = file_param(
        "ptb",
        f"test from this file ({DOCUMENTS}), e.g. Mikolov's ptb.test.txt; the shipped ptb.valid is then all valid",
    )


class TextSource(DataSource):
    """A corpus of one document per line: subclasses name its files; choosing them, the vocabulary and batching
    are shared.

    Each split comes from the first of: its ``data.SPLIT_file``; the corpus's own split file in the data set's
    folder (``standard_files``: ``data.source=full`` requires them; ``auto`` uses the test file when present, the
    others only when all are present); the shipped files,
    each divided at random (``divisions``) among the splits no file gives, a part whose split comes from a file
    going to the first of train, valid, test that does not (:func:`share_parts`).
    """

    Params = TextParams
    #: Decoder noise is the only contrastive noise that makes sense for token ids.
    default_noise = "decoder"
    specials: ClassVar[Specials] = Specials()
    #: The corpus's vocabulary file, if it has one.
    vocab_file: ClassVar[DataFile | None] = None
    #: The data set's folder in the data directory.
    folder: ClassVar[str]
    #: The corpus's own split files that are not shipped (the user's copies), by split.
    standard_files: ClassVar[dict[str, tuple[DataFile, DataFile]]] = {}
    #: Data parameters ``vaezoo eval`` may change: they choose evaluation data only, never the vocabulary.
    evaluation_params: ClassVar[tuple[str, ...]] = ("test_file", "check_sha256", "allow_overlap")

    def load(self, data_dir: Path | None, seed: int) -> TextData:
        """The splits as :class:`TextData` with their ``sources``; they do not depend on ``seed`` (only the batch
        order does). Notes on unused standard files go to stderr."""
        if data_dir is None:
            raise UsageError(f"data {self.name!r} reads files: pass --data-dir or set VAEZOO_DATA")
        p = self.params
        notes: list[str] = []
        try:
            lines, sources, reads = self.collect(Path(data_dir), notes)
            self.check_apart(lines, sources, reads, notes)
            train = pick(lines["train"], np.random.RandomState(p.split_seed).permutation(len(lines["train"])))
            lines["train"] = train[: p.limit or None]
            if len(lines["train"]) < len(train):
                sources["train"]["examples"] = len(lines["train"])
                sources["train"]["selection"] = limited(sources["train"]["selection"], p.limit)
            vocabulary = self.vocabulary(Path(data_dir), lines["train"])
            documents = {split: [line.split() for line in lines[split]] for split in SPLITS}
            data = build_text_data(documents, vocabulary, p)
        except UsageError as error:
            raise UsageError(f"data {self.name!r}: {error}") from None
        for split, rate in data.unknown_token_rates().items():
            sources[split]["unknown_token_rate"] = round(rate, 4)
            note = unknown_token_note(split, rate, vocabulary.specials.unk)
            notes += [f"vaezoo: note: data {self.name!r}: {note}"] if note else []
        for note in notes:
            print(note, file=sys.stderr)
        data.sources, data.notes = sources, notes
        return data

    def collect(
        self, data_dir: Path, notes: list[str]
    ) -> tuple[dict[str, list[str]], dict[str, SourceRecord], list[Read]]:
        """The lines of each split, in file order, where they come from (see the class docstring) and the files
        read; adds to ``notes`` the standard files that ``auto`` uses or that are left unused. Bad files raise
        UsageError. When a trained run is evaluated, the shipped files are divided as the run divided them
        (:func:`run_test_from_file`), so a test file does not change its train and valid splits."""
        p = self.params
        files = self.split_files(data_dir, notes)
        run_test = run_test_from_file(self.trained, "full", "test" in files)
        divided = {split for split in files if split != "test"} | ({"test"} if run_test else set())
        lines: dict[str, list[str]] = {}
        sources: dict[str, SourceRecord] = {}
        reads = [Read(path, (split,)) for split, (path, _) in files.items()]
        for split, (path, why) in files.items():
            lines[split] = read_documents(path)
            selection = f"all its {len(lines[split])} examples; {why}"
            sources[split] = {"file": str(path), "examples": len(lines[split]), "selection": selection}
        for division in self.divisions():
            if all(split in divided for split in division.splits):
                continue
            shipped = read_lines(division.file, data_dir, p.check_sha256)
            parts = random_parts(len(shipped), division.held_out, p.split_seed)
            shares = share_parts(dict(zip(division.splits, parts, strict=True)), divided)
            made = {split: share for split, share in shares.items() if split not in files}
            reads += [Read(division.file.path(data_dir), tuple(made))] if made else []
            for split, (rows, names) in made.items():
                lines[split] = pick(shipped, rows)
                selection = f"{part_selection(names, len(rows), len(shipped), division.text)}; shipped"
                sources[split] = {
                    "file": str(division.file.path(data_dir)),
                    "examples": len(rows),
                    "selection": selection,
                }
        return lines, {split: sources[split] for split in SPLITS}, reads

    def check_apart(
        self, lines: Mapping[str, list[str]], sources: Mapping[str, SourceRecord], reads: list[Read], notes: list[str]
    ) -> None:
        """Refuse splits that share a file or too many documents (:func:`check_splits_apart`, on every line read,
        before ``limit``); add its note to ``notes`` and its counts to ``sources``."""
        keys = {split: document_keys(lines[split]) for split in SPLITS}
        shared_notes, shared = check_splits_apart(reads, keys, self.params.allow_overlap)
        notes += [f"vaezoo: note: data {self.name!r}: {note}" for note in shared_notes]
        for split in SPLITS:
            if shared[split]:
                sources[split]["shared_with"] = shared[split]

    def split_files(self, data_dir: Path, notes: list[str]) -> dict[str, tuple[Path, str]]:
        """The splits read from a file of their own: that file and the setting that chose it (see the class
        docstring); adds to ``notes`` each standard file that ``auto`` chose or that is present but not chosen."""
        p = self.params
        standard = {split: present(data_dir, candidates) for split, candidates in self.standard_files.items()}
        complete = all(standard.values())
        chosen: dict[str, tuple[Path, str]] = {}
        for split in SPLITS:
            value = getattr(p, f"{split}_file")
            candidates = self.standard_files.get(split)
            found = standard[split].path(data_dir) if standard.get(split) else None
            if value:
                chosen[split] = (given_path(data_dir, self.folder, f"{split}_file", value), f"data.{split}_file")
            elif found is not None and p.source == "full":
                chosen[split] = (found, "data.source=full")
            elif found is not None and p.source == "auto" and (split == "test" or complete):
                chosen[split] = (found, CHOSEN_BY_AUTO)
                notes.append(auto_note(self.name, found, f"as the {split} split", "shipped"))
            elif candidates and p.source == "full":
                first = candidates[0]
                raise UsageError(
                    f"data file '{data_dir / first.relative}' (or '{candidates[1].relative}') is missing; expected "
                    f"{first.what}, from {first.origin}"
                )
            if found is not None and (split not in chosen or chosen[split][0].resolve() != found.resolve()):
                notes.append(unused_note(self.name, found, f"--set data.{split}_file={found.name} uses it"))
        return chosen

    def uses_full(self, data_dir: Path) -> bool:
        """Whether ``data.source`` reads all of the corpus's own split files (``auto``: when all are present)."""
        if self.params.source == "auto":
            return all(present(data_dir, candidates) for candidates in self.standard_files.values())
        return self.params.source == "full"

    def read(self, data_dir: Path, full: bool | None = None) -> dict[str, list[str]]:
        """The lines of each split in file order, as :meth:`load` reads them (before shuffling and ``limit``):
        ``full`` True or False reads them as ``data.source`` full or shipped would, None as configured."""
        source = self if full is None else type(self)(attrs.evolve(self.params, source="full" if full else "shipped"))
        return source.collect(data_dir, [])[0]

    @abstractmethod
    def divisions(self) -> list[Division]:
        """The shipped files and how each is divided among the splits."""

    def vocabulary(self, data_dir: Path, train_lines: list[str]) -> Vocabulary:
        p = self.params
        from_file = p.vocab == "file" or (p.vocab == "auto" and self.vocab_file is not None)
        if not from_file:
            return train_vocabulary(train_lines, self.specials, p.min_freq, p.max_vocab)
        if self.vocab_file is None:
            raise UsageError(f"{self.name} has no vocabulary file; use data.vocab=train")
        return read_vocabulary(self.vocab_file, data_dir, self.specials, p.check_sha256)


class Yahoo(TextSource):
    """Yahoo Answers documents of Yang et al. (2017): the shipped validation split, divided by ``split_seed``,
    and the corpus's other splits (100k / 10k) from the user's files when present or named."""

    name = "yahoo"
    description = (
        "Yahoo Answers documents (Yang et al. 2017): the shipped 10k split divided, with the corpus's own train "
        "and test files when present or named"
    )
    Params = YahooParams
    specials = Specials(unk="_UNK")
    vocab_file = YAHOO_VOCAB
    folder = "yahoo"
    standard_files: ClassVar[dict[str, tuple[DataFile, DataFile]]] = {"train": YAHOO_TRAIN, "test": YAHOO_TEST}

    def divisions(self) -> list[Division]:
        p = self.params
        text = (
            f"divided at random: valid_fraction {p.valid_fraction}, test_fraction {p.test_fraction}, "
            f"split_seed {p.split_seed}"
        )
        return [Division(YAHOO_VALID, SPLITS, (p.valid_fraction, p.test_fraction), text)]


class PTB(TextSource):
    """Penn Treebank sentences (Mikolov's LM version): the shipped training file, and the shipped validation file
    divided into valid and test by ``split_seed`` unless the test split comes from ``ptb.test.txt``."""

    name = "ptb"
    description = "Penn Treebank sentences (Mikolov's LM version), vocabulary trained with tokenizers"
    Params = PTBParams
    folder = "ptb"
    standard_files: ClassVar[dict[str, tuple[DataFile, DataFile]]] = {"test": PTB_TEST}

    def divisions(self) -> list[Division]:
        p = self.params
        text = f"divided at random: test_fraction {p.test_fraction}, split_seed {p.split_seed}"
        return [Division(PTB_TRAIN, ("train",)), Division(PTB_VALID, ("valid", "test"), (p.test_fraction,), text)]
