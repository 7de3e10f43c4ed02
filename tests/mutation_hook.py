"""Under mutmut (``tox -e mutants``), ``import vaezoo_plugins.X`` loads mutmut's mutated copy of ``plugins/X.py``.

The editable install maps the package ``vaezoo_plugins`` to the repository's ``plugins/``, the original code,
while mutmut writes its mutants to ``mutants/plugins/`` and activates one only inside a module named after its
path (``plugins.betavae``). The hook makes ``vaezoo_plugins.X`` the very module object ``plugins.X`` of the
mutated copy, so that the plugins' mutants are exercised; outside a mutmut run it does nothing.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

INSTALLED, COPIED = "vaezoo_plugins", "plugins"


class MutatedPluginsAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``vaezoo_plugins[.X]`` and loads it as the already imported (or now imported) ``plugins[.X]``."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname != INSTALLED and not fullname.startswith(INSTALLED + "."):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        # The module keeps its own name, spec and path: the import system only sets attributes that are missing.
        return importlib.import_module(COPIED + spec.name.removeprefix(INSTALLED))

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: ``create_module`` returned a module already executed under its own name."""


def under_mutmut() -> bool:
    """Whether this process runs mutmut's tests with the mutated copy (``mutants/``) importable."""
    if "MUTANT_UNDER_TEST" not in os.environ:
        return False
    copied = importlib.util.find_spec(COPIED)
    return copied is not None and copied.origin is not None and Path(copied.origin).parent.parent.name == "mutants"


def load_plugins_from_mutated_copy() -> None:
    """Put the alias first on the import path when running under mutmut (once; a no-op otherwise)."""
    if under_mutmut() and not any(isinstance(f, MutatedPluginsAlias) for f in sys.meta_path):
        sys.meta_path.insert(0, MutatedPluginsAlias())
