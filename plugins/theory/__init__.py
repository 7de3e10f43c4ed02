"""The non-parametric theory lab: the paper's objectives on finite spaces, their exact optima, and Theorem 5's
fixed point (``vaezoo theory``). See :mod:`vaezoo_plugins.theory.lab` and docs/theory-lab.md."""

from vaezoo_plugins.theory.lab import LabConfig, LabResult, Problem, run_lab

__all__ = ["LabConfig", "LabResult", "Problem", "run_lab"]
