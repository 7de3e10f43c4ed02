"""Skip rules: which cells of a matrix are invalid combinations, decided by vaezoo's own checks, in process.

A cell is *invalid* (skipped, with the reason, and never run) when vaezoo would refuse its configuration
whatever the machine: ``resolve`` rejects it (an unknown component, an unknown or out-of-range parameter, a
regulariser that needs noise where none is chosen and the data set has no default), its noise sampler refuses
the data (Gaussian noise on token ids), its networks refuse the data (an MLP on token ids), a callback cannot act
on it (early stopping on a metric its validation lines do not hold, a KL schedule on a regulariser without a KL
weight), a setting its other choices ignore (``train.momentum`` with adam), or its validation lines will not
hold the metric its ``[select]`` rule scores (``ppl_elbo`` of images).
A suite column that none of its cells would report is refused before any cell runs (:func:`check_columns`).

Problems of the environment are *not* skip reasons: a data set whose files are missing, or a device the
machine lacks. Such cells run and fail, with vaezoo's own message recorded, so that fixing the machine and
rerunning completes them. Checking the noise and the networks needs the data's spec (and, for samplers such as
``dataset``, its noise splits), so each distinct data config is loaded once and cached; when loading fails,
those two checks are left to the run.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from vaezoo.api import (
    Data,
    Registry,
    RunConfig,
    RunHooks,
    Session,
    UsageError,
    build_model_for_data,
    check_no_ignored_settings,
    evaluation_metrics,
    metric_catalogue,
    registered_metrics,
    resolve,
    validation_metrics,
)
from vaezoo_bench.matrix.model import Cell, Selection, Suite, selection_where


class Validator:
    """``skip_reason(raw)`` for merged raw configs, with one data load per distinct data config; ``selections`` are
    the suite's, whose metrics the cells they tune must report."""

    def __init__(self, registry: Registry, data_dir: Path | None, selections: Sequence[Selection] = ()) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self.selections = tuple(selections)
        self._data: dict[str, Data | None] = {}
        #: data config (JSON) -> why it could not be loaded here (reported once by the runner)
        self.data_problems: dict[str, str] = {}

    def skip_reason(self, raw: Mapping[str, Any], select: int | None = None) -> str | None:
        """Why a cell with this merged raw config (tuned by selection ``select``, if any) is an invalid
        combination, or None when it may run."""
        try:
            session = self._session(raw)
            if session is None:
                return None
            RunHooks(session.config, self.registry).check(session, self.registry)
        except UsageError as error:
            return str(error)
        if select is None:
            return None
        metric = self.selections[select].metric
        if validation_metrics(session, among=[metric]):
            return None
        when = metric_catalogue(session.metrics).get(metric, {}).get("when") or "by no registered metric"
        return (
            f"{selection_where(self.selections, select)} metric {metric!r} is not in this cell's validation lines "
            f"(it is reported {when}); they hold: {', '.join(validation_metrics(session))}"
        )

    def reported_columns(self, cell: Cell, columns: Collection[str]) -> set[str] | None:
        """Which of ``columns`` the report will find for ``cell`` under some test prior of its own (or, for a metric
        no test prior changes, in its run's test metrics); None when its config or data cannot be checked here."""
        try:
            session = self._session(cell.raw)
        except UsageError:
            return None
        if session is None:
            return None
        iw_samples = session.config.eval.iw_samples
        independent = {metric.name for metric in session.metrics if not metric.per_prior} & set(columns)
        reported = set(evaluation_metrics(session, session.config.eval.test_prior, iw_samples, independent))
        for prior in cell.test_priors:
            try:
                reported |= set(evaluation_metrics(session, prior, iw_samples, columns))
            except UsageError:  # a test prior not offered for this model: its evaluation fails and says so
                continue
        return reported

    def _session(self, raw: Mapping[str, Any]) -> Session | None:
        """A freshly built session of the cell (on the CPU), or None when its data cannot be loaded here or a
        plugin fails to build it (a bug, not an invalid combination: the run fails and records it); a UsageError
        when vaezoo refuses the configuration."""
        config = resolve(raw, self.registry)
        check_no_ignored_settings(config)
        data = self._load(config)
        if data is None:
            return None
        try:
            model = build_model_for_data(config, self.registry, data)
        except UsageError:
            raise
        except Exception:
            return None
        return Session(config, data, model, torch.device("cpu"), self.registry.hook, registered_metrics(self.registry))

    def evaluated_examples(self, raw: Mapping[str, Any]) -> dict[str, int] | None:
        """How many examples a run of this config evaluates on its validation and test splits (each split's size
        capped by ``eval.limit``, as the run's evaluation takes them), or None when the config or the data cannot
        be loaded here."""
        try:
            config = resolve(raw, self.registry)
        except UsageError:
            return None
        data = self._load(config)
        if data is None:
            return None
        limit = config.eval.limit
        return {
            split: data.size(split) if limit is None else min(data.size(split), limit) for split in ("valid", "test")
        }

    def _load(self, config: RunConfig) -> Data | None:
        key = json.dumps(config.data.as_dict(), sort_keys=True)
        if key not in self._data:
            source = self.registry.get("data", config.data.name).cls(config.data.params)
            try:
                if source.needs_data_dir and self.data_dir is None:
                    raise UsageError(f"data {config.data.name!r} reads files: pass --data-dir or set VAEZOO_DATA")
                self._data[key] = source.load(self.data_dir, config.train.seed)
            except Exception as error:  # missing files, a plugin's bug: left for the run to report
                self._data[key] = None
                problem = f"cells with data {config.data.name!r} cannot be checked before they run: {error}"
                self.data_problems[key] = problem
        return self._data[key]


