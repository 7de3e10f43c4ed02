"""The non-parametric theory lab: the paper's objectives on finite spaces, their exact optima, and Theorem 5's
fixed point (``vaezoo theory``). See :mod:`vaezoo_plugins.theory.lab` and docs/theory-lab.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vaezoo.api import hookimpl

if TYPE_CHECKING:
    from vaezoo_plugins.theory.lab import LabConfig, LabResult, Problem, run_lab

__all__ = ["LabConfig", "LabResult", "Problem", "run_lab"]


@hookimpl
def vaezoo_commands(register) -> None:
    from vaezoo_plugins.theory import cli

    register("theory", cli)


def __getattr__(name: str) -> Any:
    """The lab's names, imported on first use: importing the command (``vaezoo --help``) must not load torch."""
    if name in __all__:
        from vaezoo_plugins.theory import lab

        return getattr(lab, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
