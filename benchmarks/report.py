"""Tables and figures of a results directory written by :mod:`vaezoo_bench.run`.

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
- ``fig2_scatter.png``: the latent scatter of each method's first finished seed, as in the paper's Fig. 2;
- ``tradeoff.png`` (suites with ``[suite] tradeoff``, or ``--tradeoff-mi`` / ``--tradeoff-prior``): for each
  value of the column axis (data set), MI (``mi_he`` by default, or ``mi``) and AU against -ELBO and, where
  computed, IW-NLL; every cell but the seed a point with error bars over seeds, one colour and marker per method;
- ``curves.png``: every finished cell's validation -ELBO against the training step, a dot at the tested model.

With ``[suite] published = "NAME"``, a section sets the published figures of ``benchmarks/published/NAME.toml``
beside each method's row, per data set, with each method's time per training step and the orderings of the methods
measured and published (:mod:`vaezoo_bench.comparison`).

With ``[select]``, each tuned row shows its chosen value beside it, a section lists every selection group's choice
and why, and an appendix lists every swept value's validation and test metrics. With ``[suite] reference``, an MI
that differs from its reference row's by less than the estimator can resolve is marked "(n.d.)".

The markdown depends only on the results (no dates or absolute paths), so it can be compared byte for byte.
"""

from __future__ import annotations

import csv
import io
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaezoo.api import Parser, UsageError, check_test_prior, markdown_table, quiet_when_output_closes
from vaezoo_bench.aggregate import (
    CHOSEN,
    METRIC_TITLES,
    MI_METRICS,
    NO_CHOICE,
    WAITING,
    Candidate,
    Choice,
    Comparison,
    Group,
    Matrix,
    canonical,
    compare_mi,
    format_entry,
    format_value,
    groups,
    load_matrix,
    mean_std,
    nats,
    prior_label,
    reference_group,
)
from vaezoo_bench.comparison import published_section
from vaezoo_bench.results import DAMAGED, OK, PENDING

LAYOUT_TITLES = {
    "table1": "in the layout of the paper's Table 1",
    "table2": "in the layout of the paper's Table 2",
    "generic": "",
}
FIGURES = (("mi", "mi_vs_beta.png", "MI"), ("au", "au_vs_beta.png", "AU"))
SCATTER_FIGURE = "fig2_scatter.png"
TRADEOFF_FIGURE = "tradeoff.png"
CURVES_FIGURE = "curves.png"
TRADEOFF_DEFAULTS = {"mi": "mi_he", "prior": "optimal"}
#: A figure of the report: its title, file name and a caption printed under it (or None).
Figure = tuple[str, str, str | None]


def _rows(matrix: Matrix, table: Sequence[Group]) -> list[tuple[Group, dict[str, Group]]]:
    """Table rows: the first group of each row (for its labels) and its groups by column-axis value."""
    column = matrix.table["column_axis"]
    rows: dict[tuple[str, ...], dict[str, Group]] = {}
    for group in table:
        key = (*(canonical(group.axes[a]) for a in matrix.table["rows"]), group.prior)
        rows.setdefault(key, {})[canonical(group.axes[column]) if column else ""] = group
    return [(next(iter(by_column.values())), by_column) for by_column in rows.values()]


def chosen_entry(group: Group | None, axis: str) -> str:
    """A row's chosen value of a tuned axis: "–" when the row is not tuned along it, "?" while its group waits for
    its sweep, "none" when no value qualified."""
    if group is None:
        return "n/a"
    choice = group.choice
    if choice is None or (choice.values is not None and axis not in choice.values):
        return "–"
    if choice.values is not None:
        return format_value(choice.values[axis])
    return "?" if choice.state == WAITING else "none"


def _columns(matrix: Matrix) -> list[tuple[str, str]]:
    """(column-axis key, title prefix) of every group of columns."""
    column = matrix.table["column_axis"]
    if column is None:
        return [("", "")]
    return [(canonical(v), f"{matrix.describe(column, v)} ") for v in matrix.axis_values[column]]


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""