WHEN = "when"


def check_metric_names(suite: Suite, registry: Registry) -> dict[str, dict[str, Any]]:
    """Refuse a ``[suite] columns`` or ``[select] metric`` name that no plugin registered as a metric (a one-line
    UsageError naming the suite, the names and every metric); the catalogue of metrics otherwise."""
    catalogue = metric_catalogue(registered_metrics(registry))
    unknown = [name for name in suite.table.columns if name not in catalogue]
    if unknown:
        raise UsageError(
            f"suite {str(suite.path)!r}: [suite] columns {unknown} are not metrics a run reports; choose from: "
            f"{', '.join(catalogue)}"
        )
    metrics = [name for name, entry in catalogue.items() if entry["higher_is_better"] is not None]
    for index, selection in enumerate(suite.selections):
        if selection.metric not in metrics:
            raise UsageError(
                f"suite {str(suite.path)!r}: {selection_where(suite.selections, index)} metric {selection.metric!r} "
                f"is not a metric a run reports; choose from: {', '.join(metrics)}"
            )
    return catalogue


def check_columns(suite: Suite, cells: Sequence[Cell], validator: Validator) -> None:
    """Refuse (a UsageError naming the suite, the columns and what its first cell reports) a ``[suite] columns``
    metric (registered: see :func:`check_metric_names`) that none of ``cells`` would report, before any of them
    runs; a cell that cannot be checked here may
    report anything, and so passes every column."""
    columns = suite.table.columns
    catalogue = metric_catalogue(registered_metrics(validator.registry))
    missing = set(columns)
    first: Cell | None = None
    for cell in cells:
        reported = validator.reported_columns(cell, columns)
        if reported is None:
            return
        first = first or cell
        missing -= reported
        if not missing:
            return
    if first is None:
        return
    shown = [name for name in columns if name in missing]
    offered = validator.reported_columns(first, list(catalogue)) or set()
    raise UsageError(
        f"suite {str(suite.path)!r}: [suite] columns {', '.join(shown)}: no cell reports "
        f"{'it' if len(shown) == 1 else 'them'} ({'; '.join(f'{n}: {catalogue[n][WHEN]}' for n in shown)}); cell "
        f"{first.id} reports: {', '.join(name for name in catalogue if name in offered)}"
    )
