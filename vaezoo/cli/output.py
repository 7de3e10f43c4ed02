"""How the commands print metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vaezoo.evaluation.metric_names import METRIC_LEGEND, METRIC_NAMES

if TYPE_CHECKING:  # the command line imports torch only when a command needs it
    pass


def format_metrics(columns: dict[str, dict[str, Any]]) -> str:
    """A table of metrics, one row per metric in a fixed order and one column per entry of ``columns`` (e.g.
    ``{"value": metrics}``, or one per test prior), with its unit in the header and a legend line below."""
    names = [n for n in METRIC_NAMES if any(n in m for m in columns.values())]
    names += sorted({n for m in columns.values() for n in m} - set(METRIC_NAMES))
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
    lines.append("; ".join(METRIC_LEGEND[name] for name in names if name in METRIC_LEGEND))
    return "\n".join(lines)
