"""Corpora of one document per line read from the data directory: ``yahoo`` and ``ptb``.

Axis legend: ``b`` batch, ``n`` documents of a split, ``t`` tokens.

Files, relative to the data directory (``--data-dir`` or ``$VAEZOO_DATA``):

- ``yahoo/yahoo.valid.txt.gz`` and ``yahoo/vocab.txt.gz`` (shipped, sha256 checked): the 10,000-document
  validation split of Yang et al.'s (2017) Yahoo Answers corpus and a 20,000-entry vocabulary built from its
  training split (``token<TAB>index`` lines; see ``yahoo/PROVENANCE.md``). ``yahoo/yahoo.train.txt`` and
  ``yahoo/yahoo.test.txt`` (optionally gzip'd, ``.txt.gz``; the user's own copies, not checked) are the corpus's
  other splits, 100k and 10k documents.
- ``ptb/ptb.train.txt.gz`` and ``ptb/ptb.valid.txt.gz`` (shipped, sha256 checked): Mikolov's Penn Treebank, one
  sentence per line (see ``ptb/PROVENANCE.md``). ``ptb/ptb.test.txt`` (optionally ``.txt.gz``) is the user's copy
  of its test split.

A document is a line; its words are its whitespace-separated tokens (the corpora are already tokenised and
lower-cased). ``data.source`` chooses the splits: ``full`` reads the corpus's own splits (the user's files),
``shipped`` divides what is shipped, and ``auto`` (the default) takes ``full`` when those files are present. The
shipped Yahoo file is divided at random into train, valid and test (``valid_fraction``, ``test_fraction``); PTB
keeps its training file and divides its validation file into valid and test (``test_fraction``). Divisions depend
on ``split_seed``, not on the run seed, so runs that differ only in their seed share one split; valid and test
keep file order, the training documents come in an order shuffled by ``split_seed`` (so ``limit`` keeps a random
subset).

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
"""

from __future__ import annotations

import gzip
import itertools
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import attrs
import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from torch import Tensor

from vaezoo import hookimpl
from vaezoo.errors import UsageError
from vaezoo.interfaces import Data, DataSource, DataSpec, evaluation_rows
from vaezoo.params import param
from vaezoo_plugins.data_image import DataFile, derived_seed, parsing, require

SPLITS = ("train", "valid", "test")
#: Domain tag of the stream that orders each epoch's training batches (see ``data_image.derived_seed``).
BATCH_ORDER = 3
Documents = list[list[str]]


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary


@attrs.frozen
class Specials:
    """Spellings of the padding, start, end and unknown tokens."""

    pad: str = "<pad>"
    bos: str = "<bos>"
    eos: str = "<eos>"
    unk: str = "<unk>"

    def all(self) -> tuple[str, str, str, str]:
        """The four spellings in id order of a trained vocabulary: padding, start, end, unknown."""
        return (self.pad, self.bos, self.eos, self.unk)


class _UnknownIsDefault(dict):
    """A token-to-id map that answers ``unk_id`` for any token it lacks."""

    def __init__(self, ids: Mapping[str, int], unk_id: int) -> None:
        super().__init__(ids)
        self.unk_id = unk_id

    def __missing__(self, token: str) -> int:
        return self.unk_id


