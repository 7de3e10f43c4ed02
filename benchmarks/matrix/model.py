"""What a suite is: its axes and their values, its selections and profiles, the cells of its matrix, and how axes
and values are named in cell ids, in ``--only`` and in messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import UsageError

#: A partial assignment of axis values, as value ids per axis (``where``, ``exclude``, ``--only``).
Assignment = dict[str, frozenset[str]]


@attrs.frozen
class Variant:
    """One value of a variant axis: a labelled config fragment."""

    id: str
    label: str
    config: dict[str, Any]
    test_priors: tuple[str, ...] | None = None


@attrs.frozen
class Axis:
    """A named list of values: parameter values (``SECTION.PARAM``) or variants (a plain name)."""

    name: str
    values: tuple[Any, ...]

    @property
    def is_parameter(self) -> bool:
        return "." in self.name

    def label(self, value: Any) -> Any:
        """How ``value`` appears in results and tables: a variant's label, or the parameter value itself."""
        return value.label if isinstance(value, Variant) else value

    def slug(self, value: Any) -> str:
        return value.id if isinstance(value, Variant) else slugify(value)


@attrs.frozen
class Table:
    """How the report lays out the results (stored in matrix.json for the report).

    ``reference`` (axis -> value id) names the row each row's MI is compared with (the β-VAE row of the same β,
    say); ``tradeoff`` holds the trade-off figure's settings (``mi``, ``prior``) when the suite asks for it;
    ``published`` names the file of published figures (``benchmarks/published/NAME.toml``) the report sets beside
    each method's row."""

    layout: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    seed_axis: str | None
    column_axis: str | None
    x_axis: str | None
    headers: dict[str, str]
    reference: dict[str, str] | None = None
    tradeoff: dict[str, str] | None = None
    published: str | None = None


@attrs.frozen
class Within:
    """A selection constraint: a value is eligible when its mean validation ``metric`` is at most ``nats`` above
    the mean of the *reference* cells: the group's cells with the values ``of`` (axis -> value id) instead."""

    metric: str
    nats: float
    of: dict[str, str]


@attrs.frozen
class Selection:
    """A ``[select]`` table: ``axes`` are tuned for the cells that ``where`` matches (all cells when empty); the
    other cells do not vary along them (nor get their parameters).

    Two phases: every combination of the tuned values runs on the first ``sweep_seeds`` seeds of the seed axis
    (phase 1); each selection group's value is then chosen by ``rule`` (``max`` or ``min``) of the validation
    ``metric`` (mean over those seeds), among the values meeting ``within`` when given, and runs on the other seeds
    (phase 2). The choice is :func:`vaezoo_bench.aggregate.choose`."""

    axes: tuple[str, ...]
    where: Assignment
    rule: str
    metric: str
    split: str
    sweep_seeds: int
    within: Within | None


@attrs.frozen
class Profile:
    """A ``[profile.NAME]``: raw config overrides for a budget, and the axes whose values it replaces (by name)."""

    name: str
    config: dict[str, Any]
    axes: dict[str, Axis]


@attrs.frozen
class Suite:
    """A suite file, read and checked (:func:`vaezoo_bench.matrix.reading.load_suite`): its base config, its
    profiles, its axes in order, its selections and excluded cells, and the report's table."""

    name: str
    path: Path
    test_priors: tuple[str, ...]
    table: Table
    base: dict[str, Any]
    profiles: dict[str, Profile]
    axes: tuple[Axis, ...]
    default_profile: str | None
    selections: tuple[Selection, ...] = ()
    exclude: tuple[Assignment, ...] = ()


@attrs.frozen
class Cell:
    """One point of the matrix: a stable id, its axis values (labels), its merged raw config, its test priors, and
    each axis value's id (``value_ids``: axis name -> the id that appears in the cell id). A tuned axis that does
    not apply to the cell is absent from ``axes``, ``value_ids`` and the id."""

    id: str
    axes: dict[str, Any]
    raw: dict[str, Any]
    test_priors: tuple[str, ...]
    value_ids: dict[str, str] = attrs.field(factory=dict)
    #: For a tuned cell: the index of its Selection, its selection group's id, and its phase (1: the sweep, 2: a
    #: value on the other seeds, run only when that value is chosen).
    select: int | None = None
    group: str | None = None
    phase: int | None = None


def choose_profile(suite: Suite, name: str | None) -> Profile | None:
    """The named profile, else the suite's default profile, else None (the base config alone)."""
    name = name if name is not None else suite.default_profile
    if name is None:
        return None
    if name not in suite.profiles:
        choices = ", ".join(suite.profiles) or "(the suite defines none)"
        raise UsageError(f"suite {suite.name!r} has no profile {name!r}; choose one of: {choices}")
    return suite.profiles[name]


def slugify(value: Any) -> str:
    """A short filesystem-safe lowercase form of a value: ``0.8``, ``true``, ``nc-vae-gn``, ``256-256``."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list | tuple):
        text = "-".join(slugify(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^a-z0-9.+]+", "-", text.lower()).strip("-.")


def short_names(axes: Sequence[Axis]) -> dict[str, str]:
    """Each axis's name in cell ids: a parameter axis by its PARAM, or by SECTION.PARAM when that is ambiguous."""
    last = [a.name.rpartition(".")[2] for a in axes]
    return {a.name: short if last.count(short) == 1 else a.name for a, short in zip(axes, last, strict=True)}


def axis_ids(axes: Sequence[Axis], name: str, values: Sequence[Any], prefix: str) -> tuple[Axis, list[str]]:
    """The axis called ``name`` (its name in the suite or in cell ids) and the ids of ``values`` (written as in cell
    ids); a UsageError starting with ``prefix`` names the valid axes or values otherwise."""
    by_name = {a.name: a for a in axes}
    by_name.update({short: by_name[full] for full, short in short_names(axes).items()})
    axis = by_name.get(name)
    if axis is None:
        raise UsageError(f"{prefix}: unknown axis {name!r}; axes: {', '.join(a.name for a in axes)}")
    ids = [axis.slug(v) for v in axis.values]
    for value in values:
        if slugify(value) not in ids:
            raise UsageError(f"{prefix}: axis {axis.name!r} has no value {value!r}; values: {', '.join(ids)}")
    return axis, [slugify(value) for value in values]


def selection_where(selections: Sequence[Selection], index: int) -> str:
    """How messages name the ``index``-th selection of a suite: ``[select]``, or ``[[select]] N`` among several."""
    return "[select]" if len(selections) == 1 else f"[[select]] {index + 1}"
