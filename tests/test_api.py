"""The declared public API, ``vaezoo.api``: every name it lists resolves, and its light names stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import vaezoo.api


def test_every_listed_name_resolves_to_what_its_module_defines():
    for name in vaezoo.api.__all__:
        value = getattr(vaezoo.api, name)
        assert value is not None, name
        assert getattr(sys.modules[vaezoo.api._WHERE[name]], name) is value


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="'Regulariser'"):
        vaezoo.api.Regulariser  # noqa: B018
    with pytest.raises(ImportError):
        exec("from vaezoo.api import Regulariser", {})


def test_dir_lists_exactly_the_public_names():
    assert dir(vaezoo.api) == sorted(vaezoo.api.__all__)


@pytest.mark.slow
def test_the_light_names_do_not_load_torch():
    probe = "import sys; from vaezoo.api import Parser, UsageError, param, hookimpl; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"
