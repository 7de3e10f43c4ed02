"""A results directory read back and grouped for tables and plots: one group per table row and column group.

A *group* is every cell that shares the row axes' values (and the column axis' value) under one test prior;
its cells differ only in the seed axis, and its statistics are the mean and standard deviation (n - 1) over
the cells that finished. Rows follow the suite's axis order and value order, then the order of test priors.
Imports neither torch nor vaezoo.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

from benchmarks.results import MATRIX_NAME, OK, PENDING, PRIOR_INDEPENDENT, read_cell, read_json
from vaezoo.errors import UsageError

#: How test priors are named in tables (the paper's "Test/Validation Prior Variance" column).
PRIOR_LABELS = {"standard": "1", "optimal": "f(K,β,δ)", "tuned": "tuned"}


def canonical(value: Any) -> str:
    """A hashable, order-stable key for an axis value (which may be a list)."""
    return json.dumps(value, sort_keys=True)


def format_value(value: Any) -> str:
    """An axis value as text: labels as they are, lists joined by commas, booleans in lower case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(format_value(v) for v in value)
    return str(value)


def prior_label(prior: str) -> str:
    return PRIOR_LABELS.get(prior, prior)


@attrs.frozen
class Matrix:
    """matrix.json and every cell's cell.json (None while pending), in matrix order."""

    root: Path
    document: dict[str, Any]
    records: dict[str, dict[str, Any] | None]

    @property
    def table(self) -> dict[str, Any]:
        return self.document["table"]

    @property
    def axis_values(self) -> dict[str, list[Any]]:
        return {axis["name"]: axis["values"] for axis in self.document["axes"]}

    def header(self, axis: str) -> str:
        """An axis's column title: the suite's ``headers`` entry, else a conventional symbol, else its name."""
        conventional = {"regularizer.beta": "β", "regularizer.delta": "δ", "regularizer.K": "K", "train.seed": "seed"}
        return self.table["headers"].get(axis, conventional.get(axis, axis))

    def describe(self, axis: str, value: Any) -> str:
        """A cell's value of ``axis`` with context: a variant's label alone, a parameter as ``header=value``."""
        return f"{self.header(axis)}={format_value(value)}" if "." in axis else format_value(value)

    def priors(self) -> list[str]:
        """The suite's test priors, then any others that variants asked for, in order of appearance."""
        order = list(self.document["test_priors"])
        for cell in self.document["cells"]:
            order += [p for p in cell["test_priors"] if p not in order]
        return order


def load_matrix(results_dir: Path) -> Matrix:
    document = read_json(results_dir / MATRIX_NAME)
    if document is None:
        raise UsageError(f"{str(results_dir)!r} holds no {MATRIX_NAME}: it is not a results directory of a suite")
    records = {cell["id"]: read_cell(results_dir, cell["id"]) for cell in document["cells"]}
    return Matrix(results_dir, document, records)


@attrs.frozen
class Group:
    """The cells of one table row and column group (they differ only in the seed), under one test prior."""

    axes: dict[str, Any]
    prior: str
    records: tuple[dict[str, Any] | None, ...]

    @property
    def planned(self) -> int:
        return len(self.records)

    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r is not None and r["status"] == OK]

    def values(self, metric: str) -> list[float]:
        """``metric`` of every finished cell that reports it under this group's test prior."""
        found = []
        for record in self.ok():
            metrics = record["test_priors"].get(self.prior, {})
            value = metrics.get(metric)
            if value is None and metric in PRIOR_INDEPENDENT and record.get("train"):
                value = record["train"]["metrics"].get(metric)
            if value is not None:
                found.append(float(value))
        return found

    def status(self) -> str:
        """``ok`` when some cell finished, else ``failed`` if any failed, ``pending`` if any is pending, or
        ``skipped``."""
        if self.ok():
            return OK
        statuses = Counter(PENDING if r is None else r["status"] for r in self.records)
        for status in ("failed", PENDING):
            if statuses[status]:
                return status
        return "skipped"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean, and the sample standard deviation (n - 1) when there are at least two values."""
    mean = math.fsum(values) / len(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def groups(matrix: Matrix) -> list[Group]:
    """Every group, ordered by the row axes (outer first), the test prior, then the column axis."""
    table = matrix.table
    keyed = [*table["rows"], *([table["column_axis"]] if table["column_axis"] else [])]
    position = {name: [canonical(v) for v in values] for name, values in matrix.axis_values.items()}
    priors = matrix.priors()
    collected: dict[tuple[str, ...], list[dict[str, Any] | None]] = {}
    axes_of: dict[tuple[str, ...], dict[str, Any]] = {}
    for cell in matrix.document["cells"]:
        for prior in cell["test_priors"]:
            key = (*(canonical(cell["axes"][a]) for a in keyed), prior)
            collected.setdefault(key, []).append(matrix.records[cell["id"]])
            axes_of[key] = {a: cell["axes"][a] for a in keyed}

    def order(key: tuple[str, ...]) -> tuple[int, ...]:
        rows = [position[a].index(k) for a, k in zip(table["rows"], key, strict=False)]
        column = [position[keyed[-1]].index(key[-2])] if table["column_axis"] else []
        return (*rows, priors.index(key[-1]), *column)

    return [Group(axes_of[k], k[-1], tuple(collected[k])) for k in sorted(collected, key=order)]
