"""Callbacks: CSV and TensorBoard logging, cyclical and linear KL annealing, early stopping."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.callbacks.standard import (
        CSVLogger,
        CyclicalKLAnnealing,
        EarlyStopping,
        LinearKLAnnealing,
        TensorBoardLogger,
    )

    for callback in (CSVLogger, TensorBoardLogger, CyclicalKLAnnealing, LinearKLAnnealing, EarlyStopping):
        register(callback)
