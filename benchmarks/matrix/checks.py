"""Checks of the shape of a suite file's entries (tables, raw configs, lists of names, test priors, the keys of a
table, choices and numbers), each refusal a one-line UsageError naming the file and the entry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vaezoo.api import SECTIONS, UsageError, check_test_prior

#: The usual refusal of a value that is not among the choices (Reader.one_of).
ONE_OF = " is not one of {choices}"


class Reader:
    """Checks the shape of the entries of the suite file at ``path``, raising UsageErrors that name the file and
    the bad entry (``where``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> UsageError:
        """The UsageError to raise for ``message``, naming the file."""
        return UsageError(f"suite {str(self.path)!r}: {message}")

    def table(self, value: Any, where: str) -> dict[str, Any]:
        """``value`` as a dict when it is a table."""
        if not isinstance(value, Mapping):
            raise self.fail(f"{where} must be a table, got {value!r}")
        return dict(value)

    def keys(self, table: Mapping[str, Any], where: str, valid: Sequence[str]) -> None:
        """Refuses the first key of ``table`` (in sorted order) that is not ``valid``."""
        unknown = sorted(set(table) - set(valid))
        if unknown:
            raise self.fail(f"{where} has unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")

    def one_of(self, value: Any, subject: str, choices: Sequence[str], refusal: str = ONE_OF) -> Any:
        """``value`` when it is one of ``choices``, else a UsageError: ``subject`` (the entry), the value, and
        ``refusal``, in which ``{choices}`` stands for the choices."""
        if value not in choices:
            raise self.fail(f"{subject} {value!r}{refusal.format(choices=', '.join(choices))}")
        return value

    def at_least(self, value: Any, subject: str, kinds: tuple[type, ...], minimum: int, what: str) -> Any:
        """``value`` when it is a number of one of the types ``kinds`` (a bool is none) and at least ``minimum`` (NaN
        is not), else a UsageError naming ``subject`` (the entry) and ``what`` such a number is."""
        if isinstance(value, bool) or not isinstance(value, kinds) or not value >= minimum:  # NaN is not >= either
            raise self.fail(f"{subject} must be {what}, at least {minimum}, got {value!r}")
        return value

    def raw_config(self, value: Any, where: str) -> dict[str, Any]:
        """``value`` when it is a raw vaezoo config: a table of config sections, each a table."""
        raw = self.table(value, where)
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise self.fail(f"{where} has unknown config section {unknown[0]!r}; valid sections: {', '.join(SECTIONS)}")
        for section, values in raw.items():
            self.table(values, f"{where}.{section}")
        return raw

    def names(self, value: Any, where: str) -> tuple[str, ...]:
        """``value`` as a tuple when it is a list of strings."""
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"{where} must be a list of strings, got {value!r}")
        return tuple(value)

    def test_priors(self, value: Any, where: str) -> tuple[str, ...]:
        """``value`` as a tuple of test priors (each as vaezoo checks it) when it is a non-empty list of them."""
        if not isinstance(value, list) or not value:
            raise self.fail(f"{where} must be a non-empty list, got {value!r}")
        try:
            return tuple(check_test_prior(str(v)) for v in value)
        except UsageError as error:
            raise self.fail(f"{where}: {error}") from None

    def flat(self, value: Any, where: str) -> dict[str, Any]:
        """A table keyed by axis names; unquoted dotted keys (nested tables) are flattened one level."""
        flat: dict[str, Any] = {}
        for name, values in self.table(value, where).items():
            if isinstance(values, Mapping):
                flat.update({f"{name}.{param}": v for param, v in values.items()})
            else:
                flat[name] = values
        return flat
