"""The report's section on published figures (a suite with ``[suite] published = "NAME"``): per data set (value of
the column axis), each measured method's row followed by the rows a paper printed for the same method and data set
(:mod:`vaezoo_bench.published`), with each method's training time per step relative to the suite's reference row;
then the orderings of the methods by MI, AU and likelihood, measured and published, and their Spearman rank
correlation.

Imports neither torch nor vaezoo's models.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from vaezoo.api import markdown_table
from vaezoo_bench.aggregate import (
    DIGITS,
    METRIC_TITLES,
    Group,
    Matrix,
    canonical,
    format_entry,
    format_value,
    mean_std,
    prior_label,
)
from vaezoo_bench.matrix.model import slugify
from vaezoo_bench.published import Published, PublishedRow, load_published
from vaezoo_bench.results import OK

#: The orderings compared besides the likelihood's: (metric, largest first?).
ORDERINGS = (("mi_he", True), ("au", True))
#: The likelihood metrics an ordering may use, the first that enough methods have on both sides.
LIKELIHOODS = ("iw_nll", "neg_elbo")
#: The fewest methods whose orderings are compared.
FEWEST = 3
#: Where each perplexity column's figure comes from.
BOUNDS = {"ppl_iw": "exp of IW-NLL per word", "ppl_elbo": "exp of -ELBO per word"}


def published_section(matrix: Matrix, table: Sequence[Group]) -> list[str]:
    """The section's lines (starting with a blank line), none for a suite without ``published``."""
    name = matrix.table.get("published")
    if not name:
        return []
    published = load_published(name)
    column = matrix.table["column_axis"]
    data_ids = {value_id(matrix, column, value) for value in matrix.axis_values[column]}
    rows = [row for row in published.rows if row.data in data_ids]
    out = ["", "## Published figures", "", *_intro(matrix, published, rows)]
    for value in matrix.axis_values[column]:
        data_id = value_id(matrix, column, value)
        groups = [g for g in table if canonical(g.axes[column]) == canonical(value)]
        out += ["", f"### {format_value(value)}", "", *comparison_table(matrix, published, groups, data_id)]
        out += ["", *ordering_block(matrix, published, groups, data_id)]
        absent = _absent(matrix, published, data_id)
        if absent:
            out += ["", f"Published rows of methods this suite does not run on {format_value(value)}: {absent}."]
    return out


def value_id(matrix: Matrix, axis: str, label: Any) -> str:
    """The id of the value of ``axis`` with this label (matrix.json ``axes[].ids``; the label made filesystem-safe
    for a matrix.json written before it held them)."""
    entry = next(a for a in matrix.document["axes"] if a["name"] == axis)
    ids = entry.get("ids") or [slugify(v) for v in entry["values"]]
    by_label = {canonical(v): i for v, i in zip(entry["values"], ids, strict=True)}
    return by_label.get(canonical(label), slugify(label))


def _intro(matrix: Matrix, published: Published, rows: Sequence[PublishedRow]) -> list[str]:
    """What the section's tables hold, where published MI and PPL go, what time/step is, and the sources (of
    ``rows``, the published rows on the suite's data sets)."""
    reference = matrix.table.get("reference")
    relative = f"relative to the {matrix.describe_all(reference)} row of the same data set, " if reference else ""
    lines = [
        "Each measured row (Source: measured; mean ± std over seeds, as above) is followed by the figures papers "
        f"printed for the same method and data set (`benchmarks/published/{published.name}.toml`: Source, the "
        "paper's Setting, its mean and, where printed, its standard deviation). The papers' networks, data and "
        "budgets differ from this suite's, so compare the orderings of the methods, not the numbers.",
        "",
        "- Published MI is under MI (He et al.): the papers' MI is He et al.'s estimate, vaezoo's `mi_he` (some "
        "papers aggregate the posterior over their whole evaluation set rather than over minibatches: the file's "
        "notes say which).",
    ]
    ppl: dict[str, set[str]] = {}
    for row in rows:
        if "ppl" in row.metrics:
            ppl.setdefault(row.column("ppl"), set()).add(row.source)
    if ppl:
        where = "; ".join(f"under {METRIC_TITLES[c]} ({BOUNDS[c]}) for {', '.join(sorted(s))}" for c, s in ppl.items())
        lines.append(f"- Published PPL (per word) is under the column of the bound it comes from: {where}.")
    lines.append(
        "- time/step: the mean over seeds of each cell's training wall time per training step (cell.json "
        f"train.wall_time_s / train.steps), {relative}with the milliseconds in parentheses; it includes the validation "
        "evaluations and checkpoints every eval_every steps."
    )
    sources = dict.fromkeys(row.source for row in rows)
    lines.append("- Sources: " + "; ".join(f"{name}: {published.sources[name]}" for name in sources) + ".")
    return lines


