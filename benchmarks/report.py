"""Tables and figures of a results directory written by :mod:`benchmarks.run`.

Usage::

    python -m benchmarks.report RESULTS_DIR [--out DIR] [--no-plots]

Writes into ``--out`` (default ``RESULTS_DIR/report``):

- ``report.md``: the table in the layout the suite names (``table1``: rows β × method × test prior, columns
  MI, -ELBO, ReconE, AU, IW-NLL; ``table2``: the same rows with one group of columns per data set; ``generic``:
  any axes), each entry "mean ± std" over seeds (std with n - 1; a single seed shows the mean alone, and
  "(k/n)" marks an entry where only k of n seeds finished); rows where no seed finished read ``failed``,
  ``skipped`` or ``pending``, and the cells behind them are listed with their reason or error;
- ``table.csv``: one line per row and column group, with separate ``METRIC_mean`` and ``METRIC_std`` columns;
- ``mi_vs_beta.png`` and ``au_vs_beta.png``: MI and AU against the x axis (β), one line per method;
- ``fig2_scatter.png``: the latent scatter of each method's first finished seed, as in the paper's Fig. 2.

The markdown depends only on the results (no dates or absolute paths), so it can be compared byte for byte.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.aggregate import Group, Matrix, canonical, format_value, groups, load_matrix, mean_std, prior_label
from benchmarks.results import OK, PENDING
from vaezoo.errors import UsageError

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
DIGITS = {"au": 1}
#: Metrics that count things: a single seed's value is printed as the whole number it is.
COUNTS = {"au"}
LAYOUT_TITLES = {
    "table1": "in the layout of the paper's Table 1",
    "table2": "in the layout of the paper's Table 2",
    "generic": "",
}
FIGURES = (("mi", "mi_vs_beta.png", "MI"), ("au", "au_vs_beta.png", "AU"))
SCATTER_FIGURE = "fig2_scatter.png"


def _rows(matrix: Matrix, table: Sequence[Group]) -> list[tuple[Group, dict[str, Group]]]:
    """Table rows: the first group of each row (for its labels) and its groups by column-axis value."""
    column = matrix.table["column_axis"]
    rows: dict[tuple[str, ...], dict[str, Group]] = {}
    for group in table:
        key = (*(canonical(group.axes[a]) for a in matrix.table["rows"]), group.prior)
        rows.setdefault(key, {})[canonical(group.axes[column]) if column else ""] = group
    return [(next(iter(by_column.values())), by_column) for by_column in rows.values()]


def _columns(matrix: Matrix) -> list[tuple[str, str]]:
    """(column-axis key, title prefix) of every group of columns."""
    column = matrix.table["column_axis"]
    if column is None:
        return [("", "")]
    return [(canonical(v), f"{matrix.describe(column, v)} ") for v in matrix.axis_values[column]]


def format_entry(group: Group | None, metric: str) -> str:
    """The mean ± std over the group's finished seeds, "(k/n)" when some did not finish, or why none did."""
    if group is None:
        return "n/a"
    if group.status() != OK:
        return group.status()
    values = group.values(metric)
    if not values:
        return "n/a"
    mean, std = mean_std(values)
    digits = 0 if std is None and metric in COUNTS else DIGITS.get(metric, 2)
    text = f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    return text + (f" ({len(values)}/{group.planned})" if len(values) < group.planned else "")


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def _markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [row(header), "|" + "---|" * len(header), *(row(line) for line in lines)]


