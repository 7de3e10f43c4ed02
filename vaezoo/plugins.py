"""Finding plugins: pluggy over the entry-point group ``vaezoo``, with per-plugin failure isolation.

Built-in and third-party plugins are found and registered the same way. A plugin that fails to import or to
register is recorded (by distribution and entry-point name) and left out; the others keep working.
``VAEZOO_DISABLE_PLUGINS=name1,name2`` blocks plugins by entry-point or distribution name.
"""

from __future__ import annotations

import functools
import os
import re
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


def _normalise(name: str) -> str:
    """Distribution-name normalisation (PEP 503), so 'vaezoo_x' and 'Vaezoo-X' name the same plugin."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _register(manager: pluggy.PluginManager, plugin: object, name: str | None) -> str:
    """Register one plugin and validate its hooks; on any error leave the manager as it was."""
    registered = manager.register(plugin, name=name)
    try:
        manager.check_pending()  # catches misspelt hook names
    except Exception:
        manager.unregister(name=registered)
        raise
    return registered


def load_plugins(extra: tuple[object, ...] = ()) -> Plugins:
    """Load every plugin of the ``vaezoo`` entry-point group (plus ``extra`` plugin objects) into a registry.

    The built-in plugins (distribution ``vaezoo``) are registered first, then the others ordered by
    distribution and entry-point name, then ``extra``; when two plugins claim the same component name, the
    earlier keeps it and the later is reported as failed, naming both.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    disabled = {_normalise(n) for n in _disabled_names()}
    failures: list[PluginFailure] = []
    blocked: list[str] = []
    order: list[tuple[str, str]] = []  # (registered name, origin) in registration order

    found = sorted(
        entry_points(group=hookspecs.PROJECT),
        key=lambda ep: (_distribution_name(ep) != hookspecs.PROJECT, _distribution_name(ep), ep.name),
    )
    for entry_point in found:
        dist = _distribution_name(entry_point)
        if _normalise(entry_point.name) in disabled or _normalise(dist) in disabled:
            manager.set_blocked(entry_point.name)
            blocked.append(entry_point.name)
            continue
        if manager.get_plugin(entry_point.name) is not None or manager.is_blocked(entry_point.name):
            continue
        origin = f"plugin {entry_point.name!r} (distribution {dist})"
        try:
            order.append((_register(manager, entry_point.load(), entry_point.name), origin))
        except Exception as error:  # a broken third-party plugin must not take the others down
            failures.append(PluginFailure(entry_point.name, origin, _describe(error)))
    for plugin in extra:
        name = manager.get_canonical_name(plugin)
        try:
            order.append((_register(manager, plugin, None), f"plugin {name!r}"))
        except Exception as error:
            failures.append(PluginFailure(name, f"plugin {name!r}", _describe(error)))

    registry = Registry()
    implementations = {impl.plugin_name: impl for impl in manager.hook.vaezoo_register.get_hookimpls()}
    for name, origin in order:
        impl = implementations.get(name)
        if impl is None:
            continue  # a plugin may implement no hook at all
        staged = Registry()
        try:
            impl.function(register=functools.partial(staged.add, origin=origin))
            registry.merge(staged)
        except Exception as error:
            failures.append(PluginFailure(name, origin, _describe(error)))
    return Plugins(manager, registry, failures, sorted(blocked))


@functools.cache
def default_plugins() -> Plugins:
    """The plugins of this process, loaded once."""
    return load_plugins()
