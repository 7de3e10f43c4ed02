"""Checks that keep the splits of a data set read from files apart, shared by the image and text sources.

A model evaluated on examples it trained on (or selected on) reports numbers that mean nothing, and nothing in
the numbers says so. So a data source that reads files checks its splits when it loads them:

- **Same file.** Two splits read from one file (the same file named twice, e.g. ``data.train_file`` and
  ``data.test_file``, or a split file that is also a shipped file) are refused. One file divided into parts (the
  shipped files, a training file's held-out validation part) is one read and is not a shared file.
- **Same examples.** An example is its content: an image's grey levels, a document's words (whitespace
  normalised). For each pair of splits, the larger of the fractions of either split's examples that also occur in
  the other is compared with :data:`MAX_SHARED_FRACTION`: above it the splits are refused, from one shared example
  up to it a note on stderr says how many are shared, and each split's source record (``shared_with``) counts its
  examples found in each other split.
- ``data.allow_overlap = true`` refuses neither; the note still says what is shared.

A refusal is one line (a UsageError) naming the splits, their files and how many examples they share, raised
while the data loads, before a run directory is made. What the shipped data sets share between their standard
splits (measured with the default settings): the 5,000 MNIST images and the 4,840 Omniglot images are all distinct
(none shared), the 10,000 Yahoo documents too; Penn Treebank repeats short sentences ("ad notes", "terms were n't
disclosed"): 44 of the 1,685 valid sentences (2.6 %) and 41 of the 1,685 test sentences (2.4 %) occur in
``ptb.train``, 7 test sentences in valid (85 of the whole ``ptb.valid``'s 3,370, 2.5 %, in ``ptb.train``). Lake et
al.'s two "background small" sets share 1,000 of their images (the 50 characters of the alphabets both hold).

Text splits also get a note when many of their tokens are outside the vocabulary
(:data:`MAX_UNKNOWN_TOKEN_RATE`): text of another corpus, or a vocabulary that does not fit it. The standard
splits of the shipped corpora read 4 to 5 % of their tokens as unknown (PTB spells them ``<unk>`` in its text);
Yahoo text under a PTB vocabulary 25 %, PTB text under Yahoo's 13 %.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import attrs
import numpy as np

from vaezoo.api import SPLITS, UsageError

#: The largest fraction of a split's examples that may also occur in another split without data.allow_overlap: above
#: what the shipped data sets' own splits share (PTB's 2.6 %), far below what a mix-up of files shares.
MAX_SHARED_FRACTION = 0.05
#: Above this fraction of a split's tokens read as unknown, a note says so: twice the shipped corpora's 4 to 5 %.
MAX_UNKNOWN_TOKEN_RATE = 0.10
ALLOW = "data.allow_overlap=true"
#: Help of the data parameter that lets splits share files or examples.
ALLOW_OVERLAP_HELP = (
    "let splits share a file, or more than 5 % of their examples (identical images or documents), which is "
    "otherwise refused: a model would be evaluated on examples it trained or was selected on; what they share is "
    "noted either way"
)


@attrs.frozen
class Read:
    """One file read once, and the splits that its examples make."""

    path: Path
    splits: tuple[str, ...]


@attrs.frozen
class Shared:
    """``count`` of the ``total`` examples of ``split`` also occur in ``other``."""

    split: str
    other: str
    count: int
    total: int

    @property
    def fraction(self) -> float:
        return self.count / self.total

    def text(self) -> str:
        return f"{self.count} of the {self.total} examples of the {self.split} split ({percent(self.fraction)})"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %"


#: The threshold as the messages state it.
LIMIT = f"{100 * MAX_SHARED_FRACTION:g} %"


def image_keys(images: np.ndarray) -> list[bytes]:
    """A digest of each image's content (``images 'n ...'``, any dtype): equal images, equal keys."""
    rows = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]


def document_keys(lines: Sequence[str]) -> list[str]:
    """Each document's words joined by one space: documents that differ in whitespace only are the same."""
    return [" ".join(line.split()) for line in lines]


