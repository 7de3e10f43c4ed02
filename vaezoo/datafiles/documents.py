"""Text files of one document per line, the format of the shipped Yahoo and PTB files and of the corpora's own
split files (He et al.'s ``yahoo.test.txt``, Mikolov's ``ptb.test.txt``).

UTF-8 text, one document per line, its tokens separated by spaces (the corpora are already tokenised), gzip'd when
the name ends in ``.gz``; a final empty line is dropped. Checked, for any file: the gzip and the UTF-8 decoding.
For a split file (:func:`read_documents`), also: it is a file, not a folder, it holds a line, and no line holds a
tab (a ``label<TAB>text`` file, such as Yelp's, is another format).
"""

from __future__ import annotations

from pathlib import Path

from vaezoo.datafiles.files import DataFile, gunzipped, parsing, read_bytes, require

DOCUMENTS_WHAT = "a UTF-8 text file of one document per line, its tokens separated by spaces (gzip'd if named .gz)"


def decode_lines(path: Path, raw: bytes, what: str) -> list[str]:
    """The lines of ``raw``, the bytes of the UTF-8 text file ``path`` (gunzipped when its name ends in ``.gz``),
    a final empty line dropped; bad gzip or UTF-8 is a UsageError naming the file and ``what`` it should be."""
    with parsing(path, what):
        text = gunzipped(path, raw).decode("utf-8")
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_lines(file: DataFile, data_dir: Path, check_sha256: bool) -> list[str]:
    """The lines of a UTF-8 text file of the data directory, gunzipped when its name ends in ``.gz`` (a final empty
    line dropped); a missing file, a checksum mismatch (when ``check_sha256``), bad gzip or UTF-8 is a UsageError."""
    path, raw = file.read(data_dir, check_sha256)
    return decode_lines(path, raw, file.what)


def read_documents(path: Path) -> list[str]:
    """The documents of a split file named by a data parameter or found in the data directory: one per line, its
    tokens separated by spaces, UTF-8, gzip'd when the name ends in ``.gz`` (as He et al.'s and Mikolov's files
    are, gzip'd or not). A folder, a file without lines, bad gzip or UTF-8, or a tab (a ``label<TAB>text`` file,
    such as Yelp's, is another format) is a UsageError naming the file and the problem."""
    require(path.is_file(), path, DOCUMENTS_WHAT, "it is a folder")
    lines = decode_lines(path, read_bytes(path), DOCUMENTS_WHAT)
    require(bool(lines), path, DOCUMENTS_WHAT, "it holds no lines")
    tabbed = next((number for number, line in enumerate(lines, 1) if "\t" in line), 0)
    require(not tabbed, path, DOCUMENTS_WHAT, f"line {tabbed} holds a tab (a label<TAB>text file is another format)")
    return lines


def user_file(stem: str, what: str, origin: str) -> tuple[DataFile, DataFile]:
    """A file the user may add, as ``STEM.txt.gz`` or ``STEM.txt`` (not shipped, so no checksum)."""
    return DataFile(f"{stem}.txt.gz", what, origin), DataFile(f"{stem}.txt", what, origin)
