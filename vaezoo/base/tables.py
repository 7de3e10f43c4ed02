"""Markdown tables, as every report of vaezoo and its benchmarks renders them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """The lines (without newlines) of a GitHub-flavoured markdown table: the header, the ``|---|`` rule under
    it, then one line per row. Each cell is ``str(cell)``, with any ``|`` in it escaped as ``\\|`` so that it
    stays in its cell; rows are not padded or checked against the header's length."""
    return [_row(header), "|" + "---|" * len(header), *(_row(row) for row in rows)]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"
