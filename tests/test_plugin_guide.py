"""The README's plugin guide, taken at its word: its example plugin installed as a real distribution and used.

The section ``## Writing a plugin`` of README.md holds a complete third-party plugin: a ```toml block and a
```python block, each under a backticked line naming its file. These tests write the blocks verbatim into a
project directory, install it with pip (offline, without build isolation: this environment's setuptools builds
it) into a target directory, and with that directory on ``PYTHONPATH`` run in real child processes what the
guide promises: ``vaezoo list regularizer`` shows the new component with its distribution and parameter, the
contract tests pass for it, and ``vaezoo run --regularizer NAME --set regularizer.weight=0.5`` trains it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import attrs
import pytest

from tests.conftest import REPO
from tests.conftest import run_cli as run_vaezoo
from tests.test_plugins import PLUGIN_SITE, TINY_RUN, parse_listing
from vaezoo.plugins.loading import DISABLE_VARIABLE

README = REPO / "README.md"
SECTION = "## Writing a plugin"
PRIOR_SECTION = "## Writing a prior, a test prior and a metric"
REMEDY_SECTION = "## Writing a training strategy and a posterior transform"
#: A code block under the line naming its file: `NAME`, a blank line, ```LANGUAGE ... ```.
NAMED_BLOCK = re.compile(r"^`(?P<file>[^`\s]+)`\n\n```(?P<language>\w+)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
#: A verbose pytest result line: node id and outcome.
RESULT_LINE = re.compile(r"^(?P<node>\S+::\S+) (?P<outcome>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.MULTILINE)


@attrs.frozen
class Guide:
    """The guide's example plugin, installed: where, and under which names."""

    section: str
    site: Path
    distribution: str
    entry_point: str

    @property
    def prose(self) -> str:
        """The section with every run of whitespace (line breaks included) made one space."""
        return " ".join(self.section.split())


# -- reading the guide ---------------------------------------------------------------------------------------------


def guide_section(readme: str, heading: str = SECTION) -> str:
    """The text of the section ``heading`` (``## Writing a plugin``), up to the next ``## `` heading."""
    assert heading in readme, f"README.md has no section {heading!r}"
    start = readme.index(heading)
    end = readme.find("\n## ", start + len(heading))
    return readme[start : end if end != -1 else len(readme)]


def guide_files(section: str) -> dict[str, str]:
    """{file name: code} of the section's one ```toml block (``pyproject.toml``) and one ```python block (a
    module), verbatim; each must sit under a backticked line naming its file."""
    blocks = list(NAMED_BLOCK.finditer(section))
    files = {}
    for language, is_its_file in (("toml", lambda f: f == "pyproject.toml"), ("python", lambda f: f.endswith(".py"))):
        named = [b for b in blocks if b["language"] == language]
        assert len(named) == 1, f"the plugin guide has {len(named)} named ```{language} blocks, not 1"
        assert is_its_file(named[0]["file"]), f"the guide's ```{language} block is named {named[0]['file']!r}"
        files[named[0]["file"]] = named[0]["code"]
    return files


def vaezoo_entry_point(pyproject: str) -> tuple[str, str]:
    """(distribution name, entry-point name) declared by the guide's pyproject.toml; it must declare exactly one
    entry point in the group ``vaezoo``."""
    project = tomllib.loads(pyproject)["project"]
    entry_points = project.get("entry-points", {}).get("vaezoo", {})
    assert len(entry_points) == 1, f"the guide's pyproject.toml declares vaezoo entry points {entry_points}"
    return project["name"], next(iter(entry_points))


# -- installing and running it -------------------------------------------------------------------------------------


def install_guide(readme: str, root: Path, heading: str = SECTION) -> Guide:
    """Write the files of the guide's section ``heading`` into ``root/project`` and pip-install that project into
    ``root/site``."""
    section = guide_section(readme, heading)
    files = guide_files(section)
    project, site = root / "project", root / "site"
    project.mkdir(parents=True)
    for name, code in files.items():
        (project / name).write_text(code)
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    installed = subprocess.run(
        [*pip, "--target", str(site), str(project)],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"},
        timeout=300,
    )
    assert installed.returncode == 0, f"pip could not install the guide's plugin:\n{installed.stdout}{installed.stderr}"
    distribution, entry_point = vaezoo_entry_point(files["pyproject.toml"])
    return Guide(section, site, distribution, entry_point)


