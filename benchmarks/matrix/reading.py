"""Suite files (TOML), read and checked into :class:`~vaezoo_bench.matrix.model.Suite` objects.

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
  :class:`~vaezoo_bench.matrix.model.Selection`. ``[suite]`` may also hold ``exclude`` (cells left out of the
  product), ``reference`` (the row the report compares MI with), ``tradeoff`` (the report's trade-off figure) and
  ``published`` (the file of published figures the report sets beside each method, ``benchmarks/published/``).

A cell's raw config is ``merge_raw(base, profile, variant fragments in axis order, parameter values)``.
vaezoo's ``merge_raw`` drops a component's parameters when a later layer names another component, so a variant
that sets ``regularizer = {name = "ncvae"}`` starts from ncvae's defaults, while a parameter axis such as
``regularizer.beta`` (applied last, all parameter axes as one layer) sets beta whatever the variant chose.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vaezoo.api import SECTIONS, UsageError
from vaezoo_bench.aggregate import CONSTRAINT_METRICS, MI_METRICS, RULES
from vaezoo_bench.matrix.checks import Reader
from vaezoo_bench.matrix.model import (
    Assignment,
    Axis,
    Profile,
    Selection,
    Suite,
    Table,
    Variant,
    Within,
    axis_ids,
    selection_where,
    slugify,
)
from vaezoo_bench.published import load_published

LAYOUTS = ("table1", "table2", "generic")
DEFAULT_COLUMNS = {
    "table1": ("mi", "neg_elbo", "recon", "au", "iw_nll"),
    "table2": ("mi", "neg_elbo", "recon", "au", "ppl_elbo"),
    "generic": ("mi", "neg_elbo", "recon", "kl", "au", "iw_nll"),
}
DEFAULT_SEED_AXIS = "train.seed"
DEFAULT_X_AXIS = "regularizer.beta"
TABLES = ("suite", "base", "profile", "axes", "select")
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
    "published",
)
VARIANT_KEYS = ("label", "id", "test_priors")
SELECT_KEYS = ("axes", "where", "rule", "metric", "split", "sweep_seeds", "within")
WITHIN_KEYS = ("metric", "nats", "of")
TRADEOFF_KEYS = ("mi", "prior")
CONSTRAINT_METRIC = " is not one a constraint bounds (nats, lower is better); choose from: {choices}"
MI_ESTIMATOR = " is not an MI estimator; choose from: {choices}"
VALID_ONLY = (
    ": a value is chosen on the validation split only (choosing on the test split would bias the test figures)"
    '; use split = "valid"'
)


class SuiteReader(Reader):
    """Reads the entries of a suite file that hold axes, their values, and assignments of values to axes."""

    def axis_values(self, value: Any) -> dict[str, list[Any]]:
        """``[axes]`` as ``{name: values}``; unquoted dotted keys (nested tables) are flattened one level."""
        flat = self.flat(value, "[axes]")
        for name, values in flat.items():
            if not isinstance(values, list) or not values:
                raise self.fail(f"axis {name!r} must be a non-empty list of values, got {values!r}")
        return flat

    def axis(self, name: str, values: list[Any]) -> Axis:
        """The axis ``name`` with its ``values`` from the file: a parameter axis (``SECTION.PARAM``) keeps them as
        given, a variant axis reads each as a :meth:`variant`; every value needs an id of its own."""
        if "." in name:
            section, _, param = name.partition(".")
            # a callback's parameter is one level deeper: callbacks.NAME.PARAM
            nested = param.count(".") == 1 and all(param.split("."))
            if section not in SECTIONS or not param or ("." in param if section != "callbacks" else not nested):
                raise self.fail(
                    f"parameter axis {name!r} must be SECTION.PARAM with SECTION one of {SECTIONS}, or "
                    "callbacks.NAME.PARAM"
                )
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
        """A value of the variant axis ``axis``: a table with a label or an id, config sections and test_priors."""
        where = f"a value of axis {axis!r}"
        if not isinstance(value, Mapping):
            raise self.fail(f"{where} must be a table such as {{label = ..., regularizer = {{...}}}}, got {value!r}")
        fragment = dict(value)
        self.keys(fragment, where, VARIANT_KEYS + SECTIONS)
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
        """A ``[select]`` table (``where`` names it in refusals) whose axes and values are among ``axes``."""
        spec = self.table(value, where)
        self.keys(spec, where, SELECT_KEYS)
        names = self.names(spec.get("axes"), f"{where} axes")
        if not names:
            raise self.fail(f"{where} axes must name at least one axis to tune")
        tuned = tuple(axis_ids(axes, name, [], f"suite {str(self.path)!r}: {where} axes")[0].name for name in names)
        rule = self.one_of(spec.get("rule", "max"), f"{where} rule", RULES)
        metric = spec.get("metric")
        if not isinstance(metric, str) or not metric:  # whether a plugin registered it is checked by the runner
            raise self.fail(f"{where} metric must name a validation metric (vaezoo list metric), got {metric!r}")
        split = self.one_of(spec.get("split", "valid"), f"{where} split", ("valid",), VALID_ONLY)
        seeds = self.at_least(spec.get("sweep_seeds", 1), f"{where} sweep_seeds", (int,), 1, "a whole number of seeds")
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
        metric = self.one_of(table["metric"], f"{where} metric", CONSTRAINT_METRICS, CONSTRAINT_METRIC)
        nats = self.at_least(table["nats"], f"{where} nats", (int, float), 0, "a number of nats")
        return Within(metric=metric, nats=float(nats), of=self.single(table["of"], f"{where}.of", axes))


def load_suite(path: Path) -> Suite:
    """Read and check a suite file; every problem is a UsageError naming the file and the entry."""
    reader = SuiteReader(path)
    document = _document(reader)
    meta = reader.table(document.get("suite", {}), "[suite]")
    reader.keys(meta, "[suite]", SUITE_KEYS)
    axes = _axes(reader, document)
    profiles = _profiles(reader, document.get("profile", {}), axes)
    default_profile = meta.get("default_profile")
    if default_profile is not None and (not isinstance(default_profile, str) or default_profile not in profiles):
        raise reader.fail(f"default_profile {default_profile!r} is not a [profile.NAME] table")
    # Value ids in [select], exclude and reference may be those of any profile's values of an axis.
    every = _every_value(axes, profiles)
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


def _document(reader: Reader) -> dict[str, Any]:
    """The suite file's TOML document, holding none but a suite's tables."""
    try:
        document = tomllib.loads(reader.path.read_text())
    except OSError as error:
        raise reader.fail(f"cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise reader.fail(f"malformed TOML: {error}") from None
    unknown = sorted(set(document) - set(TABLES))
    if unknown:
        raise reader.fail(f"unknown table [{unknown[0]}]; valid tables: {', '.join(TABLES)}")
    return document


def _axes(reader: SuiteReader, document: dict[str, Any]) -> tuple[Axis, ...]:
    """The suite's [axes], at least one: without any, its one cell would have no id and no directory of its own."""
    axes = tuple(reader.axis(n, v) for n, v in reader.axis_values(document.get("axes", {})).items())
    if not axes:
        raise reader.fail("has no [axes]: a suite is a matrix over at least one axis (one run is vaezoo run --config)")
    return axes