class Vocabulary:
    """Token spellings indexed by id, with the four special tokens of ``specials`` among them.

    ``encode`` turns documents (lists of words) into ids, ``decode`` turns id sequences back into text;
    for documents whose words are all in the vocabulary, ``decode`` after ``encode`` gives the words back.
    Raises ValueError when a token is listed twice or a special token is missing.
    """

    def __init__(self, tokens: Sequence[str], specials: Specials) -> None:
        self.tokens = tuple(tokens)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        if len(self.ids) != len(self.tokens):
            repeated = sorted(t for t, count in Counter(self.tokens).items() if count > 1)
            raise ValueError(f"tokens are listed more than once: {repeated[:5]}")
        missing = [token for token in specials.all() if token not in self.ids]
        if missing:
            raise ValueError(f"the special tokens {missing} are missing (needed: {list(specials.all())})")
        self.specials = specials
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.ids[token] for token in specials.all())
        # Literal spellings of padding, start and end inside a document are words, read as unknown.
        structural = {specials.pad, specials.bos, specials.eos}
        self._lookup = _UnknownIsDefault({t: i for t, i in self.ids.items() if t not in structural}, self.unk_id)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, documents: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of every word of ``documents``, concatenated, and each document's word count (int64 arrays).

        A dictionary lookup rather than ``tokenizers``' own encoding: a WordLevel tokenizer of this vocabulary
        (``encode_batch`` of pre-split words) gives the same ids on Yahoo and PTB but took 10 times as long (1.35 s
        against 0.13 s for PTB's 43,753 training and test sentences), building a Python object per document."""
        lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents))
        words = itertools.chain.from_iterable(documents)
        flat = np.fromiter(map(self._lookup.__getitem__, words), dtype=np.int64, count=int(lengths.sum()))
        return flat, lengths

    def decode(self, ids: Tensor) -> list[str]:
        """Each row of ``ids 'b t'`` as text: its words after the start token and before the first end token."""
        skipped = {self.pad_id, self.bos_id}
        texts = []
        for row in ids.tolist():
            words = itertools.takewhile(lambda i: i != self.eos_id, row)
            texts.append(" ".join(self.tokens[i] for i in words if i not in skipped))
        return texts

    def lines(self) -> list[str]:
        """The vocabulary as ``token<TAB>id`` lines in id order, the format ``vocabulary_from_lines`` reads."""
        return [f"{token}\t{i}" for i, token in enumerate(self.tokens)]


def vocabulary_from_lines(lines: Iterable[str], specials: Specials) -> Vocabulary:
    """A vocabulary from ``token<TAB>id`` lines (ids 0..n-1 in any order) or bare ``token`` lines (id = line
    number); raises ValueError on a malformed file."""
    rows = [line.split("\t") for line in lines if line.strip()]
    if not rows:
        raise ValueError("it lists no tokens")
    if all(len(row) == 1 for row in rows):
        return Vocabulary([row[0] for row in rows], specials)
    if not all(len(row) == 2 and row[1].strip().isdigit() for row in rows):
        bad = next(row for row in rows if len(row) != 2 or not row[1].strip().isdigit())
        raise ValueError(f"expected token<TAB>id lines, found {bad!r}")
    by_id = {int(index): token for token, index in rows}
    if sorted(by_id) != list(range(len(rows))):
        raise ValueError(f"the ids are not 0..{len(rows) - 1}, each once")
    return Vocabulary([by_id[i] for i in range(len(rows))], specials)


def train_vocabulary(lines: Iterable[str], specials: Specials, min_freq: int, max_size: int) -> Vocabulary:
    """A vocabulary trained on whitespace-separated ``lines`` with ``tokenizers``' WordLevel trainer.

    The special tokens come first (ids 0..3), then the words seen at least ``min_freq`` times, most frequent
    first and ties broken by the word (deterministic), up to ``max_size`` entries in all. The special tokens are
    added here rather than by the trainer, which leaves a hole in the ids when the corpus spells one of them.
    """
    tokenizer = Tokenizer(models.WordLevel(unk_token=specials.unk))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=max_size, min_frequency=min_freq, show_progress=False)
    tokenizer.train_from_iterator(lines, trainer)
    ranked = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    words = [word for word, _ in ranked if word not in specials.all()]
    return Vocabulary([*specials.all(), *words][:max_size], specials)


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
    non-padding tokens of each sequence (start and end included).
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

    def train_batch(self, epoch: int, index: int, batch_size: int, seed: int) -> Tensor:
        rows = self.epoch_batches(seed, epoch, batch_size)[index]
        return self.prepare_train_batch(self.rows("train", rows), epoch, index, seed)

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
# Files


