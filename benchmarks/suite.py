"""Suite files (TOML) and their expansion into a matrix of cells.

A suite file has four tables (see ``benchmarks/README.md`` for a full example):

- ``[suite]``: ``name``; ``test_priors`` (each cell is evaluated under each: standard, optimal, tuned or a
  variance); the report's table settings ``layout`` (table1, table2 or generic), ``rows``, ``columns``,
  ``seed_axis``, ``column_axis``, ``x_axis``, ``headers``; and ``default_profile``.
- ``[base]``: a raw vaezoo config (sections data, encoder, decoder, prior, regularizer, noise, model, train,
  eval, as in :mod:`vaezoo.config`).
- ``[profile.NAME]``: raw config overrides for a budget (steps, sizes, evaluation subset ...), plus an optional
  ``axes`` table that replaces the values of some axes (fewer seeds, say).
- ``[axes]``, in order: a *parameter axis* is a ``"SECTION.PARAM"`` key with a list of values; a *variant axis*
  is a plain name with a list of labelled config fragments, each ``{label = "...", id = "...", test_priors =
  [...], SECTION = {...}, ...}`` (``id`` defaults to the label made filesystem-safe; ``test_priors`` replaces
  the suite's for cells of that variant).

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

from vaezoo.config import SECTIONS, merge_raw
from vaezoo.errors import UsageError
from vaezoo.metrics import METRIC_NAMES
from vaezoo.test_priors import check_test_prior

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
)
VARIANT_KEYS = ("label", "id", "test_priors")


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
    """How the report lays out the results (stored in matrix.json for the report)."""

    layout: str
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    seed_axis: str | None
    column_axis: str | None
    x_axis: str | None
    headers: dict[str, str]


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


@attrs.frozen
class Cell:
    """One point of the matrix: a stable id, its axis values (labels), its merged raw config, its test priors, and
    each axis value's id (``value_ids``: axis name -> the id that appears in the cell id)."""

    id: str
    axes: dict[str, Any]
    raw: dict[str, Any]
    test_priors: tuple[str, ...]
    value_ids: dict[str, str] = attrs.field(factory=dict)


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

    def axis_values(self, value: Any) -> dict[str, list[Any]]:
        """``[axes]`` as ``{name: values}``; unquoted dotted keys (nested tables) are flattened one level."""
        flat: dict[str, list[Any]] = {}
        for name, values in self.table(value, "[axes]").items():
            if isinstance(values, Mapping):
                flat.update({f"{name}.{param}": v for param, v in values.items()})
            else:
                flat[name] = values
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


