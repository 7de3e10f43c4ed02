"""The plugin system, end to end: a real third-party distribution found through its entry point.

``tests/fixtures/*_site`` are directories that, on ``sys.path`` or ``PYTHONPATH``, make a distribution visible to
:mod:`importlib.metadata` exactly as an installed one is (a ``*.dist-info`` directory with ``entry_points.txt``
next to the module): ``plugin_site`` a working plugin, the others plugins that fail in one way each (an exception
or ``sys.exit`` on import, ``SystemExit`` in the register hook, an entry-point name a built-in already has). The
CLI tests (marked slow) run ``vaezoo`` in a real subprocess with those directories on ``PYTHONPATH``; the
in-process tests call ``load_plugins()`` afresh (never the cached ``default_plugins``).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path

import attrs
import pytest
import torch
from torch.distributions import Independent, Normal

import vaezoo_plugins.networks as networks
from tests.conftest import run_cli as run_vaezoo
from vaezoo import hookimpl
from vaezoo.base.errors import UsageError
from vaezoo.base.params import build_params
from vaezoo.components.interfaces import Regularizer, Step
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.plugins.component import KINDS
from vaezoo.plugins.loading import DISABLE_VARIABLE, PluginFailure, load_plugins
from vaezoo.plugins.registry import DuplicateComponent, Registry
from vaezoo_plugins.regularizers.betavae import BetaVAE

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PLUGIN_SITE = FIXTURES / "plugin_site"
BROKEN_SITE = FIXTURES / "broken_site"
EXIT_SITE = FIXTURES / "exit_site"
HOOK_EXIT_SITE = FIXTURES / "hook_exit_site"
CLASH_SITE = FIXTURES / "clash_site"

FIXTURE_ORIGIN = "plugin 'fixture' (distribution vaezoo-fixture-plugin)"
BROKEN_ORIGIN = "plugin 'broken' (distribution vaezoo-broken-plugin)"
EXIT_ORIGIN = "plugin 'exits' (distribution vaezoo-exit-plugin)"
HOOK_EXIT_ORIGIN = "plugin 'hook_exit' (distribution vaezoo-hook-exit-plugin)"
CLASH_ORIGIN = "plugin 'networks' (distribution vaezoo-clash-plugin)"
BETAVAE_ORIGIN = "plugin 'regularizers' (distribution vaezoo)"
BOOM = "RuntimeError: boom: broken on purpose"
CLASH = (
    "entry-point name 'networks' is already taken by distribution vaezoo; rename the entry point in the"
    " [project.entry-points.vaezoo] table of distribution vaezoo-clash-plugin"
)
FIXTURE_MODULES = (
    "vaezoo_fixture_plugin",
    "vaezoo_broken_plugin",
    "vaezoo_exit_plugin",
    "vaezoo_hook_exit_plugin",
    "vaezoo_clash_plugin",
)
BUILTINS = {"data": "synthetic", "encoder": "mlp", "decoder": "mlp", "prior": "standard", "regularizer": "betavae"}
#: ``vaezoo run`` options for a run of a second or so on a tiny synthetic task (the number of steps not included).
TINY_RUN = (
    "--no-progress",
    "--set", "data.dim=10", "--set", "data.n_train=64", "--set", "data.n_valid=32", "--set", "data.n_test=32",
    "--set", "eval.iw_samples=2", "--set", "train.threads=1",
)  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------------------


def run_cli(*args: str, sites: tuple[Path, ...], cwd: Path, disable: str | None = None):
    """``python -m vaezoo ARGS`` in a fresh process with ``sites`` first on PYTHONPATH."""
    env = {"PYTHONPATH": os.pathsep.join([*map(str, sites), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env[DISABLE_VARIABLE] = disable or ""
    env["OMP_NUM_THREADS"] = "1"
    return run_vaezoo(*args, env=env, cwd=cwd)


@attrs.define
class Listed:
    description: str
    origin: str
    params: list[tuple[str, str, str, str]] = attrs.Factory(list)


def parse_listing(text: str) -> dict[str, dict[str, Listed]]:
    """``vaezoo list`` output as {kind: {name: Listed}}."""
    kinds: dict[str, dict[str, Listed]] = {}
    current: dict[str, Listed] | None = None
    component: Listed | None = None
    for line in text.splitlines():
        if re.fullmatch(r"[a-z]+:", line):
            current, component = kinds.setdefault(line[:-1], {}), None
        elif (match := re.fullmatch(r"  (\S+) +(.*?)  \[(.*)\]", line)) and current is not None:
            component = current[match[1]] = Listed(match[2].strip(), match[3])
        elif (match := re.fullmatch(r"      (\w+) \((.+?), default (.*?)\): (.*)", line)) and component:
            component.params.append((match[1], match[2], match[3], match[4]))
        elif not line.startswith(" "):
            component = None
    return kinds


def choices_in(message: str) -> list[str]:
    """The names after 'choose one of:' in an error message."""
    match = re.search(r"choose one of: (.*)$", message.strip())
    assert match, f"no list of choices in {message!r}"
    return match[1].split(", ")


@pytest.fixture
def clean_plugin_env(monkeypatch):
    """No disabled plugins from the outer environment; fixture modules imported by a test are forgotten."""
    monkeypatch.delenv(DISABLE_VARIABLE, raising=False)
    yield monkeypatch
    for module in FIXTURE_MODULES:
        sys.modules.pop(module, None)


@pytest.fixture
def plugin_site(clean_plugin_env):
    clean_plugin_env.syspath_prepend(str(PLUGIN_SITE))
    return clean_plugin_env


# -- the fixture distributions themselves -------------------------------------------------------------------


def test_fixture_sites_hold_real_distributions(clean_plugin_env):
    for site in (BROKEN_SITE, PLUGIN_SITE, EXIT_SITE, HOOK_EXIT_SITE, CLASH_SITE):
        clean_plugin_env.syspath_prepend(str(site))
    for dist_name, entry_name, module in [
        ("vaezoo-fixture-plugin", "fixture", "vaezoo_fixture_plugin"),
        ("vaezoo-broken-plugin", "broken", "vaezoo_broken_plugin"),
        ("vaezoo-exit-plugin", "exits", "vaezoo_exit_plugin"),
        ("vaezoo-hook-exit-plugin", "hook_exit", "vaezoo_hook_exit_plugin"),
        ("vaezoo-clash-plugin", "networks", "vaezoo_clash_plugin"),
    ]:
        dist = importlib.metadata.distribution(dist_name)
        assert dist.metadata["Name"] == dist_name
        assert dist.version == "0.1.0"
        assert [(ep.name, ep.value) for ep in dist.entry_points.select(group="vaezoo")] == [(entry_name, module)]


def test_l2code_loss_terms_are_kl_and_weighted_squared_norm(plugin_site):
    from vaezoo_fixture_plugin import L2Code

    params = build_params(L2Code.Params, {"weight": "0.5"}, "regularizer 'l2code'")
    assert params.weight == 0.5
    assert build_params(L2Code.Params, {}, "regularizer 'l2code'").weight == 0.1
    with pytest.raises(UsageError, match=r"regularizer 'l2code'.*weight"):
        build_params(L2Code.Params, {"weight": -1}, "regularizer 'l2code'")

    loc = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    scale = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    z = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)  # squared norms 5 and 9
    prior = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    step = Step(
        x=torch.zeros(2, 3),
        posterior=Independent(Normal(loc, scale), 1),
        z=z,
        log_px=torch.zeros(2),
        prior=prior,
        noise_posterior=None,
        step=0,
    )
    terms = L2Code(params, 2)(step)
    assert set(terms) == {"l2code_kl", "l2code_norm"}
    assert terms["l2code_norm"].item() == pytest.approx(0.5 * (5 + 9) / 2)
    kl = 0.5 * (scale**2 + loc**2 - 1 - torch.log(scale**2)).sum(-1).mean()
    assert terms["l2code_kl"].item() == pytest.approx(kl.item(), rel=1e-6)
    terms["l2code_norm"].backward()
    assert torch.allclose(z.grad, 0.5 * 2 * z.detach() / 2)  # d/dz of weight * mean_b ||z_b||^2


# -- the CLI, in real processes -------------------------------------------------------------------------------


@pytest.mark.slow
def test_list_shows_fixture_plugin_with_origin_and_parameters(tmp_path):
    result = run_cli("list", "regularizer", sites=(PLUGIN_SITE,), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    listing = parse_listing(result.stdout)
    assert set(listing) == {"regularizer"}
    l2code = listing["regularizer"]["l2code"]
    assert l2code.origin == FIXTURE_ORIGIN
    assert l2code.description == "ReconE + KL + weight * E||z||^2"
    assert l2code.params == [("weight", "float", "0.1", "weight of the mean squared norm of the code z [>= 0]")]
    assert listing["regularizer"]["betavae"].origin == BETAVAE_ORIGIN
    assert "failed plugin" not in result.stdout and "disabled plugins" not in result.stdout


@pytest.mark.slow
def test_fixture_plugin_trains(tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        "run",
        "--regularizer",
        "l2code",
        "--steps",
        "20",
        "--no-progress",
        "--out",
        str(out),
        "--set",
        "eval.iw_samples=5",
        "--set",
        "train.eval_every=10",
        "--set",
        "eval.limit=200",
        "--set",
        "regularizer.weight=0.5",
        sites=(PLUGIN_SITE,),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"run directory: {out}" in result.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 20
    assert results["config"]["regularizer"] == {"name": "l2code", "weight": 0.5}
    assert all(math.isfinite(v) for v in results["metrics"].values())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20]
    for record in records:  # the plugin's own terms are what the model was trained on
        train = record["train"]
        assert train["l2code_norm"] > 0
        assert train["l2code_kl"] == pytest.approx(train["kl"])
        assert train["loss"] == pytest.approx(train["recon"] + train["l2code_kl"] + train["l2code_norm"])


@pytest.mark.slow
@pytest.mark.parametrize("disable", ["fixture", "vaezoo-fixture-plugin"])
def test_disabled_plugin_is_gone(tmp_path, disable):
    listed = run_cli("list", "regularizer", sites=(PLUGIN_SITE,), cwd=tmp_path, disable=disable)
    assert listed.returncode == 0, listed.stderr
    regularizers = parse_listing(listed.stdout)["regularizer"]
    assert "l2code" not in regularizers
    assert regularizers["betavae"].origin == BETAVAE_ORIGIN
    assert "disabled plugins: fixture" in listed.stdout.splitlines()

    out = tmp_path / "run"
    ran = run_cli(
        "run", "--regularizer", "l2code", "--steps", "1", "--no-progress", "--out", str(out),
        sites=(PLUGIN_SITE,), cwd=tmp_path, disable=disable,
    )  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stderr.startswith("vaezoo: error: unknown regularizer 'l2code'; choose one of: "), ran.stderr
    choices = choices_in(ran.stderr)
    assert "betavae" in choices and "l2code" not in choices
    assert choices == sorted(regularizers)  # exactly what 'vaezoo list' offers
    assert not out.exists()


@pytest.mark.slow
def test_broken_plugin_is_reported_and_the_others_still_load(tmp_path):
    result = run_cli("list", sites=(BROKEN_SITE, PLUGIN_SITE), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"vaezoo: warning: {BROKEN_ORIGIN} failed and is left out: {BOOM}" in result.stderr.splitlines()
    assert f"failed plugin: {BROKEN_ORIGIN}: {BOOM}" in result.stdout.splitlines()
    assert_builtins_and_fixture_listed(parse_listing(result.stdout))


def assert_builtins_and_fixture_listed(listing: dict[str, dict[str, Listed]]) -> None:
    """Every kind of component is listed, with the built-ins from ``vaezoo`` and ``l2code`` from the fixture."""
    assert set(KINDS) <= set(listing), sorted(listing)
    for kind, name in BUILTINS.items():
        assert listing[kind][name].origin.endswith("(distribution vaezoo)"), (kind, name)
    assert listing["regularizer"]["l2code"].origin == FIXTURE_ORIGIN


FAILING_PLUGINS = [
    pytest.param(EXIT_SITE, EXIT_ORIGIN, "SystemExit: 3", id="sys.exit-at-import"),
    pytest.param(HOOK_EXIT_SITE, HOOK_EXIT_ORIGIN, "SystemExit: 4", id="SystemExit-in-register-hook"),
    pytest.param(CLASH_SITE, CLASH_ORIGIN, CLASH, id="entry-point-name-of-a-builtin"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("site", "origin", "error"), FAILING_PLUGINS)
def test_failing_plugin_is_named_and_every_command_still_works(tmp_path, site, origin, error):
    """``vaezoo list`` and ``vaezoo run`` exit 0 with a warning naming the plugin and its distribution; the
    built-ins and the fixture plugin still list and train."""
    warning = f"vaezoo: warning: {origin} failed and is left out: {error}"
    listed = run_cli("list", sites=(site, PLUGIN_SITE), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    assert listed.stderr.splitlines() == [warning]
    assert f"failed plugin: {origin}: {error}" in listed.stdout.splitlines()
    assert_builtins_and_fixture_listed(parse_listing(listed.stdout))

    out = tmp_path / "run"
    ran = run_cli(
        "run", "--regularizer", "l2code", "--steps", "2", *TINY_RUN, "--out", str(out),
        sites=(site, PLUGIN_SITE), cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert warning in ran.stderr.splitlines()
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 2
    assert results["config"]["encoder"]["name"] == results["config"]["decoder"]["name"] == "mlp"
    assert results["config"]["regularizer"]["name"] == "l2code"


# -- load_plugins in process ---------------------------------------------------------------------------------


def test_load_plugins_finds_the_fixture_plugin(plugin_site):
    plugins = load_plugins()
    assert plugins.failures == []
    assert plugins.disabled == []
    entry = plugins.registry.get("regularizer", "l2code")
    assert entry.origin == FIXTURE_ORIGIN
    assert entry.cls.__module__ == "vaezoo_fixture_plugin"
    assert plugins.manager.get_plugin("fixture") is sys.modules["vaezoo_fixture_plugin"]
    config = resolve(merge_raw({"regularizer": {"name": "l2code", "weight": 2}}), plugins.registry)
    assert config.regularizer.params.weight == 2.0


def test_without_the_site_the_fixture_plugin_is_unknown(clean_plugin_env):
    plugins = load_plugins()
    assert "l2code" not in plugins.registry.names("regularizer")
    with pytest.raises(UsageError, match=r"unknown regularizer 'l2code'; choose one of: ") as caught:
        plugins.registry.get("regularizer", "l2code")
    assert choices_in(str(caught.value)) == plugins.registry.names("regularizer")


def test_load_plugins_isolates_a_broken_plugin(plugin_site):
    plugin_site.syspath_prepend(str(BROKEN_SITE))
    plugins = load_plugins()
    assert plugins.failures == [PluginFailure("broken", BROKEN_ORIGIN, BOOM)]
    assert plugins.registry.get("regularizer", "l2code").origin == FIXTURE_ORIGIN
    assert plugins.registry.get("regularizer", "betavae").cls is BetaVAE
    assert "vaezoo_broken_plugin" not in sys.modules


def test_load_plugins_isolates_sys_exit_at_import(plugin_site):
    plugin_site.syspath_prepend(str(EXIT_SITE))
    plugins = load_plugins()
    assert plugins.failures == [PluginFailure("exits", EXIT_ORIGIN, "SystemExit: 3")]
    assert plugins.registry.get("regularizer", "l2code").origin == FIXTURE_ORIGIN
    assert plugins.registry.get("regularizer", "betavae").cls is BetaVAE
    assert plugins.manager.get_plugin("exits") is None
    assert "vaezoo_exit_plugin" not in sys.modules


def test_load_plugins_isolates_system_exit_in_the_register_hook(plugin_site):
    plugin_site.syspath_prepend(str(HOOK_EXIT_SITE))
    plugins = load_plugins()
    assert plugins.failures == [PluginFailure("hook_exit", HOOK_EXIT_ORIGIN, "SystemExit: 4")]
    assert "exitreg" not in plugins.registry.names("regularizer")  # registered before the exit, yet not kept
    assert plugins.registry.get("regularizer", "l2code").origin == FIXTURE_ORIGIN
    assert plugins.registry.get("regularizer", "betavae").cls is BetaVAE


def test_entry_point_name_of_a_builtin_is_a_failure_naming_both_distributions(plugin_site):
    plugin_site.syspath_prepend(str(CLASH_SITE))
    plugins = load_plugins()
    assert plugins.failures == [PluginFailure("networks", CLASH_ORIGIN, CLASH)]
    assert plugins.manager.get_plugin("networks") is networks  # the built-in keeps its name
    assert plugins.registry.get("encoder", "mlp").origin == "plugin 'networks' (distribution vaezoo)"
    assert "shadow" not in plugins.registry.names("regularizer")
    assert "vaezoo_clash_plugin" not in sys.modules  # a clashing plugin is never imported
    assert plugins.registry.get("regularizer", "l2code").origin == FIXTURE_ORIGIN


def test_disabling_a_clashing_distribution_leaves_the_builtin_of_that_name(plugin_site):
    plugin_site.syspath_prepend(str(CLASH_SITE))
    plugin_site.setenv(DISABLE_VARIABLE, "vaezoo-clash-plugin")
    plugins = load_plugins()
    assert plugins.failures == []
    assert plugins.disabled == []  # the name 'networks' is the built-in's, which is not disabled
    assert plugins.manager.get_plugin("networks") is networks
    assert plugins.registry.get("encoder", "mlp").origin == "plugin 'networks' (distribution vaezoo)"


def test_a_second_copy_of_the_same_distribution_is_skipped_silently(plugin_site, tmp_path):
    copy = tmp_path / "copy_site"
    shutil.copytree(PLUGIN_SITE, copy)
    plugin_site.setattr(sys, "path", [*sys.path, str(copy)])
    plugins = load_plugins()
    assert plugins.failures == []
    assert plugins.registry.get("regularizer", "l2code").origin == FIXTURE_ORIGIN
    assert Path(sys.modules["vaezoo_fixture_plugin"].__file__).parent == PLUGIN_SITE  # the first on the path


@pytest.mark.parametrize("disable", [" fixture , not-a-plugin", "vaezoo-fixture-plugin"])
def test_load_plugins_honours_the_disable_variable(plugin_site, disable):
    plugin_site.syspath_prepend(str(BROKEN_SITE))
    plugin_site.setenv(DISABLE_VARIABLE, f"broken,{disable}")
    plugins = load_plugins()
    assert plugins.disabled == ["broken", "fixture"]
    assert plugins.failures == []  # a disabled plugin is never imported, so it cannot fail
    assert "l2code" not in plugins.registry.names("regularizer")
    assert plugins.registry.get("regularizer", "betavae").cls is BetaVAE
    assert "vaezoo_fixture_plugin" not in sys.modules


class _Impostor(Regularizer):
    name = "betavae"

    def forward(self, step: Step) -> dict[str, torch.Tensor]:
        return {}


class _Renamed(_Impostor):
    name = "zeta"


class DuplicateBetaVAE:
    """An extra plugin registering a second regularizer named 'betavae'."""

    @staticmethod
    @hookimpl
    def vaezoo_register(register) -> None:
        register(_Impostor)


class Misspelt:
    """An extra plugin whose hook name is misspelt: pluggy's check_pending rejects it."""

    @staticmethod
    @hookimpl
    def vaezoo_registr(register) -> None:  # sic
        raise AssertionError("a misspelt hook is never called")


