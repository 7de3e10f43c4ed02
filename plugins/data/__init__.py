"""Data sets: the synthetic task, MNIST and Omniglot, Yahoo and PTB, and torchtext's corpora when torchtext is
installed; ``separability``, the metric of data that have noise of their own, and the synthetic task's code
scatter at the end of a run."""

from __future__ import annotations

import importlib.util

from vaezoo.api import hookimpl


@hookimpl
def vaezoo_register(register) -> None:
    from vaezoo_plugins.data.images import MNIST, Omniglot
    from vaezoo_plugins.data.separability import Separability
    from vaezoo_plugins.data.synthetic import SyntheticData
    from vaezoo_plugins.data.text import PTB, Yahoo

    for component in (SyntheticData, Omniglot, MNIST, Yahoo, PTB, Separability):
        register(component)
    if importlib.util.find_spec("torchtext") is not None:
        from vaezoo_plugins.data.torchtext_adapter import TorchtextSource

        register(TorchtextSource)


@hookimpl
def vaezoo_finish(session, run_dir):
    from vaezoo_plugins.data.synthetic import finish

    return finish(session, run_dir)