def render_markdown(matrix: Matrix, table: Sequence[Group], figures: Sequence[Figure]) -> str:
    """The report as markdown; ``figures`` are (title, file name, caption) of the figures that were drawn."""
    planned = matrix.planned_cells()
    out = _heading_lines(matrix, planned)
    rows, comparisons = _table_rows(matrix, table)
    out += markdown_table(_table_header(matrix), rows)
    notes = _table_notes(matrix, table, comparisons)
    if notes:
        out += ["", *notes]
    out += published_section(matrix, table)
    if figures:
        out += ["", "## Figures", ""]
        for title, name, caption in figures:
            out += [f"![{title}]({name})"] + (["", caption, ""] if caption else [])
        while out[-1] == "":
            out.pop()
    if matrix.choices:
        out += ["", "## Selection", "", *_selection_lines(matrix)]
    out += _unfinished_lines(matrix, planned)
    if matrix.choices:
        out += ["", "## Appendix: every swept value", "", *_sweep_tables(matrix)]
    return "\n".join(out) + "\n"


def _heading_lines(matrix: Matrix, planned: Sequence[dict[str, Any]]) -> list[str]:
    """The title, the profile and the cells' count by status, and what the entries are (and, for a suite that
    tunes axes, how their values were chosen), ending with a blank line."""
    doc, spec = matrix.document, matrix.table
    records = [matrix.records[cell["id"]] for cell in planned]
    statuses = Counter(
        r["status"] if r else DAMAGED if c["id"] in matrix.damaged else PENDING
        for c, r in zip(planned, records, strict=True)
    )
    layout = LAYOUT_TITLES[spec["layout"]]
    seed = f" (`{spec['seed_axis']}`)" if spec["seed_axis"] else ""
    out = [
        f"# {doc['suite']}" + (f": results {layout}" if layout else ""),
        "",
        f"Profile: {doc['profile'] or 'none'}. Cells: {len(records)} planned, "
        + ", ".join(
            f"{statuses[s]} {s}" for s in (OK, "failed", "skipped", DAMAGED, PENDING) if s != DAMAGED or statuses[s]
        )
        + ".",
        "",
        f"Entries are the mean ± standard deviation (n - 1) over seeds{seed} on the test split, in nats per "
        "example; AU counts active latent units. Test prior N(0, s² I): 1, f(K,β,δ) (the objective's optimal "
        "variance) or tuned (the s² in [1, f] that maximises the validation ELBO).",
        "",
    ]
    if matrix.tuned_axes:
        states = Counter(choice.state for choice in matrix.choices.values())
        names = ", ".join(matrix.header(a) for a in matrix.tuned_axes)
        out[-1:-1] = [
            "",
            f"{names} (chosen): the value chosen for the row on the validation split, then run on every seed "
            f"(section Selection; every swept value's figures are in the appendix). Selection groups: "
            f"{len(matrix.choices)}, {states[CHOSEN]} chosen, {states[WAITING]} waiting for their sweep, "
            f"{len(matrix.choices) - states[CHOSEN] - states[WAITING]} without a choice.",
        ]
    return out


def _table_header(matrix: Matrix) -> list[str]:
    """The row axes' titles, the test prior, then per column group the tuned axes' and the metrics' titles."""
    spec = matrix.table
    header = [matrix.header(a) for a in spec["rows"]] + ["Test prior"]
    chosen_titles = [f"{matrix.header(a)} (chosen)" for a in matrix.tuned_axes]
    header += [f"{prefix}{t}" for _, prefix in _columns(matrix) for t in chosen_titles + _titles(spec["columns"])]
    return header


def _table_rows(matrix: Matrix, table: Sequence[Group]) -> tuple[list[list[str]], list[Comparison]]:
    """The table's rows, and the MI comparisons with the reference rows made for the "(n.d.)" marks."""
    spec, tuned = matrix.table, matrix.tuned_axes
    lines, previous = [], []
    comparisons = []
    for first, by_column in _rows(matrix, table):
        labels = [format_value(first.axes[a]) for a in spec["rows"]]
        # Like the paper, an outer label is printed once for the rows it spans.
        shown = ["" if labels[: i + 1] == previous[: i + 1] else label for i, label in enumerate(labels)]
        previous = labels
        entries = []
        for key, _ in _columns(matrix):
            group = by_column.get(key)
            entries += [chosen_entry(group, a) for a in tuned]
            for metric in spec["columns"]:
                entry = format_entry(group, metric)
                reference = reference_group(matrix, table, group) if group and metric in MI_METRICS else None
                comparison = compare_mi(group, reference, metric) if group and reference else None
                if comparison is not None and group.status() == OK:
                    comparisons.append(comparison)
                    entry += "" if comparison.distinguishable else " (n.d.)"
                entries.append(entry)
        lines.append([*shown, prior_label(first.prior), *entries])
    return lines, comparisons


