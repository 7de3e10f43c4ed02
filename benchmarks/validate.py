"""Skip rules: which cells of a matrix are invalid combinations, decided by vaezoo's own checks, in process.

A cell is *invalid* (skipped, with the reason, and never run) when vaezoo would refuse its configuration
whatever the machine: ``resolve`` rejects it (an unknown component, an unknown or out-of-range parameter, a
regulariser that needs noise where none is chosen and the data set has no default), its noise sampler refuses
the data (Gaussian noise on token ids), or its networks refuse the data (an MLP on token ids).

Problems of the environment are *not* skip reasons: a data set whose files are missing, or a device the
machine lacks. Such cells run and fail, with vaezoo's own message recorded, so that fixing the machine and
rerunning completes them. Checking the noise and the networks needs the data's spec (and, for samplers such as
``dataset``, its noise splits), so each distinct data config is loaded once and cached; when loading fails,
those two checks are left to the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vaezoo.config import RunConfig, resolve
from vaezoo.errors import UsageError
from vaezoo.interfaces import Data
from vaezoo.model import build_model_for_data
from vaezoo.registry import Registry


class Validator:
    """``skip_reason(raw)`` for merged raw configs, with one data load per distinct data config."""

    def __init__(self, registry: Registry, data_dir: Path | None) -> None:
        self.registry = registry
        self.data_dir = data_dir
        self._data: dict[str, Data | None] = {}
        #: data config (JSON) -> why it could not be loaded here (reported once by the runner)
        self.data_problems: dict[str, str] = {}

    def skip_reason(self, raw: Mapping[str, Any]) -> str | None:
        """Why a cell with this merged raw config is an invalid combination, or None when it may run."""
        try:
            config = resolve(raw, self.registry)
        except UsageError as error:
            return str(error)
        data = self._load(config)
        if data is None:
            return None
        try:
            build_model_for_data(config, self.registry, data)
        except UsageError as error:
            return str(error)
        except Exception:  # a plugin's bug is not an invalid combination: the run fails and records it
            return None
        return None

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