def child_env(*sites: Path) -> dict[str, str]:
    """Environment of a child process that sees the distributions in ``sites`` and no disabled plugins."""
    return {"PYTHONPATH": os.pathsep.join(map(str, sites)), DISABLE_VARIABLE: "", "OMP_NUM_THREADS": "1"}


def components_of(guide: Guide, listing: str) -> dict[str, dict]:
    """{kind: {name: Listed}} of the components that ``vaezoo list`` output attributes to the guide's plugin."""
    origin = f"plugin {guide.entry_point!r} (distribution {guide.distribution})"
    kinds = parse_listing(listing)
    return {
        kind: mine
        for kind, entries in kinds.items()
        if (mine := {n: e for n, e in entries.items() if e.origin == origin})
    }


def guide_regularizer(guide: Guide, cwd: Path) -> tuple[str, list[tuple[str, str, str, str]]]:
    """(name, parameters) of the one component the guide's plugin registers, which must be a regularizer listed
    by ``vaezoo list regularizer`` without any warning, next to the built-ins and the fixture plugin."""
    listed = run_vaezoo("list", "regularizer", env=child_env(guide.site, PLUGIN_SITE), cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == "", f"'vaezoo list regularizer' with the guide's plugin warns:\n{listed.stderr}"
    components = components_of(guide, listed.stdout)
    assert list(components) == ["regularizer"], f"the guide's plugin lists {components}:\n{listed.stdout}"
    ((name, entry),) = components["regularizer"].items()
    regularizers = parse_listing(listed.stdout)["regularizer"]
    assert {"betavae", "l2code"} <= set(regularizers), f"built-in or fixture regularizer missing:\n{listed.stdout}"
    return name, entry.params


def contract_results(site: Path, name: str) -> tuple[subprocess.CompletedProcess, dict[str, str], dict[str, int]]:
    """Run ``tests/test_contracts.py -k NAME`` from the repository root with ``site`` on the path: the process,
    {node id: outcome} of every test that ran, and the counts of the summary line ({"passed": 3, ...})."""
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_contracts.py", "-k", name, "-p", "no:cacheprovider", "-v"],
        capture_output=True,
        text=True,
        env={**os.environ, **child_env(site)},
        cwd=REPO,
        timeout=600,
    )
    outcomes = {m["node"]: m["outcome"] for m in RESULT_LINE.finditer(ran.stdout)}
    summary = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ""
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|deselected)", summary)}
    return ran, outcomes, counts


def assert_contracts_pass(site: Path, name: str, kind: str = "regularizer") -> None:
    """The contract tests select the component ``name`` with ``-k NAME``: at least one of its cases (its
    ``kind`` contract among them) runs, nothing else does, and all pass."""
    ran, outcomes, counts = contract_results(site, name)
    report = f"'pytest tests/test_contracts.py -k {name}' gave:\n{ran.stdout}{ran.stderr}"
    assert outcomes, f"no contract test of {name!r} ran; {report}"
    assert all(node.endswith(f"[{name}]") for node in outcomes), f"-k {name} selected other tests; {report}"
    assert f"tests/test_contracts.py::test_{kind}_contract[{name}]" in outcomes, report
    assert set(outcomes.values()) == {"PASSED"}, report
    assert counts.get("passed") == len(outcomes), report
    assert not {"failed", "error", "errors"} & set(counts) and ran.returncode == 0, report


# -- the tests -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guide(tmp_path_factory) -> Guide:
    return install_guide(README.read_text(), tmp_path_factory.mktemp("plugin_guide"))


@pytest.fixture(scope="module")
def regularizer(guide, tmp_path_factory) -> tuple[str, list[tuple[str, str, str, str]]]:
    return guide_regularizer(guide, tmp_path_factory.mktemp("plugin_guide_list"))


@pytest.mark.slow
def test_guide_plugin_is_listed_with_its_distribution_and_parameter(guide, regularizer):
    name, params = regularizer
    assert [p[0] for p in params] == ["weight"], params
    origin = f"plugin {guide.entry_point!r} (distribution {guide.distribution})"
    assert f"`vaezoo list regularizer` shows `{name}` with its origin `{origin}`" in guide.prose, guide.prose


