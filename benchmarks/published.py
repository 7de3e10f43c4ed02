"""Published figures (``benchmarks/published/NAME.toml``, shipped in the wheel like the suites): what papers printed
for the methods of a suite, read and checked, and mapped onto the report's columns.

A file has ``[sources]`` (short name -> the table it was copied from) and ``[[figure]]`` rows, each with ``method``
and ``data`` (value ids of the suite's ``method`` axis and column axis), ``source`` (a short name of ``[sources]``),
``setting`` (what the row is in its paper), at least one metric among :data:`METRICS` (a number), ``sd`` (a table of
standard deviations, metric -> number, for metrics the row has), and ``ppl_bound`` (``iw`` or ``elbo``: which bound
its ``ppl`` comes from; required with ``ppl``). A suite names a file with ``[suite] published = "NAME"``.

Every refusal is one line naming the file and the bad entry. Imports neither torch nor vaezoo's models.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from vaezoo.api import UsageError

#: The files of published figures, shipped with the runner.
PUBLISHED_DIR = Path(__file__).resolve().parent / "published"
#: The metrics a published row may give, in the papers' terms (vaezoo's names but ``mi`` and ``ppl``).
METRICS = ("neg_elbo", "iw_nll", "kl", "mi", "au", "ppl")
#: The report's column of each published metric. The papers' MI is He et al.'s minibatch estimate, vaezoo's
#: ``mi_he``; ``ppl`` goes under the column of its bound (``ppl_bound``).
COLUMN_OF = {"neg_elbo": "neg_elbo", "iw_nll": "iw_nll", "kl": "kl", "mi": "mi_he", "au": "au"}
PPL_COLUMNS = {"iw": "ppl_iw", "elbo": "ppl_elbo"}
TOP_KEYS = ("sources", "figure")
TEXT_KEYS = ("method", "data", "source", "setting")
FIGURE_KEYS = (*TEXT_KEYS, *METRICS, "sd", "ppl_bound")


@attrs.frozen
class PublishedRow:
    """One ``[[figure]]``: a method's figures on a data set as a paper printed them (``metrics``, and ``sd`` where
    the paper gives standard deviations), with ``ppl_bound`` naming the bound its ``ppl`` comes from."""

    method: str
    data: str
    source: str
    setting: str
    metrics: dict[str, float]
    sd: dict[str, float]
    ppl_bound: str | None = None

    def column(self, metric: str) -> str:
        """The report's column of the published ``metric``."""
        return PPL_COLUMNS[self.ppl_bound or "elbo"] if metric == "ppl" else COLUMN_OF[metric]

    def by_column(self) -> dict[str, tuple[float, float | None]]:
        """The row's figures by report column: (value, sd or None)."""
        return {self.column(m): (value, self.sd.get(m)) for m, value in self.metrics.items()}


@attrs.frozen
class Published:
    """A file of published figures: its ``name``, ``path``, ``sources`` (short name -> description) and rows in the
    file's order."""

    name: str
    path: Path
    sources: dict[str, str]
    rows: tuple[PublishedRow, ...]

    def of(self, method: str, data: str) -> list[PublishedRow]:
        """The rows of ``method`` on ``data`` (value ids), in the file's order."""
        return [row for row in self.rows if row.method == method and row.data == data]


def published_names() -> list[str]:
    """The names of the shipped files of published figures, sorted."""
    return sorted(path.stem for path in PUBLISHED_DIR.glob("*.toml"))


def published_file(name: str) -> Path:
    """The file of published figures called ``name``; a UsageError naming the valid names otherwise."""
    if name not in published_names():
        raise UsageError(
            f"published {name!r} is not a file of published figures (benchmarks/published/NAME.toml); choose one of: "
            f"{', '.join(published_names()) or '(none shipped)'}"
        )
    return PUBLISHED_DIR / f"{name}.toml"


def load_published(name: str, path: Path | None = None) -> Published:
    """Read and check the file of published figures ``name`` (or the file at ``path``, for tests); a UsageError
    naming the file and the entry for a damaged or malformed one."""
    path = path if path is not None else published_file(name)
    where = f"published figures {str(path)!r}"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"{where}: cannot read it: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{where}: malformed TOML: {error}") from None
    unknown = sorted(set(document) - set(TOP_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown entry {unknown[0]!r}; valid entries: [sources], [[figure]]")
    sources = _sources(where, document.get("sources", {}))
    figures = document.get("figure", [])
    if not isinstance(figures, list) or not figures:
        raise UsageError(f"{where}: [[figure]] must be a non-empty array of tables, got {figures!r}")
    rows = tuple(_row(f"{where}: [[figure]] {i + 1}", figure, sources) for i, figure in enumerate(figures))
    return Published(name, path, sources, rows)


def _sources(where: str, value: Any) -> dict[str, str]:
    """``[sources]``: short names, each with a non-empty description."""
    if not isinstance(value, Mapping) or not value:
        raise UsageError(f"{where}: [sources] must be a table of short name = description, got {value!r}")
    for name, text in value.items():
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"{where}: [sources] {name!r} must be a description (text), got {text!r}")
    return dict(value)


def _row(where: str, figure: Any, sources: Mapping[str, str]) -> PublishedRow:
    """A ``[[figure]]`` table (``where`` names it) checked: its keys, texts, source, metrics, sd and ppl_bound."""
    if not isinstance(figure, Mapping):
        raise UsageError(f"{where} must be a table, got {figure!r}")
    unknown = sorted(set(figure) - set(FIGURE_KEYS))
    if unknown:
        raise UsageError(f"{where} has unknown key {unknown[0]!r}; valid keys: {', '.join(FIGURE_KEYS)}")
    for key in TEXT_KEYS:
        if not isinstance(figure.get(key), str) or not figure[key].strip():
            raise UsageError(f"{where}: {key} must be a non-empty text, got {figure.get(key)!r}")
    where = f"{where} (method {figure['method']!r}, data {figure['data']!r})"
    if figure["source"] not in sources:
        raise UsageError(f"{where}: source {figure['source']!r} is not in [sources]: {', '.join(sources)}")
    metrics = {m: _number(where, m, figure[m]) for m in METRICS if m in figure}
    if not metrics:
        raise UsageError(f"{where} gives no figure; give at least one of {', '.join(METRICS)}")
    sd = figure.get("sd", {})
    if not isinstance(sd, Mapping):
        raise UsageError(f"{where}: sd must be a table of metric = standard deviation, got {sd!r}")
    for metric, value in sd.items():
        if metric not in metrics:
            raise UsageError(f"{where}: sd {metric!r} is not a figure of the row; its figures: {', '.join(metrics)}")
        if _number(where, f"sd {metric}", value) < 0:
            raise UsageError(f"{where}: sd {metric!r} must be at least 0, got {value!r}")
    bound = figure.get("ppl_bound")
    if ("ppl" in metrics) != (bound is not None) or bound not in (None, *PPL_COLUMNS):
        raise UsageError(f"{where}: ppl_bound must be one of {', '.join(PPL_COLUMNS)} with ppl and absent without")
    return PublishedRow(
        method=figure["method"],
        data=figure["data"],
        source=figure["source"],
        setting=figure["setting"],
        metrics=metrics,
        sd={m: float(v) for m, v in sd.items()},
        ppl_bound=bound,
    )


def _number(where: str, key: str, value: Any) -> float:
    """``value`` as a float when it is a finite number (a bool is none)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{where}: {key} must be a finite number, got {value!r}")
    return float(value)
