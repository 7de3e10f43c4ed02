"""The report's figures (matplotlib, Agg backend): a metric against the x axis (beta), the Fig. 2 panel, and the
trade-off figure.

The first two draw one *series* per combination of the row axes other than the x axis (one line per method, say),
and one subplot per value of the column axis when the suite has one. The trade-off figure draws the points of
:func:`vaezoo_bench.aggregate.tradeoff_points`: one row of subplots per value of the column axis (data set).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from vaezoo_bench.aggregate import (
    METRIC_TITLES as TABLE_TITLES,
)
from vaezoo_bench.aggregate import (
    Group,
    Matrix,
    canonical,
    format_value,
    mean_std,
    prior_label,
    tradeoff_points,
)
from vaezoo_bench.results import cell_dir

METRIC_TITLES = {"mi": "MI (nats)", "mi_he": "MI, He et al. (nats)", "au": "active units"}
#: Filled markers (hollow ones mark swept values), as many as the 12 methods of the remedies suites and more: with
#: the 10 colours, each of 30 series has a colour and marker of its own, and each of 15 a marker of its own.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h", "8", "d", "H")


def _series_name(matrix: Matrix, axes: dict[str, Any], skip: Sequence[str]) -> str:
    """The row axes' values but ``skip``, described and joined."""
    return ", ".join(matrix.describe(a, axes[a]) for a in matrix.table["rows"] if a not in skip)


def _column_values(matrix: Matrix) -> list[Any]:
    column = matrix.table["column_axis"]
    return matrix.axis_values[column] if column else [None]