@pytest.mark.slow
def test_guide_plugin_passes_the_contract_tests(guide, regularizer):
    name, _ = regularizer
    assert f"`python -m pytest tests/test_contracts.py -k {name}`" in guide.prose, guide.prose
    assert_contracts_pass(guide.site, name)


@pytest.mark.slow
def test_guide_plugin_trains(guide, regularizer, tmp_path):
    name, _ = regularizer
    command = f"vaezoo run --regularizer {name} --set regularizer.weight=0.5"
    assert f"`{command}`" in guide.prose, f"the guide does not show `{command}`"
    out = tmp_path / "run"
    ran = run_vaezoo(
        *command.split()[1:], "--steps", "1", *TINY_RUN, "--out", str(out), env=child_env(guide.site), cwd=tmp_path
    )
    assert ran.returncode == 0, ran.stderr
    assert "warning" not in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 1
    assert results["config"]["regularizer"] == {"name": name, "weight": 0.5}


# -- the prior and evaluation plugin ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prior_guide(tmp_path_factory) -> Guide:
    return install_guide(README.read_text(), tmp_path_factory.mktemp("prior_guide"), PRIOR_SECTION)


@pytest.mark.slow
def test_prior_guide_is_listed_and_passes_the_contract_tests(prior_guide, tmp_path):
    listed = run_vaezoo("list", "prior", env=child_env(prior_guide.site), cwd=tmp_path)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    components = components_of(prior_guide, listed.stdout)
    assert list(components) == ["prior"], listed.stdout
    ((name, _),) = components["prior"].items()
    origin = f"plugin {prior_guide.entry_point!r} (distribution {prior_guide.distribution})"
    assert f"`vaezoo list prior` shows `{name}` with its origin `{origin}`" in prior_guide.prose
    assert f"`python -m pytest tests/test_contracts.py -k {name}`" in prior_guide.prose
    assert_contracts_pass(prior_guide.site, name, kind="prior")


@pytest.mark.slow
def test_prior_guide_trains_and_its_test_prior_and_metric_reach_the_results(prior_guide, tmp_path):
    command = "vaezoo run --prior scaled --test-prior wide"
    assert f"`{command}`" in prior_guide.prose, f"the guide does not show `{command}`"
    out = tmp_path / "run"
    ran = run_vaezoo(
        *command.split()[1:],
        "--steps",
        "5",
        *TINY_RUN,
        "--out",
        str(out),
        env=child_env(prior_guide.site),
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert "warning" not in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["test_prior"] == "wide" and results["metrics"]["test_prior_variance"] == 4.0
    assert results["metrics"]["code_norm"] > 0


# -- the training strategy and posterior transform plugin ---------------------------------------------------------


@pytest.mark.slow
def test_remedy_guide_is_listed_passes_the_contract_tests_and_trains(tmp_path_factory, tmp_path):
    kit = install_guide(README.read_text(), tmp_path_factory.mktemp("remedy_guide"), REMEDY_SECTION)
    origin = f"plugin {kit.entry_point!r} (distribution {kit.distribution})"
    listed = run_vaezoo("list", env=child_env(kit.site), cwd=tmp_path)
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    mine = {kind: sorted(names) for kind, names in components_of(kit, listed.stdout).items()}
    assert mine == {"strategy": ["accumulate"], "transform": ["scale_floor"]}, listed.stdout
    assert f"with their origin `{origin}`" in kit.prose, kit.prose
    selection = "accumulate or scale_floor"
    assert f'`python -m pytest tests/test_contracts.py -k "{selection}"`' in kit.prose, kit.prose
    ran, outcomes, _ = contract_results(kit.site, selection)
    assert outcomes == {
        "tests/test_contracts.py::test_strategy_contract[accumulate]": "PASSED",
        "tests/test_contracts.py::test_transform_contract[scale_floor]": "PASSED",
    }, ran.stdout + ran.stderr
    command = "vaezoo run --strategy accumulate --transform scale_floor --set strategy.batches=3"
    assert f"`{command}`" in kit.prose, f"the guide does not show `{command}`"
    out = tmp_path / "run"
    trained = run_vaezoo(*command.split()[1:], "--steps", "2", *TINY_RUN, "--out", str(out), env=child_env(kit.site))
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr
    config = json.loads((out / "results.json").read_text())["config"]
    assert config["strategy"] == {"name": "accumulate", "batches": 3}
    assert config["transform"] == {"name": "scale_floor", "floor": 0.05}
