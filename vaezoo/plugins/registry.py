"""One registry per kind of component: names to classes, each remembering the plugin it came from."""

from __future__ import annotations

import fnmatch

import attrs

from vaezoo.base.errors import UsageError
from vaezoo.plugins.component import ALL_KINDS, Component


@attrs.frozen
class Entry:
    """A registered component class and the plugin (and distribution) that registered it."""

    cls: type
    origin: str


class DuplicateComponent(Exception):
    """Two plugins registered the same name for the same kind."""


class Registry:
    """Maps ``(kind, name)`` to an :class:`Entry`. The core's kinds (:data:`ALL_KINDS`) always exist; an installed
    package may define another by an interface whose ``kind`` is new (the benchmark runner's ``executor``)."""

    def __init__(self) -> None:
        #: The hooks of the plugins that filled the registry (pluggy's hook relay), for evaluation plugins.
        self.hook = None
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in ALL_KINDS}

    def add(self, cls: type, origin: str) -> None:
        kind = kind_of(cls)
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__} from {origin} has no 'name' class attribute")
        if not attrs.has(getattr(cls, "Params", None)):
            raise TypeError(f"{cls.__qualname__} from {origin}: Params must be a frozen attrs class")
        existing = self._entries.setdefault(kind, {}).get(name)
        if existing is not None:
            raise DuplicateComponent(f"{kind} {name!r} is registered twice: by {existing.origin} and by {origin}")
        self._entries[kind][name] = Entry(cls, origin)

    def merge(self, other: Registry) -> None:
        """Add all of ``other``'s entries, or none of them if any name is taken already."""
        for kind in other._entries:
            for name, entry in other._entries[kind].items():
                if name in self._entries.get(kind, {}):
                    raise DuplicateComponent(
                        f"{kind} {name!r} is registered twice: by {self._entries[kind][name].origin}"
                        f" and by {entry.origin}"
                    )
        for kind, entries in other._entries.items():
            self._entries.setdefault(kind, {}).update(entries)

    def get(self, kind: str, name: str) -> Entry:
        """The entry for ``name``; an unknown name is a UsageError listing the choices."""
        if kind not in self._entries:
            raise UsageError(f"unknown component kind {kind!r}; valid kinds: {', '.join(self.kinds())}")
        try:
            return self._entries[kind][name]
        except KeyError:
            choices = ", ".join(sorted(self._entries[kind])) or "(none registered)"
            raise UsageError(f"unknown {kind} {name!r}; choose one of: {choices}") from None

    def names(self, kind: str, pattern: str = "*") -> list[str]:
        """The registered names of ``kind`` matching the glob ``pattern``, sorted; none for an unknown kind."""
        return sorted(n for n in self._entries.get(kind, {}) if fnmatch.fnmatch(n, pattern))

    def entries(self, kind: str) -> dict[str, Entry]:
        """The entries of ``kind`` by name, sorted; none for an unknown kind."""
        return dict(sorted(self._entries.get(kind, {}).items()))

    def kinds(self) -> tuple[str, ...]:
        """The core's kinds, then the kinds installed packages registered components of."""
        return (*ALL_KINDS, *sorted(kind for kind in self._entries if kind not in ALL_KINDS))


def kind_of(cls: type) -> str:
    """The kind a component class belongs to: the ``kind`` of the interface it derives from."""
    kind = getattr(cls, "kind", None)
    if isinstance(cls, type) and issubclass(cls, Component) and isinstance(kind, str) and kind:
        return kind
    raise TypeError(f"{cls!r} derives from none of the component interfaces (their kinds: {', '.join(ALL_KINDS)})")
