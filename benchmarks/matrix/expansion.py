"""A suite's matrix under a profile: the product of its axes as cells (each with its merged config, its tuning
group and phase), the selection groups of those cells, and the cells that ``--only`` keeps."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from vaezoo.api import UsageError, merge_raw
from vaezoo_bench.matrix.model import Axis, Cell, Profile, Suite, Variant, Within, axis_ids, short_names


def effective_axes(suite: Suite, profile: Profile | None) -> tuple[Axis, ...]:
    """The suite's axes with the profile's replacement values."""
    replaced = profile.axes if profile is not None else {}
    return tuple(replaced.get(a.name, a) for a in suite.axes)


def matches(value_ids: Mapping[str, str], assignment: Mapping[str, frozenset[str]]) -> bool:
    """Whether a cell (its ``value_ids``) has one of the assigned ids on every axis of ``assignment``; a cell
    without one of those axes (an untuned cell and a tuned axis) does not match."""
    return all(value_ids.get(axis) in ids for axis, ids in assignment.items())


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
    """The config sections the parameter axes of a cell set: ``{"regularizer": {"beta": 0.5}}``, and a callback's
    parameters under its name: ``{"callbacks": {"cyclical_kl": {"cycles": 4}}}``."""
    parameters: dict[str, dict[str, Any]] = {}
    for axis, value in kept:
        if axis.is_parameter:
            section, _, param = axis.name.partition(".")
            target = parameters.setdefault(section, {})
            if section == "callbacks":
                name, _, param = param.partition(".")
                target = target.setdefault(name, {})
            target[param] = value
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