class ExitsInHook:
    """An extra plugin whose hook calls sys.exit(5)."""

    @staticmethod
    @hookimpl
    def vaezoo_register(register) -> None:
        sys.exit(5)


class InterruptedInHook:
    """An extra plugin whose hook is interrupted from the keyboard."""

    @staticmethod
    @hookimpl
    def vaezoo_register(register) -> None:
        raise KeyboardInterrupt


def test_sys_exit_in_an_extra_plugin_is_a_failure_of_that_plugin_only(clean_plugin_env):
    plugins = load_plugins(extra=(ExitsInHook,))
    assert plugins.failures == [PluginFailure("ExitsInHook", "plugin 'ExitsInHook'", "SystemExit: 5")]
    assert plugins.registry.get("regularizer", "betavae").cls is BetaVAE


def test_keyboard_interrupt_in_a_plugin_is_not_swallowed(clean_plugin_env):
    with pytest.raises(KeyboardInterrupt):
        load_plugins(extra=(InterruptedInHook,))


def test_duplicate_registration_is_a_failure_naming_both_origins(clean_plugin_env):
    plugins = load_plugins(extra=(DuplicateBetaVAE,))
    assert len(plugins.failures) == 1
    error = plugins.failures[0].error
    assert error.startswith("vaezoo.plugins.registry.DuplicateComponent: regularizer 'betavae' is registered twice: ")
    assert BETAVAE_ORIGIN in error and "plugin 'DuplicateBetaVAE'" in error
    assert plugins.registry.names("regularizer").count("betavae") == 1  # one of the two, never a mixture