def _table_notes(matrix: Matrix, table: Sequence[Group], comparisons: list[Comparison]) -> list[str]:
    """The notes under the table: what its marks mean, for the marks it has, and the examples evaluated."""
    columns = matrix.table["columns"]
    notes = []
    if any(g.status() == OK and any(0 < len(g.values(m)) < g.planned for m in columns) for g in table):
        notes.append("- (k/n): only k of the row's n seeds finished; the others are listed below.")
    if any(g.status() not in (OK, NO_CHOICE) for g in table):
        notes.append("- failed, skipped, pending: no seed of the row finished; the cells are listed below.")
    if any(g.status() == NO_CHOICE for g in table):
        notes.append("- no choice: no swept value of the row qualified under the selection rule (section Selection).")
    reference = matrix.table.get("reference")
    if reference and any(m in MI_METRICS for m in columns):
        notes.append(_distinguishable_note(matrix, comparisons))
    examples = _examples_note(matrix)
    if examples:
        notes.append(examples)
    return notes


def _unfinished_lines(matrix: Matrix, planned: Sequence[dict[str, Any]]) -> list[str]:
    """The section listing every planned cell that did not finish, with its status and why; a cell whose cell.json
    is damaged is listed as such (left out of the table) with what is wrong with the file."""
    rows = []
    for cell in planned:
        record = matrix.records[cell["id"]]
        if cell["id"] in matrix.damaged:
            rows.append([cell["id"], DAMAGED, "", f"left out: its cell.json is {matrix.damaged[cell['id']]}"])
        elif record is None:
            rows.append([cell["id"], PENDING, "", "not run yet"])
        elif record["status"] != OK:
            rows.append(
                [cell["id"], record["status"], record["stage"] or "", record["reason"] or _last_line(record["error"])]
            )
    if not rows:
        return []
    header = ["cell", "status", "stage", "reason or last line of the error"]
    return ["", "## Cells that did not finish", "", *markdown_table(header, rows)]


def _titles(metrics: Sequence[str]) -> list[str]:
    return [METRIC_TITLES.get(m, m) for m in metrics]


def _distinguishable_note(matrix: Matrix, comparisons: Sequence[Comparison]) -> str:
    """The note that explains "(n.d.)": the reference row and the threshold of each MI column, as used."""
    reference = matrix.describe_all(matrix.table["reference"])
    marked = sum(not c.distinguishable for c in comparisons)
    text = (
        f"- (n.d.): not distinguishable: the row's MI differs from that of its reference row ({reference}, every other "
        f"value the same) by less than the estimator can resolve ({marked} entries)."
    )
    if "mi_he" in matrix.table["columns"]:
        bases = list(dict.fromkeys(c.basis for c in comparisons if c.metric == "mi_he"))
        he = f": {'; '.join(bases)}" if bases else " (D and n not recorded by these cells: no mark)"
        text += (
            " MI (He et al.): less than its standard deviation on a collapsed encoder, √(D/2n) for D latent "
            f"dimensions and n test examples{he}."
        )
    if "mi" in matrix.table["columns"]:
        text += (
            " MI: that estimator is exactly 0 on a collapsed encoder, so it has no such floor; the threshold is the "
            "spread over seeds of a difference of two runs, √(s_row² + s_ref²), and rows with fewer than two finished "
            "seeds (or their reference) are not marked."
        )
    return text


