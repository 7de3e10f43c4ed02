"""How the commands print metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_metrics(columns: dict[str, dict[str, Any]], catalogue: Mapping[str, Mapping[str, Any]]) -> str:
    """A table of metrics, one row per metric in the ``catalogue``'s order (see
    :func:`vaezoo.evaluation.evaluate.metric_catalogue`; names it lacks come last, sorted) and one column per entry
    of ``columns`` (e.g. ``{"value": metrics}``, or one per test prior), with its unit in the header and the
    catalogue's legends below."""
    names = [n for n in catalogue if any(n in m for m in columns.values())]
    names += sorted({n for m in columns.values() for n in m} - set(catalogue))
    title = "metric (nats per example)"
    width = max(len(n) for n in [*names, title])
    headers = [f"{title:<10}" for title in columns]
    lines = [
        "  ".join([f"{title:<{width}}", *headers]).rstrip(),
        "  ".join(["-" * width, *["-" * len(h) for h in headers]]),
    ]
    for name in names:
        cells = []
        for title, metrics in columns.items():
            value = metrics.get(name)
            text = "" if value is None else f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
            cells.append(f"{text:<{max(10, len(title))}}")
        lines.append("  ".join([f"{name:<{width}}", *cells]).rstrip())
    legends = [catalogue[name]["legend"] for name in names if name in catalogue and catalogue[name]["legend"]]
    lines.append("; ".join(legends))
    return "\n".join(lines)