def _profiles(reader: SuiteReader, value: Any, axes: Sequence[Axis]) -> dict[str, Profile]:
    """The ``[profile.NAME]`` tables, every profile's config checked before any profile's axes; the axes whose
    values a profile replaces must be the suite's."""
    read = {}
    for name, table in reader.table(value, "[profile]").items():
        config = reader.table(table, f"[profile.{name}]")
        values = reader.axis_values(config.pop("axes", {}))
        read[name] = (reader.raw_config(config, f"[profile.{name}]"), values)
    names = [a.name for a in axes]
    profiles = {}
    for name, (config, values) in read.items():
        replaced = {}
        for axis, axis_values in values.items():
            if axis not in names:
                raise reader.fail(f"profile {name!r} sets values of {axis!r}, which is not an axis")
            replaced[axis] = reader.axis(axis, list(axis_values))
        profiles[name] = Profile(name, config, replaced)
    return profiles


def _every_value(axes: Sequence[Axis], profiles: Mapping[str, Profile]) -> tuple[Axis, ...]:
    """The suite's axes with every profile's replacement values added (by id, in order of appearance)."""
    merged = []
    for axis in axes:
        values, seen = list(axis.values), {axis.slug(v) for v in axis.values}
        for profile in profiles.values():
            replaced = profile.axes.get(axis.name)
            for value in replaced.values if replaced is not None else ():
                if axis.slug(value) not in seen:
                    values.append(value)
                    seen.add(axis.slug(value))
        merged.append(Axis(axis.name, tuple(values)))
    return tuple(merged)


