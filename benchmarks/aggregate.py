"""A results directory read back and grouped for tables and plots: one group per table row and column group.

A *group* is every cell that shares the row axes' values (and the column axis' value) under one test prior;
its cells differ only in the seed axis, and its statistics are the mean and standard deviation (n - 1) over
the cells that finished. Rows follow the suite's axis order and value order, then the order of test priors.

Selection (a suite's ``[select]``): the cells of a *selection group* differ in the seed and the tuned axes. Its
sweep cells (every tuned value on the first seeds) are scored on their validation metrics by :func:`choose`, a
pure function of the cells' records that the runner (to decide the phase-2 cells) and the report (to fill the
table) both use; the table row of a tuned group holds the chosen value's cells on every seed.
Imports neither torch nor vaezoo's models.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import UsageError
from vaezoo_bench.results import (
    MATRIX_NAME,
    MATRIX_SCHEMA,
    OK,
    PENDING,
    PRIOR_INDEPENDENT,
    cell_records,
    check_shape,
    read_cell,
    read_json,
)

#: How test priors are named in tables (the paper's "Test/Validation Prior Variance" column).
PRIOR_LABELS = {"standard": "1", "optimal": "f(K,β,δ)", "tuned": "tuned"}
METRIC_TITLES = {
    "mi": "MI",
    "mi_he": "MI (He et al.)",
    "neg_elbo": "-ELBO",
    "recon": "ReconE",
    "kl": "KL",
    "au": "AU",
    "iw_nll": "IW-NLL",
    "ppl_elbo": "PPL",
    "ppl_iw": "PPL (IW)",
    "separability": "separability",
    "test_prior_variance": "s²",
}

#: Decimals of a metric in tables (2 unless listed).
DIGITS = {"au": 1}
#: Metrics that count things: a single seed's value is printed as the whole number it is.
COUNTS = {"au"}

#: Metrics a selection constraint bounds from above: nats per example, lower is better.
CONSTRAINT_METRICS = ("neg_elbo", "recon", "kl")
#: The two MI estimators (docs/maths.md 5.2 and 5.2.1), He et al.'s first: the papers' MI.
MI_METRICS = ("mi_he", "mi")
RULES = ("max", "min")
#: States of a selection group: a value chosen, waiting for unsettled cells, or none qualified.
CHOSEN, WAITING, NO_CHOICE = "chosen", "waiting", "no choice"


# Mutation testing (tox -e mutants) covers the selection rule only: choose and what it calls.
# pragma: no mutate start
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


# pragma: no mutate end


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """The mean, and the sample standard deviation (n - 1) when there are at least two values."""
    mean = math.fsum(values) / len(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


# pragma: no mutate start
def nats(value: float) -> str:
    """A number of nats as text: ``1 nat``, ``2.5 nats``."""
    return f"{value:g} nat" + ("" if value == 1 else "s")


def metric_value(record: Mapping[str, Any], prior: str, metric: str) -> float | None:
    """``metric`` of a finished cell under test prior ``prior``; a metric that no test prior changes (MI, AU) is
    taken from the training run's own test metrics when the evaluation under ``prior`` did not report it."""
    value = record["test_priors"].get(prior, {}).get(metric)
    if value is None and metric in PRIOR_INDEPENDENT and record.get("train"):
        value = record["train"]["metrics"].get(metric)
    return None if value is None else float(value)


# pragma: no mutate end


def valid_metric(record: Mapping[str, Any] | None, metric: str) -> float | None:
    """``metric`` of a finished cell's validation line of the tested model (``cell.json`` ``valid``), or None."""
    if record is None or record["status"] != OK:
        return None
    value = ((record.get("valid") or {}).get("metrics") or {}).get(metric)
    return None if value is None else float(value)


# -- selection ---------------------------------------------------------------------------------------------------


@attrs.frozen
class Candidate:
    """One swept value (a combination of the tuned axes' values) of a selection group, scored on its sweep cells.

    ``status`` is ``ok`` when every sweep cell finished with the metrics the rule needs, else the first problem
    (``pending``, ``failed``, ``skipped``, or ``no METRIC`` for a run that did not record it); ``score`` is the
    mean of the rule's metric over the sweep cells, ``constraint`` the mean of the constraint's metric and
    ``excess`` its difference to the reference's; ``eligible`` when it has a score and meets the constraint."""

    values: dict[str, Any]
    cells: tuple[str, ...]
    status: str
    score: float | None = None
    constraint: float | None = None
    excess: float | None = None
    eligible: bool = False


