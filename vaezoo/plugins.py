"""Finding plugins: pluggy over the entry-point group ``vaezoo``, with per-plugin failure isolation.

Built-in and third-party plugins are found and registered the same way. A plugin that fails to import or to
register is recorded (by distribution and entry-point name) and left out; the others keep working.
``VAEZOO_DISABLE_PLUGINS=name1,name2`` blocks plugins by entry-point or distribution name.
"""

from __future__ import annotations

import functools
import os
import traceback
from importlib.metadata import EntryPoint, entry_points

import attrs
import pluggy

from vaezoo import hookspecs
from vaezoo.registry import Registry

DISABLE_VARIABLE = "VAEZOO_DISABLE_PLUGINS"


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


def load_plugins(extra: tuple[object, ...] = ()) -> Plugins:
    """Load every plugin of the ``vaezoo`` entry-point group (plus ``extra`` plugin objects) into a registry."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    disabled = _disabled_names()
    failures: list[PluginFailure] = []
    blocked: list[str] = []
    origins: dict[str, str] = {}

    for entry_point in entry_points(group=hookspecs.PROJECT):
        dist = _distribution_name(entry_point)
        if entry_point.name in disabled or dist in disabled:
            manager.set_blocked(entry_point.name)
            blocked.append(entry_point.name)
            continue
        if manager.get_plugin(entry_point.name) is not None or manager.is_blocked(entry_point.name):
            continue
        origin = f"plugin {entry_point.name!r} (distribution {dist})"
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as error:  # a broken third-party plugin must not take the others down
            failures.append(PluginFailure(entry_point.name, origin, _describe(error)))
            continue
        origins[entry_point.name] = origin
    for plugin in extra:
        name = manager.register(plugin)
        origins[name] = f"plugin {name!r}"
    manager.check_pending()

    registry = Registry()
    for impl in reversed(manager.hook.vaezoo_register.get_hookimpls()):
        origin = origins.get(impl.plugin_name, f"plugin {impl.plugin_name!r}")
        staged = Registry()
        try:
            impl.function(register=functools.partial(staged.add, origin=origin))
            registry.merge(staged)
        except Exception as error:
            failures.append(PluginFailure(impl.plugin_name, origin, _describe(error)))
    return Plugins(manager, registry, failures, sorted(blocked))


@functools.cache
def default_plugins() -> Plugins:
    """The plugins of this process, loaded once."""
    return load_plugins()