def _examples_note(matrix: Matrix) -> str | None:
    """How many test examples the finished cells' figures average over, and IW-NLL's, with its standard error over
    those examples, where it used fewer (``eval.iw_limit``); None without any finished cell that says."""
    tests, iw, errors = set(), set(), []
    for record in matrix.records.values():
        if record is None or record["status"] != OK or not record.get("examples"):
            continue
        tests.add(record["examples"]["test"])
        for metrics in record["test_priors"].values():
            if "iw_examples" in metrics:
                iw.add(int(metrics["iw_examples"]))
                errors.append(float(metrics["iw_nll_se"]))
    if not tests:
        return None
    note = f"- Test figures average over {_counts(tests)} test examples per cell"
    if iw and iw != tests:
        note += (
            f"; IW-NLL over {_counts(iw)} of them, spread evenly over the split, with a standard error over those "
            f"examples of {min(errors):.2f} to {max(errors):.2f} nats per cell"
        )
    return note + "."


def _counts(values: set[int]) -> str:
    return " or ".join(f"{v:,}" for v in sorted(values))


def _rule_text(matrix: Matrix, index: int, rule: dict[str, Any]) -> str:
    """A selection rule in a sentence, with the test priors its cells' validation lines were evaluated under."""
    ids = [i for c in matrix.choices.values() if c.group["select"] == index for i in _sweep_and_reference(c)]
    valid = [(matrix.records.get(i) or {}).get("valid") for i in ids]
    priors = list(dict.fromkeys(prior_label(v["test_prior"]) for v in valid if v))
    tuned = ", ".join(matrix.header(a) for a in rule["axes"])
    where = "; ".join(f"{matrix.header(a)} in {{{', '.join(ids)}}}" for a, ids in rule["where"].items())
    superlative = "largest" if rule["rule"] == "max" else "smallest"
    text = (
        f"{tuned}, tuned for the cells with {where or 'any values'}: every value runs on the first "
        f"{rule['sweep_seeds']} seed(s) (phase 1); each row takes the value with the {superlative} validation "
        f"{METRIC_TITLES.get(rule['metric'], rule['metric'])} (the validation line of the tested model: the last, or "
        "the best -ELBO's with train.test_model = best; mean over those seeds)"
    )
    within = rule.get("within")
    if within:
        text += (
            f", among the values whose validation {METRIC_TITLES.get(within['metric'], within['metric'])} is at most "
            f"{nats(within['nats'])} above that of the row's {matrix.describe_all(within['of'])} cell(s) on the same "
            "seeds"
        )
    text += ", ties going to the value listed first; the chosen value then runs on the other seeds (phase 2)."
    if within:
        text += f" Validation {METRIC_TITLES.get(within['metric'], within['metric'])} is under each run's own test "
        text += f"prior (eval.test_prior: {', '.join(priors) or 'not recorded'})."
    return text


def _selection_lines(matrix: Matrix) -> list[str]:
    rules = matrix.selection["rules"]
    lines = [f"Rule {i + 1}: {_rule_text(matrix, i, rule)}" for i, rule in enumerate(rules)]
    for choice in matrix.choices.values():
        prefix = f"rule {choice.group['select'] + 1}, " if len(rules) > 1 else ""
        lines.append(
            f"- {matrix.describe_all(choice.group['axes'])} ({prefix}{choice.state}): {matrix.explain(choice)}"
        )
    return [lines[0], "", *lines[1:]] if len(rules) == 1 else [*lines[: len(rules)], "", *lines[len(rules) :]]


def _sweep_and_reference(choice: Choice) -> list[str]:
    return [*(i for spec in choice.group["candidates"] for i in spec["sweep"]), *choice.group["reference"]]