@attrs.frozen
class Choice:
    """The outcome of a selection group's rule: ``state`` is CHOSEN (``chosen`` indexes ``candidates``), WAITING
    (``waiting_for`` lists its sweep or reference cells without a record yet) or NO_CHOICE (``problem`` is
    ``reference`` when the reference cells did not finish, ``unfinished`` when no value finished its sweep, or
    ``constraint`` when none met the constraint); ``reference`` is the reference's mean constraint metric."""

    group: dict[str, Any]
    rule: dict[str, Any]
    state: str
    candidates: tuple[Candidate, ...] = ()
    chosen: int | None = None
    reference: float | None = None
    waiting_for: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def values(self) -> dict[str, Any] | None:
        """The chosen tuned values (axis -> value label), or None."""
        return None if self.chosen is None else self.candidates[self.chosen].values

    def phase2_cells(self) -> tuple[str, ...]:
        """The chosen value's phase-2 cells (the seeds after the sweep); none without a choice."""
        return () if self.chosen is None else tuple(self.group["candidates"][self.chosen]["phase2"])

    def table_cells(self) -> tuple[str, ...]:
        """The cells of the chosen value on every seed (its sweep cells, then its phase-2 cells); none otherwise."""
        if self.chosen is None:
            return ()
        candidate = self.group["candidates"][self.chosen]
        return (*candidate["sweep"], *candidate["phase2"])


