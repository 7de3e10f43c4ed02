"""Finding plugins: pluggy over the entry-point group ``vaezoo``, with per-plugin failure isolation.

Built-in and third-party plugins are found and registered the same way. A plugin that fails to import, to
register or in its ``vaezoo_register`` hook, with any exception but ``KeyboardInterrupt`` (``SystemExit``
included), is recorded by entry-point name and distribution and left out; the others keep working. So is an entry
point whose name another distribution already uses. ``VAEZOO_DISABLE_PLUGINS=name1,name2`` blocks plugins by
entry-point or distribution name.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import traceback
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from vaezoo.plugins import hookspecs
from vaezoo.plugins.registry import Registry

DISABLE_VARIABLE = "VAEZOO_DISABLE_PLUGINS"
#: Entry-point group of subcommands plugins add to ``vaezoo`` (``vaezoo NAME``), e.g. the theory lab.
COMMANDS_GROUP = f"{hookspecs.PROJECT}.commands"
#: What a command module must provide.
COMMAND_ATTRIBUTES = ("HELP", "add_arguments", "run")


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded or registered, and why."""

    plugin: str
    origin: str
    error: str


@attrs.define
class Plugins:
    """The loaded plugin manager, the registry it filled, and what went wrong on the way."""

    manager: pluggy.PluginManager
    registry: Registry
    failures: list[PluginFailure]
    disabled: list[str]


def _disabled_names() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_VARIABLE, "").split(",") if n.strip()}


def _distribution_name(entry_point: EntryPoint) -> str:
    dist = entry_point.dist
    return dist.metadata["Name"] if dist is not None else "(unknown distribution)"