def load_suite(path: Path) -> Suite:
    """Read and check a suite file; every problem is a UsageError naming the file and the entry."""
    reader = _Reader(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise reader.fail(f"cannot read it: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise reader.fail(f"malformed TOML: {error}") from None
    unknown = sorted(set(document) - {"suite", "base", "profile", "axes"})
    if unknown:
        raise reader.fail(f"unknown table [{unknown[0]}]; valid tables: suite, base, profile, axes")
    meta = reader.table(document.get("suite", {}), "[suite]")
    unknown = sorted(set(meta) - set(SUITE_KEYS))
    if unknown:
        raise reader.fail(f"[suite] has unknown key {unknown[0]!r}; valid keys: {', '.join(SUITE_KEYS)}")
    axes = tuple(reader.axis(n, v) for n, v in reader.axis_values(document.get("axes", {})).items())
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
    return Suite(
        name=str(meta.get("name", path.stem)),
        path=path,
        test_priors=reader.test_priors(meta.get("test_priors", ["standard"]), "[suite] test_priors"),
        table=_table(reader, meta, [a.name for a in axes]),
        base=reader.raw_config(document.get("base", {}), "[base]"),
        profiles=profiles,
        axes=axes,
        default_profile=default_profile,
    )


def _profile(reader: _Reader, name: str, table: Any) -> Profile:
    config = reader.table(table, f"[profile.{name}]")
    axes = reader.axis_values(config.pop("axes", {}))
    return Profile(name, reader.raw_config(config, f"[profile.{name}]"), {k: tuple(v) for k, v in axes.items()})


def _table(reader: _Reader, meta: dict[str, Any], axis_names: list[str]) -> Table:
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
    default_rows = [n for n in axis_names if n not in (seed_axis, column_axis)]
    rows = reader.names(meta.get("rows", default_rows), "[suite] rows")
    if sorted(rows) != sorted(default_rows):
        raise reader.fail(
            f"rows {list(rows)} must name every axis but the seed and column axes once: {', '.join(default_rows)}"
        )
    headers = reader.table(meta.get("headers", {}), "[suite] headers")
    columns = reader.names(meta.get("columns", list(DEFAULT_COLUMNS[layout])), "[suite] columns")
    unknown = [name for name in columns if name not in METRIC_NAMES]
    if unknown:
        raise reader.fail(f"columns {unknown} are not metrics a run reports; choose from: {', '.join(METRIC_NAMES)}")
    return Table(
        layout=layout,
        rows=rows,
        columns=columns,
        seed_axis=seed_axis,
        column_axis=column_axis,
        x_axis=x_axis,
        headers={str(k): str(v) for k, v in headers.items()},
    )


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
    """The product of the axes, in axis order (the last axis varies fastest), as cells with unique ids."""
    axes = effective_axes(suite, profile)
    names = short_names(axes)
    layers = [suite.base] + ([profile.config] if profile is not None else [])
    cells = []
    for combination in itertools.product(*(a.values for a in axes)):
        variants = [v for v in combination if isinstance(v, Variant)]
        parameters: dict[str, dict[str, Any]] = {}
        for axis, value in zip(axes, combination, strict=True):
            if axis.is_parameter:
                section, _, param = axis.name.partition(".")
                parameters.setdefault(section, {})[param] = value
        priors = next((v.test_priors for v in reversed(variants) if v.test_priors is not None), suite.test_priors)
        cells.append(
            Cell(
                id="_".join(f"{names[a.name]}={a.slug(v)}" for a, v in zip(axes, combination, strict=True)),
                axes={a.name: a.label(v) for a, v in zip(axes, combination, strict=True)},
                raw=merge_raw(*layers, *(v.config for v in variants), parameters),
                test_priors=priors,
                value_ids={a.name: a.slug(v) for a, v in zip(axes, combination, strict=True)},
            )
        )
    return cells


def parse_selection(expressions: Sequence[str], axes: Sequence[Axis]) -> dict[str, frozenset[str]]:
    """``AXIS=ID[,ID...]`` expressions (``--only``) as ``{axis name: allowed value ids}``.

    ``AXIS`` is an axis's name in the suite (``network``, ``regularizer.beta``) or in cell ids (``beta``); each
    ``ID`` is a value's id as it appears in cell ids (a variant's id, or a parameter value such as ``0.8``).
    Several expressions for one axis allow the union of their values. A malformed expression, an unknown axis or
    an unknown value is a UsageError naming the valid choices.
    """
    by_name = {a.name: a for a in axes}
    by_name.update({short: by_name[name] for name, short in short_names(axes).items()})
    allowed: dict[str, set[str]] = {}
    for expression in expressions:
        name, equals, values = expression.partition("=")
        if not equals or not name or not values:
            raise UsageError(f"--only {expression!r} must be AXIS=VALUE[,VALUE...], e.g. network=mlp")
        axis = by_name.get(name)
        if axis is None:
            raise UsageError(f"--only {expression!r}: unknown axis {name!r}; axes: {', '.join(a.name for a in axes)}")
        ids = [axis.slug(v) for v in axis.values]
        for value in values.split(","):
            if slugify(value) not in ids:
                raise UsageError(
                    f"--only {expression!r}: axis {axis.name!r} has no value {value!r}; values: {', '.join(ids)}"
                )
            allowed.setdefault(axis.name, set()).add(slugify(value))
    return {name: frozenset(ids) for name, ids in allowed.items()}


def select(cells: Sequence[Cell], allowed: Mapping[str, frozenset[str]]) -> list[Cell]:
    """The cells whose value of every restricted axis is among its allowed ids, in matrix order."""
    return [c for c in cells if all(c.value_ids[name] in ids for name, ids in allowed.items())]


def matrix_document(suite: Suite, profile: Profile | None, cells: Sequence[Cell]) -> dict[str, Any]:
    """What the report needs to know about a matrix (written as matrix.json)."""
    axes = effective_axes(suite, profile)
    return {
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
        "cells": [{"id": c.id, "axes": c.axes, "test_priors": list(c.test_priors)} for c in cells],
    }