def _absent(matrix: Matrix, published: Published, data_id: str) -> str:
    """The published methods on ``data_id`` that are not values of the suite's method axis, as text."""
    entry = next(a for a in matrix.document["axes"] if a["name"] == "method")
    ours = {value_id(matrix, "method", v) for v in entry["values"]}
    return ", ".join(dict.fromkeys(r.method for r in published.rows if r.data == data_id and r.method not in ours))


# -- the table -----------------------------------------------------------------------------------------------------


def table_columns(matrix: Matrix, rows: Sequence[PublishedRow]) -> list[str]:
    """The suite's columns, then any column a published row has a figure for that the suite lacks."""
    columns = list(matrix.table["columns"])
    return columns + [c for c in dict.fromkeys(c for r in rows for c in r.by_column()) if c not in columns]


def comparison_table(matrix: Matrix, published: Published, groups: Sequence[Group], data_id: str) -> list[str]:
    """One data set's table: each measured row (one per method and test prior) followed, after the method's last
    row, by the method's published rows on ``data_id``."""
    methods = [value_id(matrix, "method", g.axes["method"]) for g in groups]
    mine = [row for method in dict.fromkeys(methods) for row in published.of(method, data_id)]
    columns = table_columns(matrix, mine)
    reference = step_time(_reference(matrix, groups))
    header = [matrix.header("method"), "Source", "Setting", "time/step", *(METRIC_TITLES.get(c, c) for c in columns)]
    lines = []
    for index, (group, method) in enumerate(zip(groups, methods, strict=True)):
        time = _time_entry(step_time(group), reference)
        lines.append([format_value(group.axes["method"]), "measured", _setting(matrix, group), time])
        lines[-1] += [format_entry(group, c) for c in columns]
        if index + 1 < len(methods) and methods[index + 1] == method:
            continue  # the published rows follow the method's last row
        for row in published.of(method, data_id):
            figures = row.by_column()
            entries = [_printed(*figures[c], c) if c in figures else "" for c in columns]
            lines.append(["", row.source, row.setting, "", *entries])
    return markdown_table(header, lines)


def _printed(value: float, sd: float | None, column: str) -> str:
    """A published figure at its column's decimals (a published AU is a mean over runs: never a whole number)."""
    digits = DIGITS.get(column, 2)
    return f"{value:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def step_time(group: Group | None) -> float | None:
    """The mean over the group's finished cells of training wall time / training steps (seconds), or None."""
    times = [
        r["train"]["wall_time_s"] / r["train"]["steps"]
        for r in (group.ok() if group is not None else [])
        if (r.get("train") or {}).get("steps") and r["train"].get("wall_time_s") is not None
    ]
    return mean_std(times)[0] if times else None


def _reference(matrix: Matrix, groups: Sequence[Group]) -> Group | None:
    """The data set's finished group of the suite's reference row (its first test prior), or None."""
    reference = matrix.table.get("reference") or {}
    wanted = {a: canonical(v) for a, v in reference.items()}
    found = (g for g in groups if g.status() == OK and all(canonical(g.axes.get(a)) == v for a, v in wanted.items()))
    return next(found, None) if reference else None


def _time_entry(seconds: float | None, reference: float | None) -> str:
    if seconds is None:
        return "n/a"
    milliseconds = f"{1000 * seconds:.1f} ms"
    return milliseconds if not reference else f"{seconds / reference:.2f} ({milliseconds})"


def _setting(matrix: Matrix, group: Group) -> str:
    """A measured row's setting: its test prior, and the values chosen for it by the suite's selection."""
    text = f"test prior {prior_label(group.prior)}"
    choice = group.choice
    if choice is not None and choice.values is not None:
        text += "; " + ", ".join(f"{matrix.header(a)} = {format_value(v)}" for a, v in choice.values.items())
        text += " (chosen)"
    elif choice is not None:
        text += f"; {choice.state}"
    return text


# -- the orderings -------------------------------------------------------------------------------------------------


