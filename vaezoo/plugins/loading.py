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
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
import pluggy

from vaezoo.plugins import hookspecs
from vaezoo.plugins.registry import Registry

DISABLE_VARIABLE = "VAEZOO_DISABLE_PLUGINS"
#: Entry-point groups earlier versions read, and where what they named belongs now.
RETIRED_GROUPS = {
    f"{hookspecs.PROJECT}.commands": (
        f"name the module in the group {hookspecs.PROJECT!r} and register the command in its vaezoo_commands hook"
    ),
    f"{hookspecs.PROJECT}.executors": (
        f"name a plugin module in the group {hookspecs.PROJECT!r} and register the executor class in its"
        " vaezoo_register hook"
    ),
}
#: What a command module must provide.
COMMAND_ATTRIBUTES = ("HELP", "add_arguments", "run")


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded or registered, and why."""

    plugin: str
    origin: str
    error: str


@attrs.frozen
class Command:
    """A subcommand, ``vaezoo NAME``, that a plugin registered through ``vaezoo_commands``: its module has ``HELP``
    (one line), ``add_arguments(parser)`` (argparse) and ``run(args) -> int``."""

    name: str
    module: Any
    origin: str


@attrs.define
class Plugins:
    """The loaded plugin manager and what went wrong loading it; the components and the commands its plugins
    register, each asked for when first needed (components import torch, commands must not)."""

    manager: pluggy.PluginManager
    failures: list[PluginFailure]
    disabled: list[str]
    #: (registered name, origin) of each plugin, in registration order.
    order: list[tuple[str, str]]
    _registry: Registry | None = attrs.field(default=None, init=False)
    _commands: dict[str, Command] | None = attrs.field(default=None, init=False)

    @property
    def registry(self) -> Registry:
        """Every plugin's components (``vaezoo_register``, called on first use); failures are added to
        :attr:`failures`."""
        if self._registry is None:
            self._registry = _fill_registry(self.manager, self.order, self.failures)
        return self._registry

    @property
    def commands(self) -> dict[str, Command]:
        """Every plugin's subcommands by name (``vaezoo_commands``, called on first use)."""
        if self._commands is None:
            self._commands = _collect_commands(self.manager, self.order, self.failures)
        return self._commands


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


def _outside_core(entry_point: EntryPoint) -> bool:
    """Whether a plugin lives outside the core package (the core's own commands come first)."""
    return not entry_point.value.startswith(f"{hookspecs.PROJECT}.")


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
        key=lambda ep: (
            _distribution_name(ep) != hookspecs.PROJECT,
            _outside_core(ep),
            _distribution_name(ep),
            ep.name,
        ),
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


def load_plugins(extra: tuple[object, ...] = (), *, lazy: bool = False) -> Plugins:
    """Load every plugin of the ``vaezoo`` entry-point group (plus ``extra`` plugin objects) and, unless ``lazy``,
    register their components (``lazy``: when :attr:`Plugins.registry` is first read, which imports torch).

    The built-in plugins (distribution ``vaezoo``, the core's own first) are registered first, then the others
    ordered by distribution and entry-point name, then ``extra``. Every exception but ``KeyboardInterrupt`` that a
    plugin raises on import, on registration or in one of its hooks (``SystemExit`` included) makes it a
    :class:`PluginFailure` that keeps none of what that hook registered. An entry-point name belongs to the first
    distribution declaring it (a built-in keeps its own); the same name from another distribution is a failure
    naming both, and that plugin is never imported. When two plugins claim the same component or command name,
    the earlier keeps it and the later is reported as failed, naming both. Entry points of the groups this
    version no longer reads (:data:`RETIRED_GROUPS`) are reported as failures saying where they belong now.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    failures: list[PluginFailure] = []
    blocked: set[str] = set()
    order = _load_entry_points(manager, failures, blocked)
    for plugin in extra:
        name = manager.get_canonical_name(plugin)
        with _isolated(failures, name, f"plugin {name!r}"):
            order.append((_register(manager, plugin, None), f"plugin {name!r}"))
    failures.extend(_retired_entry_points())
    plugins = Plugins(manager, failures, sorted(blocked), order)
    if not lazy:
        plugins.registry  # noqa: B018 (registers the components now)
    return plugins


def _implementations(manager: pluggy.PluginManager, hook: str, order: list[tuple[str, str]]) -> Iterator[Any]:
    """(function, origin) of each plugin implementing ``hook``, in registration order."""
    implementations = {impl.plugin_name: impl for impl in getattr(manager.hook, hook).get_hookimpls()}
    for name, origin in order:
        if name in implementations:  # a plugin may implement no hook at all
            yield name, implementations[name].function, origin


def _fill_registry(manager: pluggy.PluginManager, order: list[tuple[str, str]], failures: list) -> Registry:
    """Call each plugin's ``vaezoo_register`` on its own staging registry, keeping all of a plugin's components
    or, when it fails or a name clashes, none."""
    registry = Registry()
    for name, register_hook, origin in _implementations(manager, "vaezoo_register", order):
        staged = Registry()
        with _isolated(failures, name, origin):
            register_hook(register=functools.partial(staged.add, origin=origin))
            registry.merge(staged)
    registry.hook = manager.hook
    return registry


def _collect_commands(manager: pluggy.PluginManager, order: list[tuple[str, str]], failures: list) -> dict:
    """Call each plugin's ``vaezoo_commands``, keeping all of a plugin's commands or, when it fails, an unfit
    module is given or a name is taken, none."""
    commands: dict[str, Command] = {}
    for name, commands_hook, origin in _implementations(manager, "vaezoo_commands", order):
        staged: dict[str, Command] = {}

        def register(command: str, module: Any, origin: str = origin, staged: dict = staged) -> None:
            missing = [attribute for attribute in COMMAND_ATTRIBUTES if not hasattr(module, attribute)]
            if missing:
                raise TypeError(f"command {command!r}: its module must define {', '.join(missing)}")
            taken = commands.get(command) or staged.get(command)
            if taken is not None:
                raise ValueError(f"command {command!r} is registered twice: by {taken.origin} and by {origin}")
            staged[command] = Command(command, module, origin)

        with _isolated(failures, name, origin):
            commands_hook(register=register)
            commands.update(staged)
    return commands


def _retired_entry_points() -> list[PluginFailure]:
    """A failure for each entry point of a group this version no longer reads, saying where it belongs."""
    disabled = {_normalise(n) for n in _disabled_names()}
    found = []
    for group, hook in RETIRED_GROUPS.items():
        for entry_point in entry_points(group=group):
            if _normalise(entry_point.name) in disabled or _normalise(_distribution_name(entry_point)) in disabled:
                continue
            dist = _distribution_name(entry_point)
            where = f"entry point {entry_point.name!r} of group {group!r} (distribution {dist})"
            found.append(PluginFailure(entry_point.name, where, f"the group {group!r} is not read; {hook}"))
    return found


@functools.cache
def default_plugins() -> Plugins:
    """The plugins of this process, loaded once; their components are registered when first needed, so that
    ``vaezoo --help`` imports no torch."""
    return load_plugins(lazy=True)