def test_duplicate_registration_leaves_the_builtin_working(clean_plugin_env):
    plugins = load_plugins(extra=(DuplicateBetaVAE,))
    assert [f.plugin for f in plugins.failures] == ["DuplicateBetaVAE"]
    assert plugins.failures[0].origin == "plugin 'DuplicateBetaVAE'"
    entry = plugins.registry.get("regularizer", "betavae")
    assert (entry.cls, entry.origin) == (BetaVAE, BETAVAE_ORIGIN)
    config = resolve(merge_raw(), plugins.registry)
    assert config.regularizer.name == "betavae"


def test_misspelt_hook_is_a_failure_of_that_plugin_only(clean_plugin_env):
    plugins = load_plugins(extra=(Misspelt,))
    assert [f.plugin for f in plugins.failures] == ["Misspelt"]
    assert "vaezoo_registr" in plugins.failures[0].error
    assert plugins.registry.get("regularizer", "betavae").cls is BetaVAE


# -- Registry --------------------------------------------------------------------------------------------------


def test_registry_unknown_names_list_the_choices():
    registry = Registry()
    with pytest.raises(UsageError, match=r"^unknown regularizer 'nope'; choose one of: \(none registered\)$"):
        registry.get("regularizer", "nope")
    registry.add(BetaVAE, origin="plugin 'a'")
    registry.add(_Renamed, origin="plugin 'b'")
    with pytest.raises(UsageError, match=r"^unknown regularizer 'nope'; choose one of: betavae, zeta$"):
        registry.get("regularizer", "nope")
    with pytest.raises(UsageError, match=r"^unknown component kind 'regulariser'; valid kinds: data, encoder"):
        registry.get("regulariser", "betavae")
    assert registry.get("regularizer", "zeta").cls is _Renamed