def ordering_block(matrix: Matrix, published: Published, groups: Sequence[Group], data_id: str) -> list[str]:
    """The orderings of the data set's methods by MI (He et al.), AU and likelihood (IW-NLL where at least 3 methods
    have it on both sides, else -ELBO): measured (every method, and the methods with published figures) and
    published, with the Spearman rank correlation of the two; or why there are none."""
    firsts: dict[str, Group] = {}
    for group in groups:  # each method's first row (its first test prior)
        if group.status() == OK:
            firsts.setdefault(format_value(group.axes["method"]), group)
    rows = {label: published.of(value_id(matrix, "method", label), data_id) for label in firsts}
    having = [label for label, found in rows.items() if found]
    if len(having) < FEWEST:
        return [
            f"Ordering: only {len(having)} of the measured methods {'has' if len(having) == 1 else 'have'} "
            f"published figures on this data set, fewer than {FEWEST}: no orderings compared."
        ]
    metrics = [m for m, _ in ORDERINGS] + list(LIKELIHOODS)
    measured = {m: {label: _mean(g, m) for label, g in firsts.items()} for m in metrics}
    printed = {m: {label: _published_value(found, m) for label, found in rows.items()} for m in metrics}
    likelihood = next((m for m in LIKELIHOODS if len(_common(measured[m], printed[m])) >= FEWEST), LIKELIHOODS[-1])
    lines = [
        _ordering_line(metric, largest, measured[metric], printed[metric])
        for metric, largest in (*ORDERINGS, (likelihood, False))
    ]
    header = ["ranked by", "measured: every method", "measured: methods with published figures", "published"]
    used = "; ".join(f"{label}: {found[0].source}, {found[0].setting}" for label, found in rows.items() if found)
    note = (
        "Ordering (best first; '=' ties): the published ordering takes each method's first published row above "
        f"({used}). Spearman's ρ compares the two orderings of the methods that have both figures (ties at their "
        "average rank)."
    )
    return [*markdown_table([*header, "Spearman ρ (methods)"], lines), "", note]


def _ordering_line(
    metric: str, largest: bool, measured: Mapping[str, float | None], printed: Mapping[str, float | None]
) -> list[str]:
    """One line of the ordering table: the metric, the three orderings, and ρ over the methods with both."""
    common = _common(measured, printed)
    ours = {label: mine for label, (mine, _) in common.items()}
    theirs = {label: published for label, (_, published) in common.items()}
    every = {label: value for label, value in measured.items() if value is not None}
    title = f"{METRIC_TITLES[metric]}, {'largest' if largest else 'smallest'} first"
    rho = spearman(list(ours.values()), list(theirs.values())) if len(common) >= FEWEST else None
    return [title, ranking(every, largest), ranking(ours, largest), ranking(theirs, largest), _rho_text(rho, common)]


def _mean(group: Group, metric: str) -> float | None:
    values = group.values(metric)
    return mean_std(values)[0] if values else None


def _published_value(rows: Sequence[PublishedRow], column: str) -> float | None:
    """The figure under ``column`` (a report column) of the first of ``rows``; None without rows or that figure."""
    found = rows[0].by_column().get(column) if rows else None
    return None if found is None else found[0]


def _common(
    measured: Mapping[str, float | None], printed: Mapping[str, float | None]
) -> dict[str, tuple[float, float]]:
    """The methods with both a measured and a published figure, in table order: label -> (measured, published)."""
    return {k: (v, w) for k, v in measured.items() if v is not None and (w := printed.get(k)) is not None}


def _rho_text(rho: float | None, common: Mapping[str, Any]) -> str:
    methods = len(common)
    if methods < FEWEST:
        return f"– ({methods}: fewer than {FEWEST})"
    return f"{rho:.2f} ({methods})" if rho is not None else f"undefined: one side all tied ({methods})"


def ranking(values: Mapping[str, float], largest: bool) -> str:
    """The labels ordered best first (``largest``: by decreasing value), ties (equal values) joined by '='."""
    if not values:
        return "–"
    ordered = sorted(values, key=lambda k: -values[k] if largest else values[k])
    text = ordered[0]
    for before, label in itertools.pairwise(ordered):
        text += (" = " if values[label] == values[before] else " > ") + label
    return text


def average_ranks(values: Sequence[float]) -> list[float]:
    """Each value's rank (1 for the smallest), tied values sharing the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Spearman's rank correlation: the Pearson correlation of the average ranks; None when either side's ranks
    do not vary (all tied)."""
    a, b = average_ranks(first), average_ranks(second)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    spread = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return covariance / spread if spread > 0 else None
