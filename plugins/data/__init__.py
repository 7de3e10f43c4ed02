"""Data sets: the synthetic task, MNIST and Omniglot, Yahoo and PTB, and torchtext's corpora when torchtext is
installed; with the synthetic task's code scatter and ``separability`` at the end of a run."""

from __future__ import annotations

import importlib.util

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.data.images import MNIST, Omniglot
    from vaezoo_plugins.data.synthetic import SyntheticData
    from vaezoo_plugins.data.text import PTB, Yahoo

    for source in (SyntheticData, Omniglot, MNIST, Yahoo, PTB):
        register(source)
    if importlib.util.find_spec("torchtext") is not None:
        from vaezoo_plugins.data.torchtext_adapter import TorchtextSource

        register(TorchtextSource)


@hookimpl
def vaezoo_finish_metrics(session):
    from vaezoo_plugins.data.synthetic import finish_metrics

    return finish_metrics(session)


@hookimpl
def vaezoo_finish(session, run_dir):
    from vaezoo_plugins.data.synthetic import finish

    return finish(session, run_dir)
