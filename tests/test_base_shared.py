"""The shared helpers of the foundation layer: markdown tables, atomic file writes and timestamps."""

from __future__ import annotations

from vaezoo.base.tables import markdown_table

# -- tables --------------------------------------------------------------------------------------------------------


def test_a_table_has_its_header_a_rule_per_column_and_a_line_per_row():
    assert markdown_table(["a", "b"], [[1, 2.5], ["x", None]]) == [
        "| a | b |",
        "|---|---|",
        "| 1 | 2.5 |",
        "| x | None |",
    ]


def test_a_pipe_in_a_cell_is_escaped_so_that_it_stays_in_its_cell():
    lines = markdown_table(["what|ever"], [["a|b"], [""]])
    assert lines == ["| what\\|ever |", "|---|", "| a\\|b |", "|  |"]


def test_a_table_without_rows_is_its_header_and_rule():
    assert markdown_table(("run", "MI"), iter([])) == ["| run | MI |", "|---|---|"]
