"""A finished run's test evaluation and its results.json."""

from __future__ import annotations

import platform
from typing import Any

import numpy
import torch

import vaezoo
from vaezoo.config.run_config import RunConfig
from vaezoo.evaluation.evaluate import evaluate_split
from vaezoo.runs.directory import RESULTS_NAME, RunDirectory, write_json
from vaezoo.runs.session import Session, load_tested_model
from vaezoo.training.progress import TrainingProgress


def evaluate_and_write_results(
    session: Session, directory: RunDirectory, config: RunConfig, progress: TrainingProgress
) -> dict[str, Any]:
    """Test metrics (with IW-NLL), written with the run's facts to results.json; then plugins write their files about
    the finished run (``vaezoo_finish``).

    With ``train.test_model = "best"`` the model of the best validation line is tested (its step is
    ``tested_step`` in the results) and left in the session; the checkpoint keeps the last step's."""
    tested_step = load_tested_model(session.model, directory, config)
    test = evaluate_split(
        session, "test", config.eval.test_prior, iw_samples=config.eval.iw_samples, progress=config.train.progress
    )
    if session.hook is not None:
        session.hook.vaezoo_finish(session=session, run_dir=directory.path)
    results = {
        "metrics": test,
        "test_prior": config.eval.test_prior,
        "steps": progress.step,
        "tested_step": progress.step if tested_step is None else tested_step,
        "examples": {"test": session.evaluation_size("test")},
        "seed": config.train.seed,
        "wall_time_s": round(progress.wall_time, 3),
        "versions": versions(),
        "config": config.as_dict(),
        "data_sources": session.data.sources,
    }
    write_json(directory.file(RESULTS_NAME), results)
    return results


def versions() -> dict[str, str]:
    """The versions a run's results were computed with."""
    return {
        "vaezoo": vaezoo.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
