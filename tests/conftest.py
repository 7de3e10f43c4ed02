"""Shared fixtures: the real data directory, a fresh plugin registry, and small run configs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mutation_hook import load_plugins_from_mutated_copy

load_plugins_from_mutated_copy()  # before vaezoo loads its plugins; does nothing outside a mutmut run

from vaezoo.config.run_config import merge_raw, resolve  # noqa: E402
from vaezoo.plugins.loading import load_plugins  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("VAEZOO_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session", autouse=True)
def absolute_data_dir_for_child_processes() -> Iterator[None]:
    """Child processes run in other directories: hand them the data directory as an absolute path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAEZOO_DATA", str(DATA_DIR))
        yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"the shared data directory {DATA_DIR} is missing (set VAEZOO_DATA)")
    return DATA_DIR


@pytest.fixture(scope="session")
def registry():
    plugins = load_plugins()
    assert not plugins.failures, plugins.failures
    return plugins.registry


def small_raw(**sections) -> dict:
    """A raw config for a run of a few seconds on the synthetic task; sections override it."""
    raw = {
        "data": {"name": "synthetic", "n_train": 512, "n_valid": 256, "n_test": 256, "dim": 20},
        "model": {"latent_dim": 2},
        "encoder": {"name": "mlp", "hidden": [32]},
        "decoder": {"name": "mlp", "hidden": [32]},
        "train": {"steps": 40, "batch_size": 32, "eval_every": 10, "progress": False},
        "eval": {"iw_samples": 20, "iw_chunk": 7, "batch_size": 128},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def small_config(registry, **sections):
    return resolve(merge_raw(small_raw(**sections)), registry)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``vaezoo ARGS`` in a real child process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vaezoo", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test (sessions and many small ops), the thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