def test_registry_rejects_duplicates_and_non_components():
    registry = Registry()
    registry.add(BetaVAE, origin="plugin 'a'")
    with pytest.raises(DuplicateComponent, match=r"'betavae' is registered twice: by plugin 'a' and by plugin 'b'"):
        registry.add(_Impostor, origin="plugin 'b'")
    with pytest.raises(TypeError, match="derives from none of the component interfaces"):
        registry.add(int, origin="plugin 'c'")
    staged = Registry()
    staged.add(_Renamed, origin="plugin 'd'")
    staged.add(type("Other", (_Impostor,), {"name": "betavae"}), origin="plugin 'd'")
    with pytest.raises(DuplicateComponent, match="by plugin 'a' and by plugin 'd'"):
        registry.merge(staged)
    assert registry.names("regularizer") == ["betavae"]  # a failed merge adds nothing
    assert registry.get("regularizer", "betavae").cls is BetaVAE


class _NotAttrsParams(Regularizer):
    name = "plain-params"

    class Params:  # a plain class, not attrs: refused at registration
        weight = 1.0

    def forward(self, step):
        return {}


class PlainParamsPlugin:
    @hookimpl
    def vaezoo_register(self, register):
        register(_NotAttrsParams)


def test_component_without_attrs_params_is_a_failure_of_its_plugin(clean_plugin_env):
    plugins = load_plugins(extra=(PlainParamsPlugin(),))
    assert len(plugins.failures) == 1
    assert "Params must be a frozen attrs class" in plugins.failures[0].error
    assert "plain-params" not in plugins.registry.names("regularizer")
    assert "betavae" in plugins.registry.names("regularizer")


