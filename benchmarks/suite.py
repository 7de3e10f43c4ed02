"""Suite files (TOML) and their expansion into a matrix of cells.

A suite file has four tables (see ``benchmarks/README.md`` for a full example):

- ``[suite]``: ``name``; ``test_priors`` (each cell is evaluated under each: standard, optimal, tuned or a
  variance); the report's table settings ``layout`` (table1, table2 or generic), ``rows``, ``columns``,
  ``seed_axis``, ``column_axis``, ``x_axis``, ``headers``; and ``default_profile``.
- ``[base]``: a raw vaezoo config (sections data, encoder, decoder, prior, regularizer, noise, model, train,
  eval, as in :mod:`vaezoo.config.run_config`).
- ``[profile.NAME]``: raw config overrides for a budget (steps, sizes, evaluation subset ...), plus an optional
  ``axes`` table that replaces the values of some axes (fewer seeds, say).
- ``[axes]``, in order: a *parameter axis* is a ``"SECTION.PARAM"`` key with a list of values; a *variant axis*
  is a plain name with a list of labelled config fragments, each ``{label = "...", id = "...", test_priors =
  [...], SECTION = {...}, ...}`` (``id`` defaults to the label made filesystem-safe; ``test_priors`` replaces
  the suite's for cells of that variant).
- ``[select]`` (or several ``[[select]]``): tuned axes and the rule that chooses their value per *selection
  group* (the cells that share every other axis value but the seed) from the runs' validation metrics; see
  :class:`Selection`. ``[suite]`` may also hold ``exclude`` (cells left out of the product), ``reference`` (the
  row the report compares MI with) and ``tradeoff`` (the report's trade-off figure).

A cell's raw config is ``merge_raw(base, profile, variant fragments in axis order, parameter values)``.
vaezoo's ``merge_raw`` drops a component's parameters when a later layer names another component, so a variant
that sets ``regularizer = {name = "ncvae"}`` starts from ncvae's defaults, while a parameter axis such as
``regularizer.beta`` (applied last, all parameter axes as one layer) sets beta whatever the variant chose.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import SECTIONS, UsageError, check_test_prior, merge_raw
from vaezoo_bench.aggregate import CONSTRAINT_METRICS, MI_METRICS, RULES

LAYOUTS = ("table1", "table2", "generic")
DEFAULT_COLUMNS = {
    "table1": ("mi", "neg_elbo", "recon", "au", "iw_nll"),
    "table2": ("mi", "neg_elbo", "recon", "au", "ppl_elbo"),
    "generic": ("mi", "neg_elbo", "recon", "kl", "au", "iw_nll"),
}
DEFAULT_SEED_AXIS = "train.seed"
DEFAULT_X_AXIS = "regularizer.beta"
SUITE_KEYS = (
    "name",
    "test_priors",
    "default_profile",
    "layout",
    "rows",
    "columns",
    "seed_axis",
    "column_axis",
    "x_axis",
    "headers",
    "exclude",
    "reference",
    "tradeoff",
)
VARIANT_KEYS = ("label", "id", "test_priors")
SELECT_KEYS = ("axes", "where", "rule", "metric", "split", "sweep_seeds", "within")
WITHIN_KEYS = ("metric", "nats", "of")
TRADEOFF_KEYS = ("mi", "prior")
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
    say); ``tradeoff`` holds the trade-off figure's settings (``mi``, ``prior``) when the suite asks for it."""

    layout: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    seed_axis: str | None
    column_axis: str | None
    x_axis: str | None
    headers: dict[str, str]
    reference: dict[str, str] | None = None
    tradeoff: dict[str, str] | None = None


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
    name: str
    config: dict[str, Any]
    axes: dict[str, tuple[Any, ...]]


@attrs.frozen
class Suite:
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