def _sweep_tables(matrix: Matrix) -> list[str]:
    """One table per rule: each group's swept values, their validation metrics and their test metrics under each
    test prior (mean ± std over the sweep seeds)."""
    columns = matrix.table["columns"]
    cells = {cell["id"]: cell for cell in matrix.document["cells"]}
    out: list[str] = []
    for index, rule in enumerate(matrix.selection["rules"]):
        choices = [c for c in matrix.choices.values() if c.group["select"] == index]
        if not choices:
            continue
        axes = list(choices[0].group["axes"])
        within = rule.get("within")
        header = [matrix.header(a) for a in axes] + [matrix.header(a) for a in rule["axes"]]
        header += ["seeds", f"valid {METRIC_TITLES.get(rule['metric'], rule['metric'])}"]
        if within:
            title = METRIC_TITLES.get(within["metric"], within["metric"])
            header += [f"valid {title}", f"Δ {title} vs {matrix.describe_all(within['of'])}"]
        header += ["chosen", "Test prior", *_titles(columns)]
        lines, previous = [], []
        for choice in choices:
            for position, (spec, candidate) in enumerate(zip(choice.group["candidates"], _scored(choice), strict=True)):
                records = tuple(matrix.records[i] for i in spec["sweep"])
                for prior in cells[spec["sweep"][0]]["test_priors"]:
                    labels = [format_value(choice.group["axes"][a]) for a in axes]
                    labels += [format_value(spec["values"][a]) for a in rule["axes"]]
                    shown = ["" if labels[: i + 1] == previous[: i + 1] else x for i, x in enumerate(labels)]
                    previous = labels
                    # The validation figures do not depend on the test prior: printed on the value's first line.
                    validation = [str(len(spec["sweep"])), _number(candidate and candidate.score, 3, candidate)]
                    if within:
                        validation += [_number(candidate and candidate.constraint, 2, candidate)]
                        validation += [_number(candidate and candidate.excess, 2, candidate, sign=True)]
                    validation += ["✓" if choice.chosen == position else ""]
                    if shown == [""] * len(shown):
                        validation = [""] * len(validation)
                    group = Group({}, prior, records)
                    lines.append([*shown, *validation, prior_label(prior), *(format_entry(group, m) for m in columns)])
        if len(matrix.selection["rules"]) > 1:
            out += [f"Rule {index + 1}:", ""]
        out += [*markdown_table(header, lines), ""]
    return out[:-1]


def _scored(choice: Choice) -> list[Candidate | None]:
    """The group's candidates as scored (every one, also while the group waits)."""
    return list(choice.candidates) or [None] * len(choice.group["candidates"])


def _number(value: float | None, digits: int, candidate: Candidate | None, sign: bool = False) -> str:
    """A validation figure of the appendix, or why the value has none (its status)."""
    if value is not None:
        return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    return candidate.status if candidate is not None and candidate.status != OK else ""


