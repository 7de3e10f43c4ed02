"""Dividing the examples of a file among the splits train, valid and test, and describing how they were chosen.

Every division here is a pure function of its arguments and a seed (``numpy.random.RandomState``), so runs that
share the seed share the split. :func:`split_by_group` keeps every group (an Omniglot character, say) in one split;
:func:`hold_out_last` is Burda's split of ``chardata.mat``; :func:`random_parts` divides lines at random.
:func:`share_parts` gives the part of a split that another file makes to the splits that remain.
:func:`part_selection` and :func:`limited` word a split's ``selection`` in its source record. A division that
would leave a split empty is a UsageError naming the fractions and the sizes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from vaezoo.base.errors import UsageError

SPLITS = ("train", "valid", "test")
#: Row indices of each split into an array of examples in file order.
Rows = dict[str, np.ndarray]


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
    rows follow the training rows in the file. ``n_valid`` outside 1..n_train-1 is a UsageError."""
    if not 0 < n_valid < n_train:
        raise UsageError(
            f"chardata_valid={n_valid} must be between 1 and {n_train - 1} (the file's 'data' has {n_train})"
        )
    order = np.random.RandomState(seed).permutation(n_train)
    return {"train": order[:-n_valid], "valid": order[-n_valid:], "test": n_train + np.arange(n_test)}


def random_parts(n: int, held_out: Sequence[float], seed: int) -> list[np.ndarray]:
    """Rows 0..n-1 divided at random (seeded): the rest, then a part of ``round(fraction * n)`` rows for each
    fraction of ``held_out``; each part in ascending order. A part left empty is a UsageError."""
    sizes = [round(fraction * n) for fraction in held_out]
    sizes.insert(0, n - sum(sizes))
    if min(sizes) < 1:
        raise UsageError(f"fractions {list(held_out)} of {n} documents leave a split empty (sizes {sizes})")
    order = np.random.RandomState(seed).permutation(n)
    return [np.sort(part) for part in np.split(order, np.cumsum(sizes)[:-1])]


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


def part_selection(names: Sequence[str], count: int, total: int, division: str) -> str:
    """How ``count`` of the ``total`` examples of a file were chosen: the parts ``names`` of its ``division``."""
    if count == total:
        return f"all its {total} examples"
    plural = "s" if len(names) > 1 else ""
    return f"the {' and '.join(names)} part{plural} of its {total} examples, {division}"


def limited(selection: str, limit: int) -> str:
    """``selection`` of a training split cut to its first ``limit`` examples (``data.limit``)."""
    return f"{selection}; the first {limit} after a shuffle by split_seed (data.limit)"