def _mean(values: Sequence[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else mean_std([float(v) for v in values])[0]


def _candidate(
    spec: Mapping[str, Any], rule: Mapping[str, Any], records: Mapping[str, Any], reference: float | None
) -> Candidate:
    """A swept value scored on its sweep cells' records (all settled), against the reference's mean."""
    within = rule.get("within")
    found = [records.get(i) for i in spec["sweep"]]
    not_ok = [PENDING if r is None else r["status"] for r in found if r is None or r["status"] != OK]
    base = {"values": dict(spec["values"]), "cells": tuple(spec["sweep"])}
    if not_ok:
        return Candidate(**base, status=not_ok[0])
    score = _mean([valid_metric(r, rule["metric"]) for r in found])
    if score is None:
        return Candidate(**base, status=f"no {rule['metric']}")
    if not within:
        return Candidate(**base, status=OK, score=score, eligible=True)
    constraint = _mean([valid_metric(r, within["metric"]) for r in found])
    if constraint is None or reference is None:
        return Candidate(**base, status=f"no {within['metric']}", score=score)
    excess = constraint - reference
    return Candidate(
        **base, status=OK, score=score, constraint=constraint, excess=excess, eligible=excess <= within["nats"]
    )


def choose(group: Mapping[str, Any], rule: Mapping[str, Any], records: Mapping[str, dict[str, Any] | None]) -> Choice:
    """Apply a selection ``rule`` (matrix.json ``selection.rules``) to a selection ``group`` (``selection.groups``)
    given the cells' records (cell id -> cell.json, None while pending).

    Waits until every sweep cell and reference cell has a record (ok, failed or skipped). A value whose sweep cells
    did not all finish, or lack the metric, is left out. With a constraint (``within``), a value is eligible when
    the mean of its validation ``within.metric`` over the sweep seeds exceeds the reference cells' mean by at most
    ``within.nats``. Among eligible values the largest (``max``) or smallest (``min``) mean validation ``metric``
    wins; a tie goes to the value listed first in the suite (exact equality). Deterministic: a pure function of the
    records."""
    base = {"group": dict(group), "rule": dict(rule)}
    sweep = [i for spec in group["candidates"] for i in spec["sweep"]]
    waiting = tuple(i for i in [*sweep, *group["reference"]] if records.get(i) is None)
    within = rule.get("within")
    reference = None
    if within:
        reference = _mean([valid_metric(records.get(i), within["metric"]) for i in group["reference"]])
    candidates = tuple(_candidate(spec, rule, records, reference) for spec in group["candidates"])
    if waiting:
        return Choice(**base, state=WAITING, candidates=candidates, reference=reference, waiting_for=waiting)
    if within and reference is None:
        return Choice(**base, state=NO_CHOICE, candidates=candidates, problem="reference")
    best: int | None = None
    for index, candidate in enumerate(candidates):
        if not candidate.eligible:
            continue
        current = None if best is None else candidates[best].score
        if current is None or (candidate.score > current if rule["rule"] == "max" else candidate.score < current):
            best = index
    if best is not None:
        return Choice(**base, state=CHOSEN, candidates=candidates, chosen=best, reference=reference)
    problem = "constraint" if any(c.score is not None for c in candidates) else "unfinished"
    return Choice(**base, state=NO_CHOICE, candidates=candidates, reference=reference, problem=problem)


# pragma: no mutate block
def selection_records(results_dir: Path, group: Mapping[str, Any], unsettled: frozenset[str] = frozenset()):
    """The records :func:`choose` reads for ``group``: its sweep and reference cells' cell.json, those in
    ``unsettled`` (cells a runner is about to run again) counted as pending."""
    ids = [*(i for spec in group["candidates"] for i in spec["sweep"]), *group["reference"]]
    return {i: None if i in unsettled else read_cell(results_dir, i) for i in ids}


@attrs.frozen
class Matrix:
    """matrix.json and every cell's cell.json (None while pending, or when damaged), in matrix order, with each
    selection group's choice (``choices``: group id -> Choice) and what is wrong with each damaged cell.json
    (``damaged``: cell id -> the problem)."""

    root: Path
    document: dict[str, Any]
    records: dict[str, dict[str, Any] | None]
    choices: dict[str, Choice] = attrs.field(factory=dict)
    damaged: dict[str, str] = attrs.field(factory=dict)

    @property
    def table(self) -> dict[str, Any]:
        return self.document["table"]

    @property
    def axis_values(self) -> dict[str, list[Any]]:
        return {axis["name"]: axis["values"] for axis in self.document["axes"]}

    @property
    def selection(self) -> dict[str, Any] | None:
        """matrix.json's ``selection`` (``rules`` and ``groups``), None for a suite without ``[select]``."""
        return self.document.get("selection")

    @property
    def tuned_axes(self) -> list[str]:
        """Every axis some selection rule tunes, in the rules' order."""
        rules = self.selection["rules"] if self.selection else []
        return [axis for rule in rules for axis in rule["axes"]]

    def header(self, axis: str) -> str:
        """An axis's column title: the suite's ``headers`` entry, else a conventional symbol, else its name."""
        conventional = {"regularizer.beta": "β", "regularizer.delta": "δ", "regularizer.K": "K", "train.seed": "seed"}
        conventional["noise.sigma"] = "σ"
        return self.table["headers"].get(axis, conventional.get(axis, axis))

    def describe(self, axis: str, value: Any) -> str:
        """A cell's value of ``axis`` with context: a variant's label alone, a parameter as ``header=value``."""
        return f"{self.header(axis)}={format_value(value)}" if "." in axis else format_value(value)

    def describe_all(self, axes: Mapping[str, Any]) -> str:
        return ", ".join(self.describe(axis, value) for axis, value in axes.items())

    def priors(self) -> list[str]:
        """The suite's test priors, then any others that variants asked for, in order of appearance."""
        order = list(self.document["test_priors"])
        for cell in self.document["cells"]:
            order += [p for p in cell["test_priors"] if p not in order]
        return order

    def planned_cells(self) -> list[dict[str, Any]]:
        """The cells that count for this matrix (matrix.json entries): every cell but the phase-2 cells of values
        that were not chosen (phase-2 cells of a group still waiting for its choice are not known yet)."""
        chosen = {i for choice in self.choices.values() for i in choice.table_cells()}
        return [cell for cell in self.document["cells"] if cell.get("phase") != 2 or cell["id"] in chosen]

    def explain(self, choice: Choice) -> str:
        """A selection group's outcome in a sentence (the runner prints it, the report lists it)."""
        rule, within = choice.rule, choice.rule.get("within")
        if choice.state == WAITING:
            shown = ", ".join(choice.waiting_for[:3]) + (" ..." if len(choice.waiting_for) > 3 else "")
            return f"waiting for {len(choice.waiting_for)} cell(s) of its sweep or reference: {shown}"
        if choice.problem == "reference":
            statuses = ", ".join((self.records.get(i) or {}).get("status", "?") for i in choice.group["reference"])
            return (
                f"no choice: the reference cell(s) {', '.join(choice.group['reference'])} ({statuses}) left no "
                f"validation {within['metric']}, so the constraint cannot be checked"
            )
        left_out = [c for c in choice.candidates if c.status != OK]
        left = "; left out: " + ", ".join(f"{self.describe_all(c.values)} ({c.status})" for c in left_out)
        left = left if left_out else ""
        limit = ""
        if within:
            title = METRIC_TITLES.get(within["metric"], within["metric"])
            limit = f"a valid {title} at most {nats(within['nats'])} above {self.describe_all(within['of'])}'s"
            limit += f" ({choice.reference:.2f})"
        if choice.state == CHOSEN:
            best = choice.candidates[choice.chosen]
            superlative = "largest" if rule["rule"] == "max" else "smallest"
            eligible = sum(c.eligible for c in choice.candidates)
            among = f" among the {eligible} with {limit}" if within else ""
            return (
                f"{self.describe_all(best.values)}: valid {METRIC_TITLES.get(rule['metric'], rule['metric'])} "
                f"{best.score:.3f}, the {superlative} of {len(choice.candidates)} values{among}{left}"
            )
        if choice.problem == "unfinished":
            return f"no choice: no value finished its sweep{left}"
        closest = min((c for c in choice.candidates if c.excess is not None), key=lambda c: c.excess)
        return (
            f"no choice: no value has {limit}; the closest, {self.describe_all(closest.values)}, is "
            f"{closest.excess:.2f} above{left}"
        )


def read_matrix_document(results_dir: Path) -> dict[str, Any] | None:
    """``results_dir``'s matrix.json, None when it has none; a UsageError for a path that is (or lies under) a file, a
    :class:`vaezoo_bench.results.DamagedFile` for a matrix.json that is not JSON or not of a matrix's shape."""
    for candidate in (results_dir, *results_dir.parents):
        if candidate.exists() and not candidate.is_dir():
            where = "is a file" if candidate == results_dir else f"lies under the file {str(candidate)!r}"
            raise UsageError(f"{str(results_dir)!r} {where}; name a results directory (the --out of vaezoo bench run)")
    path = results_dir / MATRIX_NAME
    document = read_json(path)
    return None if document is None else check_shape(path, document, MATRIX_SCHEMA, "a suite's matrix")


def load_matrix(results_dir: Path) -> Matrix:
    """matrix.json, every cell's record, and each selection group's choice, read from ``results_dir``.

    UsageErrors for a directory without a matrix.json and for a damaged one (it describes the whole suite); a
    damaged cell.json is warned about and its cell read as without a record (``Matrix.damaged`` names it)."""
    document = read_matrix_document(results_dir)
    if document is None:
        raise UsageError(f"{str(results_dir)!r} holds no {MATRIX_NAME}: it is not a results directory of a suite")
    records, damaged = cell_records(results_dir, [cell["id"] for cell in document["cells"]])
    choices = {}
    if document.get("selection"):
        rules = document["selection"]["rules"]
        for group in document["selection"]["groups"]:
            choices[group["id"]] = choose(group, rules[group["select"]], records)
    return Matrix(results_dir, document, records, choices, damaged)


@attrs.frozen
class Group:
    """The cells of one table row and column group (they differ only in the seed), under one test prior; for a
    tuned row, the chosen value's cells and the selection group's ``choice``."""

    axes: dict[str, Any]
    prior: str
    records: tuple[dict[str, Any] | None, ...]
    choice: Choice | None = None

    @property
    def planned(self) -> int:
        return len(self.records)

    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r is not None and r["status"] == OK]

    def values(self, metric: str) -> list[float]:
        """``metric`` of every finished cell that reports it under this group's test prior."""
        found = (metric_value(record, self.prior, metric) for record in self.ok())
        return [value for value in found if value is not None]

    def status(self) -> str:
        """``ok`` when some cell finished, else ``failed`` if any failed, ``pending`` if any is pending, or
        ``skipped``; a tuned row without a chosen value is ``pending`` (waiting for its sweep) or ``no choice``."""
        if self.choice is not None and self.choice.state != CHOSEN:
            return PENDING if self.choice.state == WAITING else NO_CHOICE
        if self.ok():
            return OK
        statuses = Counter(PENDING if r is None else r["status"] for r in self.records)
        for status in ("failed", PENDING):
            if statuses[status]:
                return status
        return "skipped"


def groups(matrix: Matrix) -> list[Group]:
    """Every group, ordered by the row axes (outer first), the test prior, then the column axis. A tuned row holds
    the chosen value's cells; while its group has no choice, as many pending placeholders as it has seeds."""
    table = matrix.table
    keyed = [*table["rows"], *([table["column_axis"]] if table["column_axis"] else [])]
    position = {name: [canonical(v) for v in values] for name, values in matrix.axis_values.items()}
    priors = matrix.priors()
    collected: dict[tuple[str, ...], list[dict[str, Any] | None]] = {}
    axes_of: dict[tuple[str, ...], dict[str, Any]] = {}
    choice_of: dict[tuple[str, ...], Choice | None] = {}
    for cell in matrix.document["cells"]:
        record = matrix.records[cell["id"]]
        choice = matrix.choices.get(cell["group"]) if cell.get("group") else None
        if choice is not None:
            if choice.state == CHOSEN:
                if cell["id"] not in choice.table_cells():
                    continue
            else:
                first = choice.group["candidates"][0]
                if cell["id"] not in (*first["sweep"], *first["phase2"]):
                    continue
                record = None
        for prior in cell["test_priors"]:
            key = (*(canonical(cell["axes"][a]) for a in keyed), prior)
            collected.setdefault(key, []).append(record)
            axes_of[key] = {a: cell["axes"][a] for a in keyed}
            choice_of[key] = choice

    def order(key: tuple[str, ...]) -> tuple[int, ...]:
        rows = [position[a].index(k) for a, k in zip(table["rows"], key, strict=False)]
        column = [position[keyed[-1]].index(key[-2])] if table["column_axis"] else []
        return (*rows, priors.index(key[-1]), *column)

    return [Group(axes_of[k], k[-1], tuple(collected[k]), choice_of[k]) for k in sorted(collected, key=order)]


def format_stats(mean: float, std: float | None, metric: str) -> str:
    """ "mean ± std" of ``metric`` at its table's decimals; the mean alone without a std (a count as a whole number)."""
    digits = 0 if std is None and metric in COUNTS else DIGITS.get(metric, 2)
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def format_entry(group: Group | None, metric: str) -> str:
    """The mean ± std over the group's finished seeds, "(k/n)" when some did not finish, or why none did."""
    if group is None:
        return "n/a"
    if group.status() != OK:
        return group.status()
    values = group.values(metric)
    if not values:
        return "n/a"
    text = format_stats(*mean_std(values), metric)
    return text + (f" ({len(values)}/{group.planned})" if len(values) < group.planned else "")


# -- MI against the reference row ----------------------------------------------------------------------------------


@attrs.frozen
class Comparison:
    """A row's MI against its reference row's: ``difference`` of the means, and the ``threshold`` below which the
    estimator cannot tell them apart (``basis`` says where it comes from)."""

    metric: str
    difference: float
    threshold: float
    basis: str

    @property
    def distinguishable(self) -> bool:
        return abs(self.difference) >= self.threshold


def reference_group(matrix: Matrix, table: Sequence[Group], group: Group) -> Group | None:
    """The row the suite's ``reference`` (say ``{method = "β-VAE"}``) makes of ``group``: the same values of every
    other axis (and column group), a finished one, under any test prior (MI does not depend on it). None for a
    reference row itself, a suite without a reference, or a reference that did not finish."""
    reference = matrix.table.get("reference")
    if not reference:
        return None
    wanted = {**group.axes, **{a: v for a, v in reference.items() if a in group.axes}}
    if canonical(wanted) == canonical(group.axes):
        return None
    return next((g for g in table if canonical(g.axes) == canonical(wanted) and g.status() == OK), None)


def he_spread(group: Group) -> tuple[float, int, int] | None:
    """The spread of ``mi_he`` on a collapsed encoder, √(D / 2n) nats (docs/maths.md 5.2.1), with D the latent
    dimension and n the test examples evaluated, as the cells recorded them: (spread, D, n), the largest over the
    group's finished cells; None when a cell did not record them."""
    found = []
    for record in group.ok():
        dim, examples = record.get("latent_dim"), (record.get("examples") or {}).get("test")
        if dim is None or examples is None:
            return None
        found.append((math.sqrt(dim / (2 * examples)), dim, examples))
    return max(found) if found else None


def compare_mi(row: Group, reference: Group, metric: str) -> Comparison | None:
    """The MI difference of ``row`` to ``reference`` and its threshold; None when it cannot be judged.

    ``mi_he``: the larger of the two rows' √(D / 2n), the standard deviation of the estimate on a collapsed encoder.
    ``mi``: that estimator is exactly 0 on a collapsed encoder (docs/maths.md 5.2), so it has no noise floor to use;
    the threshold is the spread over seeds of a difference of two runs, √(s_row² + s_reference²), which needs two
    finished seeds in each row."""
    mine, theirs = row.values(metric), reference.values(metric)
    if not mine or not theirs:
        return None
    difference = mean_std(mine)[0] - mean_std(theirs)[0]
    if metric == "mi_he":
        spreads = [he_spread(row), he_spread(reference)]
        if None in spreads:
            return None
        spread, dim, examples = max(s for s in spreads if s is not None)
        return Comparison(metric, difference, spread, f"{spread:.3f} nats for D = {dim}, n = {examples}")
    if metric == "mi" and len(mine) > 1 and len(theirs) > 1:
        threshold = math.hypot(statistics.stdev(mine), statistics.stdev(theirs))
        return Comparison(metric, difference, threshold, "√(s_row² + s_ref²) over seeds")
    return None


# -- the trade-off figure's data -----------------------------------------------------------------------------------


@attrs.frozen
class TradeoffPoint:
    """One point of the trade-off figure: the finished cells that share every axis value but the seed.

    ``panel`` is the column axis's value (None without one); ``series`` the variant axes' labels (one colour and
    marker each); ``label`` the parameter values; ``chosen`` is False for a swept value that is not its group's
    choice; ``stats`` maps each metric to its (mean, std over seeds or None); ``priors`` are the test priors
    -ELBO and IW-NLL were read under."""

    panel: Any
    series: str
    label: str
    chosen: bool
    seeds: int
    stats: dict[str, tuple[float, float | None]]
    priors: tuple[str, ...]


def tradeoff_points(matrix: Matrix, mi_metric: str = "mi_he", prior: str = "optimal") -> list[TradeoffPoint]:
    """Every point of the trade-off figure, in matrix order: MI (``mi_metric``), AU, -ELBO and IW-NLL (when
    computed) over seeds, -ELBO and IW-NLL under test prior ``prior``, or under the cell's first test prior when it
    was not evaluated under ``prior`` (the suites evaluate β-VAE under 1 alone: its f is 1)."""
    if mi_metric not in MI_METRICS:
        raise UsageError(f"MI estimator {mi_metric!r} is not one of {', '.join(MI_METRICS)}")
    seed, column = matrix.table["seed_axis"], matrix.table["column_axis"]
    table_cells = {i for choice in matrix.choices.values() for i in choice.table_cells()}
    members: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for cell in matrix.document["cells"]:
        record = matrix.records[cell["id"]]
        if record is not None and record["status"] == OK:
            axes = {a: v for a, v in cell["axes"].items() if a != seed}
            members.setdefault(canonical(axes), []).append((cell, record))
    points = []
    for found in members.values():
        cell = found[0][0]
        axes = {a: v for a, v in cell["axes"].items() if a not in (seed, column)}
        used = [prior if prior in record["test_priors"] else c["test_priors"][0] for c, record in found]
        stats = {}
        for metric in (mi_metric, "au", "neg_elbo", "iw_nll"):
            values = [metric_value(r, p, metric) for (_, r), p in zip(found, used, strict=True)]
            present = [v for v in values if v is not None]
            if present:
                stats[metric] = mean_std(present)
        points.append(
            TradeoffPoint(
                panel=cell["axes"][column] if column else None,
                series=", ".join(format_value(v) for a, v in axes.items() if "." not in a) or matrix.document["suite"],
                label=", ".join(matrix.describe(a, v) for a, v in axes.items() if "." in a),
                chosen=cell.get("group") is None or cell["id"] in table_cells,
                seeds=len(found),
                stats=stats,
                priors=tuple(dict.fromkeys(used)),
            )
        )
    return points