def render_csv(matrix: Matrix, table: Sequence[Group]) -> str:
    """One line per group: axis values, the chosen values of tuned axes (``chosen_AXIS``, with ``[select]``), test
    prior, seed counts, status, then METRIC_mean and METRIC_std."""
    spec = matrix.table
    keys = [*spec["rows"], *([spec["column_axis"]] if spec["column_axis"] else [])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    tuned = matrix.tuned_axes
    writer.writerow(
        [*keys, *(f"chosen_{a}" for a in tuned), "test_prior", "seeds_planned", "seeds_ok", "status"]
        + [f"{m}_{stat}" for m in spec["columns"] for stat in ("mean", "std")]
    )
    for group in table:
        stats: list[Any] = []
        for metric in spec["columns"]:
            values = group.values(metric)
            mean, std = mean_std(values) if values else (None, None)
            stats += ["" if mean is None else f"{mean:.6g}", "" if std is None else f"{std:.6g}"]
        labels = [format_value(group.axes[k]) for k in keys]
        chosen = [chosen_entry(group, a) for a in tuned]
        writer.writerow([*labels, *chosen, group.prior, group.planned, len(group.ok()), group.status(), *stats])
    return buffer.getvalue()


def write_report(
    results_dir: Path, out: Path, plots: bool = True, tradeoff: dict[str, str] | None = None
) -> list[Path]:
    """Write report.md, table.csv and (with ``plots``) the figures into ``out``; the paths written.

    The trade-off figure is drawn when the suite asks for it (``[suite] tradeoff``) or ``tradeoff`` gives settings
    (``mi``: mi_he or mi; ``prior``: the test prior of -ELBO and IW-NLL), which override the suite's."""
    matrix = load_matrix(results_dir)
    table = groups(matrix)
    make_directory(out, "--out")
    written, figures = [], []
    if plots:
        from vaezoo_bench.plots import metric_against_x, scatter_panel, tradeoff_figure, validation_curves

        x_title = matrix.header(matrix.table["x_axis"]) if matrix.table["x_axis"] else ""
        for metric, name, title in FIGURES:
            if metric_against_x(matrix, table, metric, out / name):
                figures.append((f"{title} against {x_title}", name, None))
        if scatter_panel(matrix, table, out / SCATTER_FIGURE):
            figures.append(("Latent codes of data (blue) and noise (red), as in Fig. 2", SCATTER_FIGURE, None))
        if matrix.table.get("tradeoff") is not None or tradeoff:
            settings = {**TRADEOFF_DEFAULTS, **(matrix.table.get("tradeoff") or {}), **(tradeoff or {})}
            drawn = tradeoff_figure(matrix, out / TRADEOFF_FIGURE, settings["mi"], settings["prior"])
            if drawn:
                figures.append(_tradeoff_caption(settings, drawn))
        if validation_curves(matrix, out / CURVES_FIGURE):
            caption = (
                "Validation -ELBO (under the run's evaluation test prior) against the training step of every finished "
                "cell, one colour per β; the dot marks the tested model (the lowest validation -ELBO where the run "
                'keeps it, train.test_model = "best"; else the last step).'
            )
            figures.append(("Validation curves", CURVES_FIGURE, caption))
        written += [out / name for _, name, _ in figures]
    (out / "report.md").write_text(render_markdown(matrix, table, figures))
    (out / "table.csv").write_text(render_csv(matrix, table))
    return [out / "report.md", out / "table.csv", *written]


def make_directory(path: Path, role: str) -> None:
    """Create the directory ``path`` (and its parents) if it is missing; a UsageError naming it and ``role`` (the
    option that named it) when it is a file, lies under one, or cannot be created."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{role} {str(path)!r} is a file; name a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{role} {str(path)!r} cannot be created: {error.strerror}") from None


def _tradeoff_caption(settings: dict[str, str], drawn: Sequence[dict[str, Any]]) -> Figure:
    mi = METRIC_TITLES[settings["mi"]]
    points = sum(len(d["points"]) for d in drawn if d["x"] == "neg_elbo" and d["y"] == settings["mi"])
    others: dict[str, list[str]] = {}
    for entry in drawn:
        for prior in entry["priors"]:
            if prior != settings["prior"] and entry["series"] not in others.setdefault(prior, []):
                others[prior].append(entry["series"])
    elsewhere = "; ".join(f"{', '.join(series)} under {prior_label(prior)}" for prior, series in others.items())
    caption = (
        f"Trade-off: {mi} and AU against -ELBO (and IW-NLL where computed), one point per cell but the seed "
        f"({points} points), mean ± std over seeds in both directions, one colour and marker per method; hollow "
        f"markers are swept values that were not chosen. -ELBO and IW-NLL under the test prior "
        f"{prior_label(settings['prior'])}"
        + (
            f", but {elsewhere}: the cells' first test prior, the only one they were evaluated under."
            if others
            else "."
        )
    )
    return (f"{mi} and AU against -ELBO", TRADEOFF_FIGURE, caption)


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.report") -> int:
    """The command; ``prog`` names it in its usage and errors (``vaezoo bench report`` when run so)."""
    parser = Parser(prog=prog, description="Tables and plots of a matrix.")
    parser.add_argument("results", type=Path, metavar="RESULTS_DIR", help="the --out directory of a suite's run")
    parser.add_argument("--out", type=Path, help="where to write the report (default: RESULTS_DIR/report)")
    parser.add_argument("--no-plots", action="store_true", help="write only report.md and table.csv")
    parser.add_argument(
        "--tradeoff-mi",
        choices=MI_METRICS,
        help="draw tradeoff.png with this MI estimator (default: the suite's, else mi_he)",
    )
    parser.add_argument(
        "--tradeoff-prior",
        metavar="PRIOR",
        help="draw tradeoff.png with -ELBO and IW-NLL under this test prior (default: the suite's, else optimal)",
    )
    args = parser.parse_args(argv)
    tradeoff = {k: v for k, v in (("mi", args.tradeoff_mi), ("prior", args.tradeoff_prior)) if v is not None}
    try:
        if args.tradeoff_prior is not None:
            check_test_prior(args.tradeoff_prior)
        for path in write_report(args.results, args.out or args.results / "report", not args.no_plots, tradeoff):
            print(path)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