def read_lines(file: DataFile, data_dir: Path, check_sha256: bool) -> list[str]:
    """The lines of a UTF-8 text file, gunzipped when its name ends in ``.gz`` (a final empty line dropped)."""
    path, raw = file.read(data_dir, check_sha256)
    with parsing(path, file.what):
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def user_file(stem: str, what: str, origin: str) -> tuple[DataFile, DataFile]:
    """A file the user may add, as ``STEM.txt.gz`` or ``STEM.txt`` (not shipped, so no checksum)."""
    return DataFile(f"{stem}.txt.gz", what, origin), DataFile(f"{stem}.txt", what, origin)


def present(data_dir: Path, candidates: tuple[DataFile, DataFile]) -> DataFile | None:
    return next((file for file in candidates if file.path(data_dir).is_file()), None)


def read_user_file(data_dir: Path, candidates: tuple[DataFile, DataFile]) -> list[str]:
    """Lines of the first of ``candidates`` present; none present is a UsageError naming both spellings."""
    file = present(data_dir, candidates)
    if file is None:
        first = candidates[0]
        raise UsageError(
            f"data file '{data_dir / first.relative}' (or '{candidates[1].relative}') is missing; expected "
            f"{first.what}, from {first.origin}"
        )
    return read_lines(file, data_dir, check_sha256=False)


def random_parts(n: int, held_out: Sequence[float], seed: int) -> list[np.ndarray]:
    """Rows 0..n-1 divided at random (seeded): the rest, then a part of ``round(fraction * n)`` rows for each
    fraction of ``held_out``; each part in ascending order. A part left empty is a UsageError."""
    sizes = [round(fraction * n) for fraction in held_out]
    sizes.insert(0, n - sum(sizes))
    if min(sizes) < 1:
        raise UsageError(f"fractions {list(held_out)} of {n} documents leave a split empty (sizes {sizes})")
    order = np.random.RandomState(seed).permutation(n)
    return [np.sort(part) for part in np.split(order, np.cumsum(sizes)[:-1])]


def pick(lines: Sequence[str], rows: np.ndarray) -> list[str]:
    return [lines[i] for i in rows]


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
        help="full: the corpus's own splits (the user's files); shipped: divide the shipped files; auto: full "
        "when its files are present",
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


@attrs.frozen
class YahooParams(TextParams):
    valid_fraction: float = param(0.1, gt=0, lt=1, help="shipped: fraction of the shipped documents for valid")
    test_fraction: float = param(0.1, gt=0, lt=1, help="shipped: fraction of the shipped documents for test")

    def __attrs_post_init__(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1, got {self.valid_fraction} + {self.test_fraction}"
            )


@attrs.frozen
class PTBParams(TextParams):
    test_fraction: float = param(
        0.5, gt=0, lt=1, help="shipped: fraction of ptb.valid held out as the test split (ptb.test is not shipped)"
    )