def render_markdown(matrix: Matrix, table: Sequence[Group], figures: Sequence[tuple[str, str]]) -> str:
    """The report as markdown; ``figures`` are (title, file name) of the figures that were drawn."""
    doc, spec = matrix.document, matrix.table
    records = list(matrix.records.values())
    statuses = Counter(r["status"] if r else PENDING for r in records)
    layout = LAYOUT_TITLES[spec["layout"]]
    seed = f" (`{spec['seed_axis']}`)" if spec["seed_axis"] else ""
    out = [
        f"# {doc['suite']}" + (f": results {layout}" if layout else ""),
        "",
        f"Profile: {doc['profile'] or 'none'}. Cells: {len(records)} planned, "
        + ", ".join(f"{statuses[s]} {s}" for s in (OK, "failed", "skipped", PENDING))
        + ".",
        "",
        f"Entries are the mean ± standard deviation (n - 1) over seeds{seed} on the test split, in nats per "
        "example; AU counts active latent units. Test prior N(0, s² I): 1, f(K,β,δ) (the objective's optimal "
        "variance) or tuned (the s² in [1, f] that maximises the validation ELBO).",
        "",
    ]
    header = [matrix.header(a) for a in spec["rows"]] + ["Test prior"]
    header += [f"{prefix}{METRIC_TITLES.get(m, m)}" for _, prefix in _columns(matrix) for m in spec["columns"]]
    lines, previous = [], []
    for first, by_column in _rows(matrix, table):
        labels = [format_value(first.axes[a]) for a in spec["rows"]]
        # Like the paper, an outer label is printed once for the rows it spans.
        shown = ["" if labels[: i + 1] == previous[: i + 1] else label for i, label in enumerate(labels)]
        previous = labels
        entries = [format_entry(by_column.get(key), m) for key, _ in _columns(matrix) for m in spec["columns"]]
        lines.append([*shown, prior_label(first.prior), *entries])
    out += _markdown_table(header, lines)
    columns = spec["columns"]
    notes = []
    if any(g.status() == OK and any(0 < len(g.values(m)) < g.planned for m in columns) for g in table):
        notes.append("- (k/n): only k of the row's n seeds finished; the others are listed below.")
    if any(g.status() != OK for g in table):
        notes.append("- failed, skipped, pending: no seed of the row finished; the cells are listed below.")
    if notes:
        out += ["", *notes]
    if figures:
        out += ["", "## Figures", ""]
        out += [f"![{title}]({name})" for title, name in figures]
    unfinished = [r for r in records if r is None or r["status"] != OK]
    if unfinished:
        out += ["", "## Cells that did not finish", ""]
        rows = []
        for cell, record in zip(doc["cells"], records, strict=True):
            if record is not None and record["status"] == OK:
                continue
            if record is None:
                rows.append([cell["id"], PENDING, "", "not run yet"])
            else:
                why = record["reason"] or _last_line(record["error"])
                rows.append([cell["id"], record["status"], record["stage"] or "", why])
        out += _markdown_table(["cell", "status", "stage", "reason or last line of the error"], rows)
    return "\n".join(out) + "\n"


def render_csv(matrix: Matrix, table: Sequence[Group]) -> str:
    """One line per group: axis values, test prior, seed counts, status, then METRIC_mean and METRIC_std."""
    spec = matrix.table
    keys = [*spec["rows"], *([spec["column_axis"]] if spec["column_axis"] else [])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [*keys, "test_prior", "seeds_planned", "seeds_ok", "status"]
        + [f"{m}_{stat}" for m in spec["columns"] for stat in ("mean", "std")]
    )
    for group in table:
        stats: list[Any] = []
        for metric in spec["columns"]:
            values = group.values(metric)
            mean, std = mean_std(values) if values else (None, None)
            stats += ["" if mean is None else f"{mean:.6g}", "" if std is None else f"{std:.6g}"]
        labels = [format_value(group.axes[k]) for k in keys]
        writer.writerow([*labels, group.prior, group.planned, len(group.ok()), group.status(), *stats])
    return buffer.getvalue()


def write_report(results_dir: Path, out: Path, plots: bool = True) -> list[Path]:
    """Write report.md, table.csv and (with ``plots``) the figures into ``out``; the paths written."""
    matrix = load_matrix(results_dir)
    table = groups(matrix)
    out.mkdir(parents=True, exist_ok=True)
    written, figures = [], []
    if plots:
        from benchmarks.plots import metric_against_x, scatter_panel

        x_title = matrix.header(matrix.table["x_axis"]) if matrix.table["x_axis"] else ""
        for metric, name, title in FIGURES:
            if metric_against_x(matrix, table, metric, out / name):
                figures.append((f"{title} against {x_title}", name))
        if scatter_panel(matrix, table, out / SCATTER_FIGURE):
            figures.append(("Latent codes of data (blue) and noise (red), as in Fig. 2", SCATTER_FIGURE))
        written += [out / name for _, name in figures]
    (out / "report.md").write_text(render_markdown(matrix, table, figures))
    (out / "table.csv").write_text(render_csv(matrix, table))
    return [out / "report.md", out / "table.csv", *written]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description="Tables and plots of a matrix.")
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="the --out directory of benchmarks.run")
    parser.add_argument("--out", type=Path, help="where to write the report (default: RESULTS_DIR/report)")
    parser.add_argument("--no-plots", action="store_true", help="write only report.md and table.csv")
    args = parser.parse_args(argv)
    try:
        for path in write_report(args.results, args.out or args.results / "report", plots=not args.no_plots):
            print(path)
    except UsageError as error:
        print(f"benchmarks.report: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
