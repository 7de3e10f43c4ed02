"""The matrix document (matrix.json): what the report needs to know about a suite's matrix under a profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vaezoo_bench.matrix.expansion import effective_axes, selection_groups
from vaezoo_bench.matrix.model import Axis, Cell, Profile, Selection, Suite


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
        "axes": [
            {"name": a.name, "values": [a.label(v) for v in a.values], "ids": [a.slug(v) for v in a.values]}
            for a in axes
        ],
        "cells": [_cell_entry(c) for c in cells],
    }
    if suite.table.reference is not None:
        document["table"]["reference"] = _labels(axes, suite.table.reference)
    if suite.table.tradeoff is not None:
        document["table"]["tradeoff"] = dict(suite.table.tradeoff)
    if suite.table.published is not None:
        document["table"]["published"] = suite.table.published
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