class TextSource(DataSource):
    """A corpus of one document per line: subclasses read the splits' lines; vocabulary and batching are shared."""

    Params = TextParams
    #: Decoder noise is the only contrastive noise that makes sense for token ids.
    default_noise = "decoder"
    specials: ClassVar[Specials] = Specials()
    #: The corpus's vocabulary file, if it has one.
    vocab_file: ClassVar[DataFile | None] = None
    #: The user's files that make up the ``full`` source.
    full_files: ClassVar[tuple[tuple[DataFile, DataFile], ...]] = ()

    def load(self, data_dir: Path | None, seed: int) -> TextData:
        """The splits as :class:`TextData`; they do not depend on ``seed`` (only the batch order does)."""
        if data_dir is None:
            raise UsageError(f"data {self.name!r} reads files: pass --data-dir or set VAEZOO_DATA")
        p = self.params
        try:
            lines = self.read(Path(data_dir), self.uses_full(Path(data_dir)))
            train = pick(lines["train"], np.random.RandomState(p.split_seed).permutation(len(lines["train"])))
            lines["train"] = train[: p.limit or None]
            vocabulary = self.vocabulary(Path(data_dir), lines["train"])
            documents = {split: [line.split() for line in lines[split]] for split in SPLITS}
            return build_text_data(documents, vocabulary, p)
        except UsageError as error:
            raise UsageError(f"data {self.name!r}: {error}") from None

    def uses_full(self, data_dir: Path) -> bool:
        """Whether to read the corpus's own splits: ``data.source``, with ``auto`` resolved by what is present."""
        if self.params.source == "auto":
            return all(present(data_dir, candidates) for candidates in self.full_files)
        return self.params.source == "full"

    @abstractmethod
    def read(self, data_dir: Path, full: bool) -> dict[str, list[str]]:
        """The lines of each split (``full``: the corpus's own splits); bad files raise UsageError."""

    def vocabulary(self, data_dir: Path, train_lines: list[str]) -> Vocabulary:
        p = self.params
        from_file = p.vocab == "file" or (p.vocab == "auto" and self.vocab_file is not None)
        if not from_file:
            return train_vocabulary(train_lines, self.specials, p.min_freq, p.max_vocab)
        if self.vocab_file is None:
            raise UsageError(f"{self.name} has no vocabulary file; use data.vocab=train")
        lines = read_lines(self.vocab_file, data_dir, p.check_sha256)
        path = self.vocab_file.path(data_dir)
        with parsing(path, self.vocab_file.what):
            vocabulary = vocabulary_from_lines(lines, self.specials)
        require(len(vocabulary) > 4, path, self.vocab_file.what, "it lists no words")
        return vocabulary


class Yahoo(TextSource):
    """Yahoo Answers documents of Yang et al. (2017): the shipped validation split, divided by ``split_seed``,
    or the full corpus (100k / 10k / 10k) when the user adds its training and test files."""

    name = "yahoo"
    description = "Yahoo Answers documents (Yang et al. 2017): the shipped 10k split divided, or the full corpus"
    Params = YahooParams
    specials = Specials(unk="_UNK")
    vocab_file = YAHOO_VOCAB
    full_files = (YAHOO_TRAIN, YAHOO_TEST)

    def read(self, data_dir: Path, full: bool) -> dict[str, list[str]]:
        p = self.params
        valid = read_lines(YAHOO_VALID, data_dir, p.check_sha256)
        if full:
            return {
                "train": read_user_file(data_dir, YAHOO_TRAIN),
                "valid": valid,
                "test": read_user_file(data_dir, YAHOO_TEST),
            }
        parts = random_parts(len(valid), (p.valid_fraction, p.test_fraction), p.split_seed)
        return {split: pick(valid, rows) for split, rows in zip(SPLITS, parts, strict=True)}


class PTB(TextSource):
    """Penn Treebank sentences (Mikolov's LM version): the shipped training file, and the shipped validation file
    divided into valid and test by ``split_seed`` unless the user adds ``ptb.test.txt``."""

    name = "ptb"
    description = "Penn Treebank sentences (Mikolov's LM version), vocabulary trained with tokenizers"
    Params = PTBParams
    full_files = (PTB_TEST,)

    def read(self, data_dir: Path, full: bool) -> dict[str, list[str]]:
        p = self.params
        train, valid = (read_lines(file, data_dir, p.check_sha256) for file in (PTB_TRAIN, PTB_VALID))
        if full:
            return {"train": train, "valid": valid, "test": read_user_file(data_dir, PTB_TEST)}
        kept, held_out = random_parts(len(valid), (p.test_fraction,), p.split_seed)
        return {"train": train, "valid": pick(valid, kept), "test": pick(valid, held_out)}


@hookimpl
def vaezoo_register(register) -> None:
    register(Yahoo)
    register(PTB)