def slugify(value: Any) -> str:
    """A short filesystem-safe lowercase form of a value: ``0.8``, ``true``, ``nc-vae-gn``, ``256-256``."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list | tuple):
        text = "-".join(slugify(v) for v in value)
    else:
        text = str(value)
    return re.sub(r"[^a-z0-9.+]+", "-", text.lower()).strip("-.")


class _Reader:
    """Checks the shape of a suite file, raising UsageErrors that name the file and the bad entry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> UsageError:
        return UsageError(f"suite {str(self.path)!r}: {message}")

    def table(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(f"{where} must be a table, got {value!r}")
        return dict(value)

    def raw_config(self, value: Any, where: str) -> dict[str, Any]:
        raw = self.table(value, where)
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise self.fail(f"{where} has unknown config section {unknown[0]!r}; valid sections: {', '.join(SECTIONS)}")
        for section, values in raw.items():
            self.table(values, f"{where}.{section}")
        return raw

    def names(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)

    def test_priors(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where} must be a non-empty list, got {value!r}")
        try:
            return tuple(check_test_prior(str(v)) for v in value)
        except UsageError as error:
            raise self.fail(f"{where}: {error}") from None

    def flat(self, value: Any, where: str) -> dict[str, Any]:
        """A table keyed by axis names; unquoted dotted keys (nested tables) are flattened one level."""
        flat: dict[str, Any] = {}
        for name, values in self.table(value, where).items():
            if isinstance(values, Mapping):
                flat.update({f"{name}.{param}": v for param, v in values.items()})
            else:
                flat[name] = values
        return flat

    def axis_values(self, value: Any) -> dict[str, list[Any]]:
        """``[axes]`` as ``{name: values}``; unquoted dotted keys (nested tables) are flattened one level."""
        flat = self.flat(value, "[axes]")
        for name, values in flat.items():
            if not isinstance(values, list) or not values:
                raise self.fail(f"axis {name!r} must be a non-empty list of values, got {values!r}")
        return flat

    def axis(self, name: str, values: list[Any]) -> Axis:
        if "." in name:
            section, _, param = name.partition(".")
            if section not in SECTIONS or not param or "." in param:
                raise self.fail(f"parameter axis {name!r} must be SECTION.PARAM with SECTION one of {SECTIONS}")
            axis = Axis(name, tuple(values))
        else:
            axis = Axis(name, tuple(self.variant(name, v) for v in values))
        slugs = [axis.slug(v) for v in axis.values]
        for slug, value in zip(slugs, axis.values, strict=True):
            if not slug:
                raise self.fail(f"axis {name!r}: value {axis.label(value)!r} has no filesystem-safe id; give it an id")
        duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
        if duplicates:
            raise self.fail(f"axis {name!r} has several values with the id {duplicates[0]!r}")
        return axis

    def variant(self, axis: str, value: Any) -> Variant:
        where = f"a value of axis {axis!r}"
        if not isinstance(value, Mapping):
            raise self.fail(f"{where} must be a table such as {{label = ..., regularizer = {{...}}}}, got {value!r}")
        fragment = dict(value)
        unknown = sorted(set(fragment) - set(SECTIONS) - set(VARIANT_KEYS))
        if unknown:
            raise self.fail(f"{where} has unknown key {unknown[0]!r}; valid keys: {', '.join(VARIANT_KEYS + SECTIONS)}")
        label = fragment.pop("label", None)
        variant_id = fragment.pop("id", None)
        if label is None and variant_id is None:
            raise self.fail(f"{where} needs a label or an id")
        priors = fragment.pop("test_priors", None)
        return Variant(
            id=slugify(variant_id if variant_id is not None else label),
            label=str(label if label is not None else variant_id),
            config=self.raw_config(fragment, f"variant {label or variant_id!r}"),
            test_priors=None if priors is None else self.test_priors(priors, f"test_priors of {label!r}"),
        )

    def assignment(self, value: Any, where: str, axes: Sequence[Axis]) -> Assignment:
        """``{AXIS = ID or [ID, ...]}`` (``where``, ``exclude``) as value ids per axis; axes by their name in the suite
        or in cell ids, values as in cell ids (``--only``'s rules)."""
        assignment: Assignment = {}
        for name, values in self.flat(value, where).items():
            listed = values if isinstance(values, list) else [values]
            if not listed:
                raise self.fail(f"{where}: axis {name!r} needs at least one value")
            axis, ids = axis_ids(axes, name, listed, f"suite {str(self.path)!r}: {where}")
            assignment[axis.name] = frozenset(ids)
        return assignment

    def single(self, value: Any, where: str, axes: Sequence[Axis]) -> dict[str, str]:
        """``{AXIS = ID, ...}`` (``within.of``, ``reference``): one value per axis, at least one axis."""
        table = self.flat(value, where)
        if not table:
            raise self.fail(f'{where} must name at least one axis value, such as {{method = "vae"}}')
        for name, values in table.items():
            if isinstance(values, list):
                raise self.fail(f"{where}: axis {name!r} must have one value, got {values!r}")
        return {axis: next(iter(ids)) for axis, ids in self.assignment(table, where, axes).items()}

    def selection(self, value: Any, where: str, axes: Sequence[Axis]) -> Selection:
        spec = self.table(value, where)
        unknown = sorted(set(spec) - set(SELECT_KEYS))
        if unknown:
            raise self.fail(f"{where} has unknown key {unknown[0]!r}; valid keys: {', '.join(SELECT_KEYS)}")
        names = self.names(spec.get("axes"), f"{where} axes")
        if not names:
            raise self.fail(f"{where} axes must name at least one axis to tune")
        tuned = tuple(axis_ids(axes, name, [], f"suite {str(self.path)!r}: {where} axes")[0].name for name in names)
        rule = spec.get("rule", "max")
        if rule not in RULES:
            raise self.fail(f"{where} rule {rule!r} is not one of {', '.join(RULES)}")
        metric = spec.get("metric")
        if not isinstance(metric, str) or not metric:  # whether a plugin registered it is checked by the runner
            raise self.fail(f"{where} metric must name a validation metric (vaezoo list metric), got {metric!r}")
        split = spec.get("split", "valid")
        if split != "valid":
            raise self.fail(
                f"{where} split {split!r}: a value is chosen on the validation split only (choosing on the test split "
                'would bias the test figures); use split = "valid"'
            )
        seeds = spec.get("sweep_seeds", 1)
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise self.fail(f"{where} sweep_seeds must be a whole number of seeds, at least 1, got {seeds!r}")
        within = self.within(spec["within"], f"{where} within", axes) if "within" in spec else None
        return Selection(
            axes=tuned,
            where=self.assignment(spec.get("where", {}), f"{where} where", axes),
            rule=rule,
            metric=metric,
            split=split,
            sweep_seeds=seeds,
            within=within,
        )

    def within(self, value: Any, where: str, axes: Sequence[Axis]) -> Within:
        """A selection's constraint: the chosen value's ``metric`` within ``nats`` of the cell named by ``of``."""
        table = self.table(value, where)
        unknown = sorted(set(table) - set(WITHIN_KEYS))
        missing = [key for key in WITHIN_KEYS if key not in table]
        if unknown or missing:
            bad = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
            raise self.fail(f"{where} has {bad}; it needs {', '.join(WITHIN_KEYS)}")
        if table["metric"] not in CONSTRAINT_METRICS:
            raise self.fail(
                f"{where} metric {table['metric']!r} is not one a constraint bounds (nats, lower is "
                f"better); choose from: {', '.join(CONSTRAINT_METRICS)}"
            )
        nats = table["nats"]
        if isinstance(nats, bool) or not isinstance(nats, int | float) or nats < 0:
            raise self.fail(f"{where} nats must be a number of nats, at least 0, got {nats!r}")
        return Within(metric=table["metric"], nats=float(nats), of=self.single(table["of"], f"{where}.of", axes))


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


def matches(value_ids: Mapping[str, str], assignment: Mapping[str, frozenset[str]]) -> bool:
    """Whether a cell (its ``value_ids``) has one of the assigned ids on every axis of ``assignment``; a cell
    without one of those axes (an untuned cell and a tuned axis) does not match."""
    return all(value_ids.get(axis) in ids for axis, ids in assignment.items())


def _axes(reader: _Reader, document: dict[str, Any]) -> tuple[Axis, ...]:
    """The suite's [axes], at least one: without any, its one cell would have no id and no directory of its own."""
    axes = tuple(reader.axis(n, v) for n, v in reader.axis_values(document.get("axes", {})).items())
    if not axes:
        raise reader.fail("has no [axes]: a suite is a matrix over at least one axis (one run is vaezoo run --config)")
    return axes


#: The built-in suites, shipped with the runner.
BUILT_IN_SUITES = Path(__file__).resolve().parent / "suites"


def built_in_suites() -> list[str]:
    return sorted(path.stem for path in BUILT_IN_SUITES.glob("*.toml"))


def suite_file(name_or_path: str) -> Path:
    """The file of a suite named on the command line: a path as given when it exists or looks like a path (it has
    a suffix or a directory), else the built-in suite of that name; neither is a UsageError listing the built-ins."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or path.parent != Path("."):
        return path
    built_in = BUILT_IN_SUITES / f"{name_or_path}.toml"
    if built_in.is_file():
        return built_in
    raise UsageError(
        f"suite {name_or_path!r} is neither a file nor a built-in suite; built-in suites: "
        f"{', '.join(built_in_suites())}"
    )


def load_suite(path: Path) -> Suite:
    """Read and check a suite file; every problem is a UsageError naming the file and the entry."""
    reader = _Reader(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise reader.fail(f"cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise reader.fail(f"malformed TOML: {error}") from None
    unknown = sorted(set(document) - {"suite", "base", "profile", "axes", "select"})
    if unknown:
        raise reader.fail(f"unknown table [{unknown[0]}]; valid tables: suite, base, profile, axes, select")
    meta = reader.table(document.get("suite", {}), "[suite]")
    unknown = sorted(set(meta) - set(SUITE_KEYS))
    if unknown:
        raise reader.fail(f"[suite] has unknown key {unknown[0]!r}; valid keys: {', '.join(SUITE_KEYS)}")
    axes = _axes(reader, document)
    profiles = {
        name: _profile(reader, name, table)
        for name, table in reader.table(document.get("profile", {}), "[profile]").items()
    }
    for profile in profiles.values():
        for name, values in profile.axes.items():
            replaced = next((a for a in axes if a.name == name), None)
            if replaced is None:
                raise reader.fail(f"profile {profile.name!r} sets values of {name!r}, which is not an axis")
            reader.axis(name, list(values))
    default_profile = meta.get("default_profile")
    if default_profile is not None and default_profile not in profiles:
        raise reader.fail(f"default_profile {default_profile!r} is not a [profile.NAME] table")
    # Value ids in [select], exclude and reference may be those of any profile's values of an axis.
    every = _every_value(reader, axes, profiles)
    selections = _selections(reader, document.get("select", []), every)
    table = _table(reader, meta, [a.name for a in axes], selections, every)
    _check_assignments(reader, selections, table)
    exclude = meta.get("exclude", [])
    if not isinstance(exclude, list):
        raise reader.fail(f'[suite] exclude must be a list of tables such as {{method = "vae"}}, got {exclude!r}')
    return Suite(
        name=str(meta.get("name", path.stem)),
        path=path,
        test_priors=reader.test_priors(meta.get("test_priors", ["standard"]), "[suite] test_priors"),
        table=table,
        base=reader.raw_config(document.get("base", {}), "[base]"),
        profiles=profiles,
        axes=axes,
        default_profile=default_profile,
        selections=selections,
        exclude=tuple(reader.assignment(e, f"[suite] exclude[{i}]", every) for i, e in enumerate(exclude)),
    )


def _every_value(reader: _Reader, axes: Sequence[Axis], profiles: Mapping[str, Profile]) -> tuple[Axis, ...]:
    """The suite's axes with every profile's replacement values added (by id, in order of appearance)."""
    merged = []
    for axis in axes:
        values, seen = list(axis.values), {axis.slug(v) for v in axis.values}
        for profile in profiles.values():
            for value in reader.axis(axis.name, list(profile.axes.get(axis.name, ()))).values:
                if axis.slug(value) not in seen:
                    values.append(value)
                    seen.add(axis.slug(value))
        merged.append(Axis(axis.name, tuple(values)))
    return tuple(merged)


def _selections(reader: _Reader, value: Any, axes: Sequence[Axis]) -> tuple[Selection, ...]:
    """``[select]`` (one table) or ``[[select]]`` (several) as Selections."""
    if isinstance(value, Mapping):
        return (reader.selection(value, "[select]", axes),)
    if not isinstance(value, list):
        raise reader.fail(f"[select] must be a table or an array of tables, got {value!r}")
    return tuple(reader.selection(v, f"[[select]] {i + 1}", axes) for i, v in enumerate(value))


def selection_where(selections: Sequence[Selection], index: int) -> str:
    """How messages name the ``index``-th selection of a suite: ``[select]``, or ``[[select]] N`` among several."""
    return "[select]" if len(selections) == 1 else f"[[select]] {index + 1}"


def _check_tuned(reader: _Reader, selections: Sequence[Selection], roles: Mapping[str, str | None]) -> list[str]:
    """The tuned axes, each tuned once and none the seed, column or x axis (``roles``: role -> axis)."""
    tuned: list[str] = []
    for index, selection in enumerate(selections):
        where = selection_where(selections, index)
        for axis in selection.axes:
            role = next((r for r, name in roles.items() if name == axis), None)
            if role is not None:
                raise reader.fail(f"{where} cannot tune {axis!r}: it is the suite's {role}")
            if axis in tuned:
                raise reader.fail(f"{where} tunes {axis!r}, which another [[select]] tunes already")
            tuned.append(axis)
    return tuned


def _check_assignments(reader: _Reader, selections: Sequence[Selection], table: Table) -> None:
    """``where``, ``within.of`` and the suite's ``reference`` name neither tuned axes nor the seed axis."""
    fixed = [*(a for s in selections for a in s.axes), *([table.seed_axis] if table.seed_axis else [])]
    named = [("[suite] reference", table.reference or {})]
    for index, selection in enumerate(selections):
        named += [(f"{selection_where(selections, index)} where", selection.where)]
        named += [(f"{selection_where(selections, index)} within.of", selection.within.of)] if selection.within else []
    for where, assignment in named:
        bad = next((axis for axis in assignment if axis in fixed), None)
        if bad is not None:
            raise reader.fail(f"{where} names {bad!r}; it may name neither a tuned axis nor the seed axis")


def _profile(reader: _Reader, name: str, table: Any) -> Profile:
    config = reader.table(table, f"[profile.{name}]")
    axes = reader.axis_values(config.pop("axes", {}))
    return Profile(name, reader.raw_config(config, f"[profile.{name}]"), {k: tuple(v) for k, v in axes.items()})


def _table(
    reader: _Reader, meta: dict[str, Any], axis_names: list[str], selections: Sequence[Selection], axes: Sequence[Axis]
) -> Table:
    layout = meta.get("layout", "generic")
    if layout not in LAYOUTS:
        raise reader.fail(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")

    def known(key: str, default: str | None) -> str | None:
        name = meta.get(key, default if default in axis_names else None)
        if name is not None and name not in axis_names:
            raise reader.fail(f"{key} {name!r} is not an axis; axes: {', '.join(axis_names)}")
        return name

    seed_axis = known("seed_axis", DEFAULT_SEED_AXIS)
    column_axis = known("column_axis", None)
    x_axis = known("x_axis", DEFAULT_X_AXIS)
    tuned = _check_tuned(reader, selections, {"seed_axis": seed_axis, "column_axis": column_axis, "x_axis": x_axis})
    default_rows = [n for n in axis_names if n not in (seed_axis, column_axis, *tuned)]
    rows = reader.names(meta.get("rows", default_rows), "[suite] rows")
    if sorted(rows) != sorted(default_rows):
        raise reader.fail(
            f"rows {list(rows)} must name every axis but the seed, column and tuned axes once: "
            f"{', '.join(default_rows)}"
        )
    headers = reader.table(meta.get("headers", {}), "[suite] headers")
    columns = reader.names(meta.get("columns", list(DEFAULT_COLUMNS[layout])), "[suite] columns")
    return Table(
        layout=layout,
        rows=rows,
        columns=columns,
        seed_axis=seed_axis,
        column_axis=column_axis,
        x_axis=x_axis,
        headers={str(k): str(v) for k, v in headers.items()},
        reference=None if "reference" not in meta else reader.single(meta["reference"], "[suite] reference", axes),
        tradeoff=None if "tradeoff" not in meta else _tradeoff(reader, meta["tradeoff"]),
    )


def _tradeoff(reader: _Reader, value: Any) -> dict[str, str]:
    """``[suite] tradeoff = {mi = "mi_he", prior = "optimal"}``: the trade-off figure's MI estimator and test prior."""
    table = reader.table(value, "[suite] tradeoff")
    unknown = sorted(set(table) - set(TRADEOFF_KEYS))
    if unknown:
        raise reader.fail(f"[suite] tradeoff has unknown key {unknown[0]!r}; valid keys: {', '.join(TRADEOFF_KEYS)}")
    mi = table.get("mi", MI_METRICS[0])
    if mi not in MI_METRICS:
        raise reader.fail(f"[suite] tradeoff mi {mi!r} is not an MI estimator; choose from: {', '.join(MI_METRICS)}")
    prior = reader.test_priors([table.get("prior", "optimal")], "[suite] tradeoff prior")[0]
    return {"mi": mi, "prior": prior}


def choose_profile(suite: Suite, name: str | None) -> Profile | None:
    """The named profile, else the suite's default profile, else None (the base config alone)."""
    name = name if name is not None else suite.default_profile
    if name is None:
        return None
    if name not in suite.profiles:
        choices = ", ".join(suite.profiles) or "(the suite defines none)"
        raise UsageError(f"suite {suite.name!r} has no profile {name!r}; choose one of: {choices}")
    return suite.profiles[name]


def short_names(axes: Sequence[Axis]) -> dict[str, str]:
    """Each axis's name in cell ids: a parameter axis by its PARAM, or by SECTION.PARAM when that is ambiguous."""
    last = [a.name.rpartition(".")[2] for a in axes]
    return {a.name: short if last.count(short) == 1 else a.name for a, short in zip(axes, last, strict=True)}


def effective_axes(suite: Suite, profile: Profile | None) -> tuple[Axis, ...]:
    """The suite's axes with the profile's replacement values."""
    replaced = profile.axes if profile is not None else {}
    reader = _Reader(suite.path)
    return tuple(reader.axis(a.name, list(replaced[a.name])) if a.name in replaced else a for a in suite.axes)


def expand(suite: Suite, profile: Profile | None) -> list[Cell]:
    """The product of the axes, in axis order (the last axis varies fastest), as cells with unique ids.

    Cells that an ``exclude`` entry matches are left out. A tuned axis varies only for the cells its selection's
    ``where`` matches; it is absent from the others. A tuned cell is in phase 1 when its seed is among the first
    ``sweep_seeds`` values of the seed axis (or the suite has no seed axis), else in phase 2."""
    axes = effective_axes(suite, profile)
    names = short_names(axes)
    layers = [suite.base] + ([profile.config] if profile is not None else [])
    tuned_by = {axis: index for index, selection in enumerate(suite.selections) for axis in selection.axes}
    first = {a.name: a.slug(a.values[0]) for a in axes}
    seed_axis = suite.table.seed_axis
    seeds = [a for a in axes if a.name == seed_axis]
    seed_ids = [seeds[0].slug(v) for v in seeds[0].values] if seeds else []
    cells = []
    for combination in itertools.product(*(a.values for a in axes)):
        ids = {a.name: a.slug(v) for a, v in zip(axes, combination, strict=True)}
        index = _selection_of(suite, ids)
        dropped = [axis for axis, i in tuned_by.items() if i != index]
        if any(ids[axis] != first[axis] for axis in dropped):
            continue
        kept = [(a, v) for a, v in zip(axes, combination, strict=True) if a.name not in dropped]
        value_ids = {a.name: a.slug(v) for a, v in kept}
        if any(matches(value_ids, rule) for rule in suite.exclude):
            continue
        variants = [v for _, v in kept if isinstance(v, Variant)]
        priors = next((v.test_priors for v in reversed(variants) if v.test_priors is not None), suite.test_priors)
        group, phase = _tuning_group(suite, index, kept, names, seed_ids)
        cells.append(
            Cell(
                id="_".join(f"{names[a.name]}={a.slug(v)}" for a, v in kept),
                axes={a.name: a.label(v) for a, v in kept},
                raw=merge_raw(*layers, *(v.config for v in variants), _axis_parameters(kept)),
                test_priors=priors,
                value_ids=value_ids,
                select=index,
                group=group,
                phase=phase,
            )
        )
    return cells


def _axis_parameters(kept: Sequence[tuple[Axis, Any]]) -> dict[str, dict[str, Any]]:
    """The config sections the parameter axes of a cell set: ``{"regularizer": {"beta": 0.5}}``."""
    parameters: dict[str, dict[str, Any]] = {}
    for axis, value in kept:
        if axis.is_parameter:
            section, _, param = axis.name.partition(".")
            parameters.setdefault(section, {})[param] = value
    return parameters


def _tuning_group(
    suite: Suite, index: int | None, kept: Sequence[tuple[Axis, Any]], names: Mapping[str, str], seed_ids: list[str]
) -> tuple[str | None, int | None]:
    """A tuned cell's group (the id of its values but the tuned axes' and the seed's) and phase (1 while its seed
    is among the sweep's); (None, None) for a cell no selection tunes."""
    if index is None:
        return None, None
    selection, seed_axis = suite.selections[index], suite.table.seed_axis
    fixed = (*selection.axes, seed_axis)
    group = "_".join(f"{names[a.name]}={a.slug(v)}" for a, v in kept if a.name not in fixed)
    seed = next((a.slug(v) for a, v in kept if a.name == seed_axis), None)
    phase = 1 if seed_axis is None or seed in seed_ids[: selection.sweep_seeds] else 2
    return group, phase


def _selection_of(suite: Suite, value_ids: Mapping[str, str]) -> int | None:
    """The index of the selection whose ``where`` matches a combination of values, if any (at most one may)."""
    found = [i for i, selection in enumerate(suite.selections) if matches(value_ids, selection.where)]
    if len(found) > 1:
        shown = ", ".join(f"{axis}={value}" for axis, value in value_ids.items())
        raise UsageError(
            f"suite {str(suite.path)!r}: the cell {shown} is matched by the where of [[select]] {found[0] + 1} and "
            f"{found[1] + 1}; a cell may be tuned by one selection only"
        )
    return found[0] if found else None


def selection_groups(suite: Suite, profile: Profile | None, cells: Sequence[Cell]) -> list[dict[str, Any]]:
    """Each selection group of the expanded ``cells`` (matrix.json's ``selection.groups``), in matrix order.

    A group is ``{"id", "select" (its rule's index), "axes" (its values but the tuned and seed axes), "candidates",
    "reference"}``; each candidate (a combination of tuned values, in the suite's value order) is ``{"values":
    {axis: label}, "sweep": [phase-1 cell ids], "phase2": [phase-2 cell ids]}``; ``reference`` lists the cells the
    rule's constraint compares with (the group's values with ``within.of`` instead, on the sweep seeds). A missing
    or tuned reference cell is a UsageError."""
    axes = effective_axes(suite, profile)
    order = {a.name: [a.slug(v) for v in a.values] for a in axes}
    seed_axis = suite.table.seed_axis
    groups: dict[str, dict[str, Any]] = {}
    candidates: dict[str, dict[tuple[str, ...], dict[str, Any]]] = {}
    for cell in cells:
        if cell.group is None or cell.select is None:
            continue
        tuned = suite.selections[cell.select].axes
        fixed = (*tuned, seed_axis)
        group = groups.setdefault(
            cell.group,
            {
                "id": cell.group,
                "select": cell.select,
                "axes": {a: v for a, v in cell.axes.items() if a not in fixed},
                "value_ids": {a: v for a, v in cell.value_ids.items() if a not in fixed},
                "reference": [],
            },
        )
        key = tuple(cell.value_ids[a] for a in tuned)
        spec = candidates.setdefault(group["id"], {}).setdefault(
            key, {"values": {a: cell.axes[a] for a in tuned}, "sweep": [], "phase2": []}
        )
        spec["sweep" if cell.phase == 1 else "phase2"].append(cell.id)
    out = []
    for group in groups.values():
        selection = suite.selections[group["select"]]
        ranked = sorted(
            candidates[group["id"]].items(),
            key=lambda item: [order[a].index(i) for a, i in zip(selection.axes, item[0], strict=True)],
        )
        group["candidates"] = [spec for _, spec in ranked]
        if selection.within is not None:
            group["reference"] = _reference_cells(suite, group, selection.within, ranked[0][1]["sweep"], cells)
        del group["value_ids"]
        out.append(group)
    return out


def _reference_cells(
    suite: Suite, group: dict[str, Any], within: Within, sweep: list[str], cells: Sequence[Cell]
) -> list[str]:
    """The ids of the cells a group's constraint compares with: its values with ``within.of`` instead, on each of
    the sweep's seeds. A reference that is missing or tuned itself is a UsageError."""
    seed_axis = suite.table.seed_axis
    by_values = {frozenset(c.value_ids.items()): c for c in cells}
    references = []
    for seed in _sweep_seeds(sweep, cells, seed_axis):
        wanted = {**group["value_ids"], **within.of, **({seed_axis: seed} if seed_axis else {})}
        reference = by_values.get(frozenset(wanted.items()))
        if reference is None:
            # cells with those values that vary along a tuned axis as well are tuned; none at all: missing
            tuned = any(wanted.items() <= c.value_ids.items() for c in cells)
            shown = ", ".join(f"{a}={i}" for a, i in wanted.items())
            problem = "is tuned itself" if tuned else "is not in the matrix"
            raise UsageError(
                f"suite {str(suite.path)!r}: the reference of selection group {group['id']!r}, the cell "
                f"{shown}, {problem}; within.of must name untuned cells of the matrix"
            )
        references.append(reference.id)
    return references


def _sweep_seeds(sweep: Sequence[str], cells: Sequence[Cell], seed_axis: str | None) -> list[str | None]:
    """The seed ids of a candidate's sweep cells (one None without a seed axis)."""
    if seed_axis is None:
        return [None]
    by_id = {c.id: c for c in cells}
    return [by_id[i].value_ids[seed_axis] for i in sweep]


def parse_selection(expressions: Sequence[str], axes: Sequence[Axis]) -> dict[str, frozenset[str]]:
    """``AXIS=ID[,ID...]`` expressions (``--only``) as ``{axis name: allowed value ids}``.

    ``AXIS`` is an axis's name in the suite (``network``, ``regularizer.beta``) or in cell ids (``beta``); each
    ``ID`` is a value's id as it appears in cell ids (a variant's id, or a parameter value such as ``0.8``).
    Several expressions for one axis allow the union of their values. A malformed expression, an unknown axis or
    an unknown value is a UsageError naming the valid choices.
    """
    allowed: dict[str, set[str]] = {}
    for expression in expressions:
        name, equals, values = expression.partition("=")
        if not equals or not name or not values:
            raise UsageError(f"--only {expression!r} must be AXIS=VALUE[,VALUE...], e.g. network=mlp")
        axis, ids = axis_ids(axes, name, values.split(","), f"--only {expression!r}")
        allowed.setdefault(axis.name, set()).update(ids)
    return {name: frozenset(ids) for name, ids in allowed.items()}


def select(cells: Sequence[Cell], allowed: Mapping[str, frozenset[str]]) -> list[Cell]:
    """The cells whose value of every restricted axis is among its allowed ids, in matrix order (a cell without a
    restricted axis, an untuned cell and a tuned axis, is left out)."""
    return [c for c in cells if matches(c.value_ids, allowed)]


def matrix_document(suite: Suite, profile: Profile | None, cells: Sequence[Cell]) -> dict[str, Any]:
    """What the report needs to know about a matrix (written as matrix.json): the table settings, the axes, every
    cell (a tuned cell with its ``group`` and ``phase``; the phase-2 cells of every value, of which only the chosen
    value's run), and with ``[select]`` the rules and selection groups (``selection``)."""
    axes = effective_axes(suite, profile)
    document = {
        "suite": suite.name,
        "suite_file": str(suite.path),
        "profile": profile.name if profile is not None else None,
        "test_priors": list(suite.test_priors),
        "table": {
            "layout": suite.table.layout,
            "rows": list(suite.table.rows),
            "columns": list(suite.table.columns),
            "seed_axis": suite.table.seed_axis,
            "column_axis": suite.table.column_axis,
            "x_axis": suite.table.x_axis,
            "headers": suite.table.headers,
        },
        "axes": [{"name": a.name, "values": [a.label(v) for v in a.values]} for a in axes],
        "cells": [_cell_entry(c) for c in cells],
    }
    if suite.table.reference is not None:
        document["table"]["reference"] = _labels(axes, suite.table.reference)
    if suite.table.tradeoff is not None:
        document["table"]["tradeoff"] = dict(suite.table.tradeoff)
    if suite.selections:
        document["selection"] = {
            "rules": [_rule_entry(s, axes) for s in suite.selections],
            "groups": selection_groups(suite, profile, cells),
        }
    return document


def _cell_entry(cell: Cell) -> dict[str, Any]:
    entry = {"id": cell.id, "axes": cell.axes, "test_priors": list(cell.test_priors)}
    if cell.group is not None:
        entry.update(group=cell.group, phase=cell.phase)
    return entry


def _labels(axes: Sequence[Axis], ids: Mapping[str, str]) -> dict[str, Any]:
    """Axis -> the label of the value with that id (the id itself when the profile dropped the value)."""
    by_name = {a.name: a for a in axes}
    return {
        name: next((by_name[name].label(v) for v in by_name[name].values if by_name[name].slug(v) == i), i)
        for name, i in ids.items()
    }


def _rule_entry(selection: Selection, axes: Sequence[Axis]) -> dict[str, Any]:
    within = selection.within
    return {
        "axes": list(selection.axes),
        "where": {axis: sorted(ids) for axis, ids in selection.where.items()},
        "rule": selection.rule,
        "metric": selection.metric,
        "split": selection.split,
        "sweep_seeds": selection.sweep_seeds,
        "within": None
        if within is None
        else {"metric": within.metric, "nats": within.nats, "of": _labels(axes, within.of)},
    }
