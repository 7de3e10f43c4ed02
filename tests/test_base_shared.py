"""The shared helpers of the foundation layer: markdown tables, atomic file writes and timestamps."""

from __future__ import annotations

import datetime
import json
import os
import re
import stat

import pytest

import vaezoo.base.files as files
from vaezoo.base.files import write_bytes_atomically, write_json_atomically, write_text_atomically
from vaezoo.base.tables import markdown_table
from vaezoo.base.timestamps import local_timestamp

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


# -- atomic writes -------------------------------------------------------------------------------------------------


def test_json_is_written_indented_with_a_final_newline_and_ascii_unless_asked_otherwise(tmp_path):
    path = tmp_path / "record.json"
    write_json_atomically(path, {"β": [1, 2]})
    assert path.read_text() == '{\n  "\\u03b2": [\n    1,\n    2\n  ]\n}\n'
    write_json_atomically(path, {"β": 1}, ensure_ascii=False)
    assert path.read_bytes() == '{\n  "β": 1\n}\n'.encode()
    assert json.loads(path.read_text(encoding="utf-8")) == {"β": 1}


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old content")
    real_write = os.write

    def failing_write(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:3]))  # part of the new content reaches the temporary file, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        write_bytes_atomically(path, b"new content", durable=True)
    monkeypatch.undo()
    assert path.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "matrix.json"
    write_text_atomically(path, "old\n")

    def interrupted(fd: int, data: bytes) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomically(path, {"new": True})
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["matrix.json"]


def test_a_write_replaces_the_file_whole_through_a_temporary_of_the_same_directory(tmp_path, monkeypatch):
    path = tmp_path / "cell.json"
    path.write_text("a much longer old content than the new one\n")
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace", lambda src, dst: renames.append((src, dst)) or real_replace(src, dst))
    write_text_atomically(path, "new\n")
    assert path.read_text() == "new\n"
    [(temporary, target)] = renames
    assert target == path and temporary.parent == tmp_path
    assert re.fullmatch(rf"\.cell\.json\.{os.getpid()}-[0-9a-f]+\.tmp", temporary.name)


def test_a_new_file_gets_the_permissions_the_umask_allows(tmp_path):
    previous = os.umask(0o022)
    try:
        write_bytes_atomically(tmp_path / "f", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_a_missing_directory_is_an_error_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_text_atomically(tmp_path / "missing" / "f.txt", "x")
    assert list(tmp_path.iterdir()) == []


# -- timestamps ----------------------------------------------------------------------------------------------------


def test_a_timestamp_is_local_time_to_the_second_with_its_utc_offset():
    before = datetime.datetime.now().astimezone().replace(microsecond=0)
    text = local_timestamp()
    after = datetime.datetime.now().astimezone()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", text), text
    parsed = datetime.datetime.fromisoformat(text)
    assert parsed.utcoffset() == before.utcoffset()
    assert before <= parsed <= after