def _describe(error: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def _normalise(name: str) -> str:
    """Distribution-name normalisation (PEP 503), so 'vaezoo_x' and 'Vaezoo-X' name the same plugin."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _register(manager: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    """Register one plugin and validate its hooks; on any error leave the manager as it was."""
    registered = manager.register(plugin, name=name)
    try:
        manager.check_pending()  # catches misspelt hook names
    except BaseException:
        manager.unregister(name=registered)
        raise
    return registered


@contextlib.contextmanager
def _isolated(failures: list[PluginFailure], plugin: str, origin: str) -> Iterator[None]:
    """Run the block on behalf of one plugin: any exception but ``KeyboardInterrupt`` (``SystemExit`` included)
    is recorded in ``failures`` as a failure of ``plugin`` from ``origin`` and goes no further."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # a plugin must not take the others, or the command, down
        failures.append(PluginFailure(plugin, origin, _describe(error)))


def _origin(entry_point: EntryPoint) -> str:
    return f"plugin {entry_point.name!r} (distribution {_distribution_name(entry_point)})"


def _name_clash(entry_point: EntryPoint, owner: str) -> str:
    """Why ``entry_point`` is left out: distribution ``owner`` declared the same entry-point name first."""
    dist = _distribution_name(entry_point)
    return (
        f"entry-point name {entry_point.name!r} is already taken by distribution {owner}; rename the entry point"
        f" in the [project.entry-points.{hookspecs.PROJECT}] table of distribution {dist}"
    )


def _load_entry_points(
    manager: pluggy.PluginManager, failures: list[PluginFailure], blocked: set[str]
) -> list[tuple[str, str]]:
    """Import and register the plugins of the entry-point group, built-ins first (see :func:`load_plugins`);
    (registered name, origin) of each, in order. Failures and blocked names are added to the lists given."""
    disabled = {_normalise(n) for n in _disabled_names()}
    order: list[tuple[str, str]] = []
    found = sorted(
        entry_points(group=hookspecs.PROJECT),
        key=lambda ep: (_distribution_name(ep) != hookspecs.PROJECT, _distribution_name(ep), ep.name),
    )
    owners: dict[str, str] = {}  # entry-point name -> the distribution that declared it first
    for entry_point in found:
        name, dist = entry_point.name, _distribution_name(entry_point)
        owner = owners.get(name)
        owners.setdefault(name, dist)
        if _normalise(name) in disabled or _normalise(dist) in disabled:
            if owner is None:  # a name another distribution holds is neither blocked nor listed as disabled
                manager.set_blocked(name)
                blocked.add(name)
        elif owner is None:
            with _isolated(failures, name, _origin(entry_point)):
                order.append((_register(manager, entry_point.load(), name), _origin(entry_point)))
        elif _normalise(owner) != _normalise(dist):
            failures.append(PluginFailure(name, _origin(entry_point), _name_clash(entry_point, owner)))
        # else: a second copy of the same distribution on the path, skipped
    return order


def load_plugins(extra: tuple[object, ...] = ()) -> Plugins:
    """Load every plugin of the ``vaezoo`` entry-point group (plus ``extra`` plugin objects) into a registry.

    The built-in plugins (distribution ``vaezoo``) are registered first, then the others ordered by
    distribution and entry-point name, then ``extra``. Every exception but ``KeyboardInterrupt`` that a plugin
    raises on import, on registration or in its ``vaezoo_register`` hook (``SystemExit`` included) makes it a
    :class:`PluginFailure` that keeps none of its components. An entry-point name belongs to the first
    distribution declaring it (a built-in keeps its own); the same name from another distribution is a failure
    naming both, and that plugin is never imported. When two plugins claim the same component name, the earlier
    keeps it and the later is reported as failed, naming both.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    blocked: set[str] = set()
    order = _load_entry_points(manager, failures, blocked)  # (registered name, origin) in registration order
    for plugin in extra:
        name = manager.get_canonical_name(plugin)
        with _isolated(failures, name, f"plugin {name!r}"):
            order.append((_register(manager, plugin, None), f"plugin {name!r}"))

    registry = Registry()
    implementations = {impl.plugin_name: impl for impl in manager.hook.vaezoo_register.get_hookimpls()}
    for name, origin in order:
        impl = implementations.get(name)
        if impl is None:
            continue  # a plugin may implement no hook at all
        staged = Registry()
        with _isolated(failures, name, origin):
            impl.function(register=functools.partial(staged.add, origin=origin))
            registry.merge(staged)
    registry.hook = manager.hook
    return Plugins(manager, registry, failures, sorted(blocked))


@attrs.frozen
class Command:
    """A subcommand a plugin adds, ``vaezoo NAME``: its module has ``HELP`` (one line), ``add_arguments(parser)``
    (argparse) and ``run(args) -> int`` (raising UsageError for bad input).

    Every ``vaezoo`` invocation, ``vaezoo --help`` included, imports the module and calls ``add_arguments``: keep
    both cheap and import heavy libraries (torch, matplotlib) in ``run``."""

    name: str
    module: Any


def load_group(
    group: str, kind: str, check: Callable[[Any], None], taken: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[PluginFailure]]:
    """The objects the entry points of ``group`` name (a ``kind`` each: "command", "executor"), by entry-point
    name, and the entry points that failed to load, failed ``check`` (which raises on an unfit object) or whose
    name is ``taken`` or already used; disabled plugins are left out. One failure never hides the others."""
    disabled = {_normalise(n) for n in _disabled_names()}
    loaded: dict[str, Any] = {}
    failures: list[PluginFailure] = []
    for entry_point in sorted(entry_points(group=group), key=lambda ep: ep.name):
        name, dist = entry_point.name, _distribution_name(entry_point)
        if _normalise(name) in disabled or _normalise(dist) in disabled:
            continue
        origin = f"{kind} {name!r} (distribution {dist})"
        if name in taken or name in loaded:
            failures.append(PluginFailure(name, origin, f"the {kind} name {name!r} is already taken"))
            continue
        with _isolated(failures, name, origin):
            target = entry_point.load()
            check(target)
            loaded[name] = target
    return loaded, failures


def _check_command(module: Any) -> None:
    missing = [attribute for attribute in COMMAND_ATTRIBUTES if not hasattr(module, attribute)]
    if missing:
        raise TypeError(f"a command module must define {', '.join(COMMAND_ATTRIBUTES)}; missing {missing}")


def load_commands(taken: tuple[str, ...]) -> tuple[list[Command], list[PluginFailure]]:
    """The commands of the entry-point group ``vaezoo.commands``, by name, and the ones that failed to load or
    whose name is ``taken`` (a core command's) or already used; disabled plugins are left out."""
    modules, failures = load_group(COMMANDS_GROUP, "command", _check_command, taken)
    return [Command(name, module) for name, module in modules.items()], failures


@functools.cache
def default_plugins() -> Plugins:
    """The plugins of this process, loaded once."""
    return load_plugins()