def _selections(reader: SuiteReader, value: Any, axes: Sequence[Axis]) -> tuple[Selection, ...]:
    """``[select]`` (one table) or ``[[select]]`` (several) as Selections."""
    if isinstance(value, Mapping):
        return (reader.selection(value, "[select]", axes),)
    if not isinstance(value, list):
        raise reader.fail(f"[select] must be a table or an array of tables, got {value!r}")
    return tuple(reader.selection(v, f"[[select]] {i + 1}", axes) for i, v in enumerate(value))


def _check_tuned(reader: Reader, selections: Sequence[Selection], roles: Mapping[str, str | None]) -> list[str]:
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


def _check_assignments(reader: Reader, selections: Sequence[Selection], table: Table) -> None:
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


def _table(
    reader: SuiteReader,
    meta: dict[str, Any],
    axis_names: list[str],
    selections: Sequence[Selection],
    axes: Sequence[Axis],
) -> Table:
    """The report's table settings in ``meta`` ([suite]), with the defaults of the layout and of the axes; tuned
    axes are checked against the seed, column and x axes here. ``axes`` (with every profile's values) are those
    the ``reference`` may name."""
    layout = reader.one_of(meta.get("layout", "generic"), "layout", LAYOUTS)

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
        published=None if "published" not in meta else _published(reader, meta["published"], rows, column_axis),
    )


def _tradeoff(reader: Reader, value: Any) -> dict[str, str]:
    """``[suite] tradeoff = {mi = "mi_he", prior = "optimal"}``: the trade-off figure's MI estimator and test prior."""
    table = reader.table(value, "[suite] tradeoff")
    reader.keys(table, "[suite] tradeoff", TRADEOFF_KEYS)
    mi = reader.one_of(table.get("mi", MI_METRICS[0]), "[suite] tradeoff mi", MI_METRICS, MI_ESTIMATOR)
    prior = reader.test_priors([table.get("prior", "optimal")], "[suite] tradeoff prior")[0]
    return {"mi": mi, "prior": prior}


def _published(reader: Reader, name: Any, rows: Sequence[str], column_axis: str | None) -> str:
    """``[suite] published = "NAME"``: a shipped file of published figures, read and checked now (a damaged one is
    refused before any cell runs), for a suite whose rows are its ``method`` axis and which has a column axis (the
    data set): the figures are keyed by both."""
    if not isinstance(name, str):
        raise reader.fail(f"[suite] published must name a file of published figures, got {name!r}")
    if list(rows) != ["method"] or column_axis is None:
        raise reader.fail(
            '[suite] published needs rows = ["method"] and a column_axis (the data set): its figures are keyed by both'
        )
    try:
        load_published(name)
    except UsageError as error:
        raise reader.fail(f"[suite] {error}") from None
    return name
