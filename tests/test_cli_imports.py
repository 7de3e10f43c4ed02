"""``vaezoo --help``, ``vaezoo COMMAND --help`` and argparse's usage errors import nothing heavy: no torch, numpy,
matplotlib... Only a command that runs loads them (and the component plugins). Each check runs in a fresh child
process, since this one has long imported torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vaezoo_plugins.theory import defaults as theory_defaults
from vaezoo_plugins.theory import lab as theory_lab
from vaezoo_plugins.theory import report as theory_report

HEAVY = ("torch", "numpy", "matplotlib", "tokenizers", "tqdm", "einops", "scipy")

PROBE = """
import contextlib, io, json, sys
out, err = io.StringIO(), io.StringIO()
code = None
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        {statement}
    except SystemExit as stop:
        code = stop.code
print(json.dumps({{
    "code": code, "stdout": out.getvalue(), "stderr": err.getvalue(),
    "loaded": [name for name in {heavy!r} if name in sys.modules],
    "modules": sorted(sys.modules),
}}))
"""


def probe(statement: str) -> dict:
    """Run ``statement`` in a fresh interpreter: the exit code (``SystemExit``'s, or what it assigns to ``code``),
    its output, the heavy modules it left loaded and every module it did."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(statement=statement, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "code", "shown"),
    [
        ([], 2, "theory"),  # no command: the overview, exit 2
        (["--help"], 0, "theory"),
        (["run", "--help"], 0, "--regularizer NAME"),
        (["list", "--help"], 0, "callback"),
        (["eval", "--help"], 0, "--test-prior"),
        (["sample", "--help"], 0, "--temperature"),
        (["theory", "--help"], 0, "--regularizers NAME,..."),
        (["run", "--steps", "many"], 2, "invalid int value: 'many'"),
        (["list", "--bogus"], 2, "unrecognized arguments: --bogus"),
        (["theory", "--restarts", "x"], 2, "invalid int value: 'x'"),
        (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ],
)
def test_help_and_usage_errors_import_nothing_heavy(argv, code, shown):
    got = probe(f"import vaezoo.cli.main; code = vaezoo.cli.main.main({argv!r})")  # returns or exits
    assert got["code"] == code, got
    assert shown in got["stdout"] + got["stderr"], got
    assert got["loaded"] == [], got["loaded"]
    assert "vaezoo_plugins.theory.cli" in got["modules"]  # the plugin command was loaded, cheaply
    assert not any(name.startswith("vaezoo_plugins.theory.lab") for name in got["modules"])


@pytest.mark.slow
def test_the_probe_sees_torch_when_it_is_imported():
    assert "torch" in probe("import vaezoo.components.interfaces")["loaded"]


def test_the_theory_lab_s_torch_free_defaults_have_one_definition():
    assert theory_lab.REGULARIZERS is theory_defaults.REGULARIZERS
    assert theory_report.FILES is theory_defaults.FILES
    config = theory_lab.LabConfig()
    assert (config.betas, config.deltas, config.infovae_lambda) == (
        theory_defaults.DEFAULT_BETAS,
        theory_defaults.DEFAULT_DELTAS,
        theory_defaults.DEFAULT_LAMBDA,
    )
    assert (config.restarts, config.steps, config.lr, config.seed) == (
        theory_defaults.DEFAULT_RESTARTS,
        theory_defaults.DEFAULT_STEPS,
        theory_defaults.DEFAULT_LR,
        theory_defaults.DEFAULT_SEED,
    )
