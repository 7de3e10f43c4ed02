"""The report's figures (matplotlib, Agg backend): a metric against the x axis (beta) and the Fig. 2 panel.

Both draw one *series* per combination of the row axes other than the x axis (one line per method, say), and
one subplot per value of the column axis when the suite has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.image
import matplotlib.pyplot as plt
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from benchmarks.aggregate import Group, Matrix, canonical, format_value, mean_std
from benchmarks.results import cell_dir

METRIC_TITLES = {"mi": "MI (nats)", "au": "active units"}


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
