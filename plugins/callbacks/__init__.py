"""Callbacks: CSV and TensorBoard logging, cyclical KL annealing, early stopping."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.callbacks.standard import CSVLogger, CyclicalKLAnnealing, EarlyStopping, TensorBoardLogger

    for callback in (CSVLogger, TensorBoardLogger, CyclicalKLAnnealing, EarlyStopping):
        register(callback)
