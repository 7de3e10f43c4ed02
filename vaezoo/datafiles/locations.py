"""Which files make a data set's splits: files named by data parameters, standard files found in the data
directory, and the notes that say which of these a run uses.

A data parameter naming a file (:func:`file_param`) holds a path absolute or relative to the data set's folder
``DATA_DIR/FOLDER``; :func:`given_path` checks that it exists, suggesting the gzip'd or gunzipped twin when that is
what exists. Standard files (the user's copies of a corpus's own files, not shipped) are looked for by name
(:func:`first_present`, :func:`present`). Adding one to the data directory can change what ``data.source=auto``
reads, so a source notes each one it uses that way (:func:`auto_note`, its reason :data:`CHOSEN_BY_AUTO`) and each
one present that it does not use (:func:`unused_note`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaezoo.base.errors import UsageError
from vaezoo.base.params import param
from vaezoo.datafiles.files import DataFile

#: Why a split comes from a standard file that ``data.source=auto`` found in the data directory.
CHOSEN_BY_AUTO = "data.source=auto, as it is present"


def file_param(folder: str, help: str) -> Any:
    """A data parameter naming a file: empty (the default) for none, else a path, absolute or relative to the
    data set's folder ``DATA_DIR/folder``; ``help`` says which splits it makes."""
    return param("", help=f"{help}; absolute, or relative to DATA_DIR/{folder} (default empty: none)")


def given_path(data_dir: Path, folder: str, name: str, value: str) -> Path:
    """The file or folder that the data parameter ``name`` set to ``value`` names, as an absolute path: ``value`` if
    absolute, else ``data_dir/folder/value``. A path that does not exist is a UsageError naming the parameter, the
    path and, when there is one, its gzip'd or gunzipped twin."""
    try:
        path = Path(os.path.abspath(data_dir / folder / Path(value).expanduser()))  # ".." resolved, links kept
        if path.exists():
            return path
    except (OSError, ValueError) as error:  # e.g. a NUL byte, or a name too long for the file system
        raise UsageError(f"data.{name}: {value!r} is not a usable path ({error})") from None
    twin = path.with_name(path.name.removesuffix(".gz")) if path.suffix == ".gz" else path.with_name(path.name + ".gz")
    hint = f"; there is '{twin}'" if twin.exists() else ""
    raise UsageError(
        f"data.{name}: '{path}' does not exist (a relative path is taken from '{data_dir / folder}'){hint}"
    )


def first_present(folder: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (files or folders) present in ``folder``."""
    return next((folder / name for name in names if (folder / name).exists()), None)


def present(data_dir: Path, candidates: Sequence[DataFile]) -> DataFile | None:
    """The first of ``candidates`` present as a file in ``data_dir``."""
    return next((file for file in candidates if file.path(data_dir).is_file()), None)


def unused_note(source: str, path: Path, remedy: str) -> str:
    """The note that a standard file present in the data directory is not used, and what would use it."""
    return f"vaezoo: note: data '{source}': '{path}' is present but not used; {remedy}"


def auto_note(source: str, path: Path, use: str, shipped: str) -> str:
    """The note that ``data.source=auto`` uses a file of the data directory that is not shipped, and the
    ``data.source`` (``shipped``) that would not: a file added to the directory changes the data of later runs."""
    return (
        f"vaezoo: note: data '{source}': data.source=auto uses '{path}', present in the data directory, {use}; "
        f"--set data.source={shipped} would not"
    )