def shared_counts(keys: Mapping[str, Sequence[Hashable]]) -> dict[str, dict[str, int]]:
    """For each split of ``keys`` (each example's content key, by split), how many of its examples occur in each
    other split; pairs that share none are left out."""
    counts: dict[str, dict[str, int]] = {split: {} for split in keys}
    found = {split: set(values) for split, values in keys.items()}
    for split, other in itertools.permutations(keys, 2):
        count = sum(key in found[other] for key in keys[split])
        if count:
            counts[split][other] = count
    return counts


def worst_shares(keys: Mapping[str, Sequence[Hashable]], counts: Mapping[str, Mapping[str, int]]) -> list[Shared]:
    """For each pair of splits that share examples, the direction with the larger fraction, in split order."""
    shares = []
    for first, second in itertools.combinations([s for s in SPLITS if s in keys], 2):
        both = [Shared(a, b, counts[a].get(b, 0), len(keys[a])) for a, b in ((second, first), (first, second))]
        worst = max(both, key=lambda share: share.fraction if share.total else 0.0)
        if worst.count:
            shares.append(worst)
    return shares


def same_files(reads: Sequence[Read]) -> list[tuple[Read, Read]]:
    """Pairs of reads of one file (paths compared after resolving links), the earlier read first."""
    return [(a, b) for a, b in itertools.combinations(reads, 2) if a.path.resolve() == b.path.resolve()]


def splits_phrase(splits: Sequence[str]) -> str:
    return f"the {' and '.join(splits)} split{'s' if len(splits) > 1 else ''}"


def files_named(reads: Sequence[Read], share: Shared) -> str:
    """The files of the two splits of ``share``, for a message: none when it is one file (named already)."""
    first, second = (next(read.path for read in reads if split in read.splits) for split in (share.split, share.other))
    return "" if first.resolve() == second.resolve() else f" ('{first}' and '{second}')"


def check_splits_apart(
    reads: Sequence[Read], keys: Mapping[str, Sequence[Hashable]], allow: bool
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Refuse splits that share a file or too many examples (see the module docstring) with a UsageError unless
    ``allow``; else return the note on what they share (none when nothing is) and, by split, how many of its
    examples occur in each other split. ``reads`` lists the files read and the splits each makes; ``keys`` each
    split's content keys (:func:`image_keys`, :func:`document_keys`), before ``data.limit``."""
    counts = shared_counts(keys)
    shares = worst_shares(keys, counts)
    doubled = same_files(sorted(reads, key=lambda read: min(map(SPLITS.index, read.splits))))
    paired = {frozenset((x, y)) for a, b in doubled for x in a.splits for y in b.splits}
    files = [
        f"{splits_phrase(b.splits)} read{'s' * (len(b.splits) == 1)} '{b.path}', the file of {splits_phrase(a.splits)}"
        for a, b in doubled
    ]
    too_many = [s for s in shares if s.fraction > MAX_SHARED_FRACTION or frozenset((s.split, s.other)) in paired]
    if (files or too_many) and not allow:
        refused = [
            f"{share.text()} also occur in the {share.other} split{files_named(reads, share)}" for share in too_many
        ]
        raise UsageError(
            f"{'; '.join(files + refused)}: splits must not share a file, nor more than {LIMIT} of their "
            "examples, so that no model is evaluated on what it trained or "
            f"was selected on; name files that hold other examples, or set {ALLOW} to use these knowingly"
        )
    if not (files or shares):
        return [], counts
    accepted = f"up to {LIMIT} is accepted"
    why = f"allowed by {ALLOW}" if files or too_many else accepted
    found = [f"{share.text()} also occur in the {share.other} split" for share in shares]
    return [f"{'; '.join(files + found)} ({why})"], counts


def unknown_token_note(split: str, rate: float, unknown: str) -> str | None:
    """The note on a split whose tokens are read as ``unknown`` at ``rate`` above :data:`MAX_UNKNOWN_TOKEN_RATE`."""
    if rate <= MAX_UNKNOWN_TOKEN_RATE:
        return None
    return (
        f"{percent(rate)} of the {split} split's tokens are outside the vocabulary and read as {unknown!r} (more than "
        f"{percent(MAX_UNKNOWN_TOKEN_RATE)}; the shipped corpora's own splits have 4 to 5 %): is it text of this "
        "corpus, tokenised as it is?"
    )
