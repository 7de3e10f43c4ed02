"""The theory lab's regularisers, defaults and output files: what ``vaezoo theory --help`` shows, importable
without torch (:mod:`vaezoo_plugins.theory.lab` and :mod:`vaezoo_plugins.theory.report` use them from here)."""

from __future__ import annotations

REGULARIZERS = ("betavae", "infovae", "aae", "ncvae")
DEFAULT_RESTARTS, DEFAULT_STEPS, DEFAULT_LR = 8, 1500, 0.2
DEFAULT_BETAS = (0.0, 0.5, 0.8, 1.0, 1.5, 2.0, 4.0, 8.0)
DEFAULT_DELTAS = (0.5, 1.0, 2.0)
#: InfoVAE's lambda, fixed while alpha is swept.
DEFAULT_LAMBDA = 1.0
DEFAULT_SEED = 0
#: The files ``--out DIR`` writes.
FILES = ("theory.md", "theory.csv", "theory.png", "theory.json")