COMMAND_SITE = Path(__file__).parent / "fixtures" / "command_site"


@pytest.mark.slow
def test_a_plugin_adds_a_subcommand_and_one_naming_a_core_command_is_reported(tmp_path):
    env = {"PYTHONPATH": str(COMMAND_SITE)}
    greeted = run_vaezoo("hello", "--name", "zoo", env=env, cwd=tmp_path)
    assert greeted.returncode == 0 and greeted.stdout == "hello, zoo\n", greeted.stderr
    assert (
        "command 'run' is registered twice: by plugin 'commands' (distribution vaezoo) and by plugin 'clash'"
        " (distribution vaezoo-hello-command)" in greeted.stderr
    )
    # the entry-point group of earlier versions is not read, and its entry points are named with where they go
    assert "entry point 'old' of group 'vaezoo.commands' (distribution vaezoo-hello-command)" in greeted.stderr
    assert "the group 'vaezoo.commands' is not read" in greeted.stderr
    ran = run_vaezoo("run", "--steps", "x", env=env, cwd=tmp_path)
    assert ran.returncode == 2 and "invalid int value: 'x'" in ran.stderr  # the core's run kept its name
    refused = run_vaezoo("hello", "--name", "", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().endswith("vaezoo: error: --name must not be empty")
    listed = run_vaezoo("--help", env=env, cwd=tmp_path)
    assert "hello" in listed.stdout and "theory" in listed.stdout
    alone = run_vaezoo("--help", cwd=tmp_path).stdout
    assert "theory" in alone and "hello" not in alone


def test_a_third_party_metric_is_registered_with_its_legend_and_direction(plugin_site):
    from vaezoo.evaluation.evaluate import metric_catalogue
    from vaezoo.runs.session import registered_metrics

    plugins = load_plugins()
    entry = plugins.registry.get("metric", "code_norm")
    assert entry.origin == FIXTURE_ORIGIN
    catalogue = metric_catalogue(registered_metrics(plugins.registry))
    assert catalogue["code_norm"] == {"legend": "code_norm = E_x ||E_q[z|x]||^2", "higher_is_better": False, "when": ""}
    assert list(catalogue)[:3] == ["neg_elbo", "recon", "kl"] and list(catalogue)[-1] == "test_prior_variance"
    assert list(catalogue).index("code_norm") > list(catalogue).index("separability")  # order 100: after built-ins