def metric_against_x(matrix: Matrix, rows: Sequence[Group], metric: str, path: Path) -> bool:
    """Mean ± std of ``metric`` over seeds against the x axis, one line per series; False when nothing to plot.

    Uses the first test prior (MI and AU do not depend on it).
    """
    x_axis, column = matrix.table["x_axis"], matrix.table["column_axis"]
    if x_axis is None or not all(isinstance(v, int | float) for v in matrix.axis_values[x_axis]):
        return False
    first_prior = matrix.priors()[0]
    columns = _column_values(matrix)
    fig, axes = plt.subplots(1, len(columns), figsize=(5 * len(columns), 4), squeeze=False)
    drawn = False
    for ax, column_value in zip(axes[0], columns, strict=True):
        series: dict[str, list[tuple[float, float, float]]] = {}
        for group in rows:
            if group.prior != first_prior or (column and canonical(group.axes[column]) != canonical(column_value)):
                continue
            values = group.values(metric)
            if values:
                mean, std = mean_std(values)
                name = _series_name(matrix, group.axes, [x_axis])
                series.setdefault(name, []).append((float(group.axes[x_axis]), mean, std or 0.0))
        for name, points in series.items():
            points.sort()
            xs, means, stds = zip(*points, strict=True)
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
            drawn = True
        ticks = [float(v) for v in matrix.axis_values[x_axis]]
        if all(v > 0 for v in ticks):
            ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_major_formatter(FixedFormatter([format_value(v) for v in matrix.axis_values[x_axis]]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(matrix.header(x_axis))
        ax.set_ylabel(METRIC_TITLES.get(metric, metric))
        if column:
            ax.set_title(matrix.describe(column, column_value))
        if series:
            ax.legend(fontsize="small")
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def scatter_panel(matrix: Matrix, rows: Sequence[Group], path: Path) -> bool:
    """A grid of each series' latent scatter (first finished seed); False when no run wrote one.

    With an x axis among the rows, grid columns follow its values and grid rows the other series.
    """
    x_axis = matrix.table["x_axis"]
    first_prior = matrix.priors()[0]
    panels: dict[tuple[str, str], Path] = {}  # (series without x, x value) -> image
    titles: dict[tuple[str, str], str] = {}
    for group in rows:
        if group.prior != first_prior:
            continue
        record = next((r for r in group.ok() if r.get("scatter")), None)
        if record is None:
            continue
        x_key = canonical(group.axes[x_axis]) if x_axis else ""
        key = (_series_name(matrix, group.axes, [x_axis] if x_axis else []), x_key)
        panels[key] = cell_dir(matrix.root, record["id"]) / record["scatter"]
        titles[key] = _series_name(matrix, group.axes, [])
    if not panels:
        return False
    series = list(dict.fromkeys(s for s, _ in panels))
    if x_axis:
        xs = [canonical(v) for v in matrix.axis_values[x_axis] if any(k[1] == canonical(v) for k in panels)]
        places = {key: (series.index(key[0]), xs.index(key[1])) for key in panels}
        n_rows, n_cols = len(series), len(xs)
    else:
        n_cols = min(4, len(panels))
        places = {key: divmod(i, n_cols) for i, key in enumerate(panels)}
        n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 3.4 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for key, image in panels.items():
        ax = axes[places[key]]
        ax.imshow(matplotlib.image.imread(image))
        ax.set_title(titles[key], fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def tradeoff_figure(
    matrix: Matrix, path: Path, mi_metric: str = "mi_he", prior: str = "optimal"
) -> list[dict[str, Any]]:
    """MI (``mi_metric``) and AU against -ELBO and, where some cell computed it, IW-NLL (under ``prior``, see
    :func:`vaezoo_bench.aggregate.tradeoff_points`): one row of subplots per column-axis value (data set), every
    point with error bars of one standard deviation over seeds in x and y, one colour and marker per series
    (method); hollow markers for swept values that were not chosen, each point annotated with its parameters.

    Returns what was drawn, read back from the figure's error-bar artists: one entry per artist, ``{"panel",
    "x", "y", "series", "chosen", "points": [(x, y), ...], "xerr": [...], "yerr": [...]}``, with the ``colour``,
    ``marker`` and test ``priors`` (-ELBO's and IW-NLL's) of its points; nothing is written (and the list is empty)
    when no point has both coordinates."""
    points = tradeoff_points(matrix, mi_metric, prior)
    panels = list(dict.fromkeys(canonical(p.panel) for p in points))
    series = list(dict.fromkeys(p.series for p in points))
    xs = ["neg_elbo"] + (["iw_nll"] if any("iw_nll" in p.stats for p in points) else [])
    ys = [mi_metric, "au"]
    fig, grid = plt.subplots(
        len(panels) or 1, len(xs) * len(ys), figsize=(4.2 * len(xs) * len(ys), 3.8 * max(len(panels), 1)), squeeze=False
    )
    drawn: list[dict[str, Any]] = []
    for row, panel in enumerate(panels):
        mine = [p for p in points if canonical(p.panel) == panel]
        for column, (x, y) in enumerate((x, y) for x in xs for y in ys):
            ax = grid[row][column]
            usable = [p for p in mine if x in p.stats and y in p.stats]
            if not usable:
                ax.axis("off")
                continue
            drawn += _draw_tradeoff_points(ax, usable, series, x, y)
            _label_tradeoff_panel(ax, mine[0].panel, x, y, prior)
            if column == 0:
                _tradeoff_legend(ax, usable)
    fig.tight_layout()
    if drawn:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn


def _draw_tradeoff_points(ax: Any, usable: list[Any], series: list[str], x: str, y: str) -> list[dict[str, Any]]:
    """The points of one panel, y against x, with their error bars and labels: one colour and marker per series,
    hollow for swept values not chosen. What was drawn, read back from the artists (see :func:`tradeoff_figure`)."""
    drawn = []
    for index, name in enumerate(series):
        for chosen in (True, False):
            subset = [p for p in usable if p.series == name and p.chosen is chosen]
            if not subset:
                continue
            colour, marker = f"C{index % 10}", MARKERS[index % len(MARKERS)]
            container = ax.errorbar(
                [p.stats[x][0] for p in subset],
                [p.stats[y][0] for p in subset],
                xerr=[p.stats[x][1] or 0.0 for p in subset],
                yerr=[p.stats[y][1] or 0.0 for p in subset],
                fmt=marker,
                color=colour,
                markerfacecolor=colour if chosen else "none",
                capsize=2,
                label=name if chosen or not any(p.chosen for p in usable if p.series == name) else None,
            )
            for p in subset:
                ax.annotate(
                    p.label,
                    (p.stats[x][0], p.stats[y][0]),
                    fontsize=5,
                    alpha=0.7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
            drawn.append(_read_back(container, subset[0].panel, x, y, name, chosen))
            priors = tuple(dict.fromkeys(prior for p in subset for prior in p.priors))
            drawn[-1].update(colour=colour, marker=marker, priors=priors)
    return drawn


def _label_tradeoff_panel(ax: Any, panel: Any, x: str, y: str, prior: str) -> None:
    """A panel's axis labels (x under the test prior ``prior``) and, with a column axis, its title."""
    prior_text = f"test prior {prior_label(prior)}"
    ax.set_xlabel(f"{TABLE_TITLES[x]} (nats, {prior_text})")
    ax.set_ylabel(METRIC_TITLES.get(y, y))
    if panel is not None:
        ax.set_title(f"{format_value(panel)}: {TABLE_TITLES[y]} against {TABLE_TITLES[x]}", fontsize="small")


def _tradeoff_legend(ax: Any, usable: list[Any]) -> None:
    """The series' legend, with what a hollow marker means when the panel has one."""
    handles, _ = ax.get_legend_handles_labels()
    if not all(p.chosen for p in usable):
        hollow = Line2D([], [], marker="o", linestyle="", color="grey", markerfacecolor="none")
        handles.append(hollow)
        hollow.set_label("hollow: swept, not chosen")
    ax.legend(handles=handles, fontsize="x-small")


def validation_curves(matrix: Matrix, path: Path, metric: str = "neg_elbo") -> bool:
    """Every finished cell's validation ``metric`` against the training step (cell.json ``curve``): one subplot per
    column-axis value (data set) and series (method), one colour per value of the x axis (β), a dot at the step of
    the tested model (the best validation -ELBO's under ``train.test_model = "best"``, else the last); cells
    differing only in seed or a swept value share the colour. The y range is that of the values after the first
    fifth of each run. False (and nothing written) without any curve."""
    x_axis, column = matrix.table["x_axis"], matrix.table["column_axis"]
    skip = [a for a in (x_axis, column) if a]
    panels: dict[tuple[str, str], list[tuple[Any, dict[str, Any]]]] = {}
    for cell in matrix.document["cells"]:
        record = matrix.records.get(cell["id"])
        if record is None or record["status"] != "ok" or not record.get("curve"):
            continue
        key = (format_value(cell["axes"][column]) if column else "", _series_name(matrix, cell["axes"], skip))
        panels.setdefault(key, []).append((cell["axes"].get(x_axis) if x_axis else None, record))
    if not panels:
        return False
    colour_of = {canonical(v): f"C{i % 10}" for i, v in enumerate(matrix.axis_values.get(x_axis, [None]))}
    rows, columns = sorted({panel for panel, _ in panels}), sorted({series for _, series in panels})
    places = {key: (rows.index(key[0]), columns.index(key[1])) for key in panels}
    fig, grid = plt.subplots(len(rows), len(columns), figsize=(4.2 * len(columns), 3.4 * len(rows)), squeeze=False)
    for key, cells in panels.items():
        ax = grid[places[key]]
        labelled = _draw_curves(ax, matrix, cells, metric, colour_of)
        ax.set_title(", ".join(part for part in key if part), fontsize="small")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"valid {TABLE_TITLES.get(metric, metric)}")
        if labelled and x_axis:
            ax.legend(fontsize="x-small")
    for row in grid:
        for ax in row:
            if not ax.has_data():
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _draw_curves(
    ax: Any, matrix: Matrix, cells: list[tuple[Any, dict[str, Any]]], metric: str, colour_of: dict[Any, str]
) -> set[Any]:
    """The validation curves of one panel's ``cells`` ((x-axis value, cell.json) pairs), a dot at each tested
    model, the y range set by the values after the first fifth of each run. Returns the x-axis values labelled."""
    x_axis = matrix.table["x_axis"]
    labelled: set[Any] = set()
    late: list[float] = []  # the values after the first fifth of training, which set the y range
    for x_value, record in cells:
        curve = [(line["step"], line["valid"].get(metric)) for line in record["curve"]]
        curve = [(step, value) for step, value in curve if isinstance(value, int | float)]
        if not curve:
            continue
        late += [value for step, value in curve if step >= 0.2 * curve[-1][0]]
        colour = colour_of.get(canonical(x_value), "C0")
        label = matrix.describe(x_axis, x_value) if x_axis and canonical(x_value) not in labelled else None
        labelled.add(canonical(x_value))
        steps, values = zip(*curve, strict=True)
        ax.plot(steps, values, color=colour, alpha=0.6, linewidth=1, label=label)
        tested = dict(curve).get((record.get("train") or {}).get("tested_step"))
        if tested is not None:
            ax.plot([record["train"]["tested_step"]], [tested], "o", color=colour, markersize=3)
    if late:  # the first steps' values are far larger and would flatten where the runs settle
        low, high = min(late), max(late)
        ax.set_ylim(low - 0.05 * (high - low or 1), high + 0.05 * (high - low or 1))
    return labelled


def _read_back(container: Any, panel: Any, x: str, y: str, series: str, chosen: bool) -> dict[str, Any]:
    """An error-bar artist's data: its marker positions and the half-lengths of its horizontal and vertical bars."""
    data, _, bars = container.lines
    positions = [tuple(float(v) for v in xy) for xy in data.get_xydata()]
    horizontal, vertical = bars  # xerr first, then yerr, as errorbar() draws them
    xerr = [float(abs(seg[1][0] - seg[0][0]) / 2) for seg in horizontal.get_segments()]
    yerr = [float(abs(seg[1][1] - seg[0][1]) / 2) for seg in vertical.get_segments()]
    return {
        "panel": panel,
        "x": x,
        "y": y,
        "series": series,
        "chosen": chosen,
        "points": positions,
        "xerr": xerr,
        "yerr": yerr,
    }
