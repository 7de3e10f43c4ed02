"""Training strategies: the standard step, and the remedies of posterior collapse that change the update rule
(aggressive inference training, autoencoder pretraining)."""

from __future__ import annotations

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.strategies.aggressive import Aggressive
    from vaezoo_plugins.strategies.pretrain import Pretrain
    from vaezoo_plugins.strategies.standard import Standard

    for strategy in (Standard, Aggressive, Pretrain):
        register(strategy)
