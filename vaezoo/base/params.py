"""Declaring and building component parameters.

Every component carries a frozen attrs ``Params`` class: its schema, defaults and validators. ``param`` is a
thin wrapper over ``attrs.field`` that also records a help text; ``build_params`` turns user input (TOML values
or ``--set`` strings) into a validated instance and reports any problem as a :class:`UsageError` that names the
parameter, the value and the constraint.
"""

from __future__ import annotations

import contextlib
import math
import operator
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from vaezoo.base.errors import UsageError


@attrs.frozen
class NoParams:
    """Parameters of a component that has none."""


def param(
    default: Any,
    *,
    help: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """An attrs field with bounds or choices checked on construction and a help text for ``vaezoo list``.

    Bounds apply to the value, or to every item of a tuple value; ``None`` (an optional setting left unset)
    passes them."""
    validators: list[Any] = []
    bounds = [(bound, sign) for bound, sign in ((ge, ">="), (gt, ">"), (le, "<="), (lt, "<")) if bound is not None]
    if bounds:
        validators.append(_Bounds(tuple(bounds)))
    if choices is not None:
        validators.append(_Choices(tuple(choices)))
    metadata = {"help": help, "bounds": tuple(bounds), "choices": choices}
    return attrs.field(default=default, validator=validators, metadata=metadata)


_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@attrs.frozen
class _Bounds:
    """attrs validator: ``value`` (or each item of a tuple value) within every (bound, sign) of ``bounds``."""

    bounds: tuple[tuple[float, str], ...]

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        items = value if isinstance(value, tuple) else (value,)
        for bound, sign in self.bounds:
            for item in items:
                if not _COMPARE[sign](item, bound):
                    whose = f"every item of '{attribute.name}'" if isinstance(value, tuple) else f"'{attribute.name}'"
                    raise ValueError(f"{whose} must be {sign} {bound}: {value!r}")


@attrs.frozen
class _Choices:
    """attrs validator: ``value`` is one of ``choices`` (attrs' own ``in_`` puts its whole Attribute in the
    message)."""

    choices: tuple[Any, ...]

    def __call__(self, instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value not in self.choices:
            raise ValueError(f"'{attribute.name}' must be one of {', '.join(map(str, self.choices))}: {value!r}")


def bounds_text(field: attrs.Attribute) -> str:
    """The bounds and choices of a parameter as text, e.g. ``>= 1, <= 4096`` (empty when it has none)."""
    parts = [f"{sign} {bound}" for bound, sign in field.metadata.get("bounds", ())]
    choices = field.metadata.get("choices")
    if choices:
        parts.append("one of " + ", ".join(map(str, choices)))
    return ", ".join(parts)


def public_name(field_name: str) -> str:
    """The name users write: a trailing underscore lets a field be called after a Python keyword (lambda_)."""
    return field_name.removesuffix("_")


def _field_types(cls: type) -> dict[str, Any]:
    """Annotated type of each field, keyed by public name."""
    hints = typing.get_type_hints(cls)
    return {public_name(f.name): hints.get(f.name, Any) for f in attrs.fields(cls)}


def params_as_dict(params: Any) -> dict[str, Any]:
    """A Params instance as ``{public name: value}``, which ``build_params`` accepts back."""
    return {public_name(k): v for k, v in attrs.asdict(params).items()}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a TOML or command-line value to the annotated type, refusing lossy conversions."""
    args = typing.get_args(annotation)
    if type(None) in args:  # Optional[...]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        annotation = next(a for a in args if a is not type(None))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise UsageError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise UsageError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value) if abs(value) < 1e308 else math.inf
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None:
            raise UsageError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise UsageError(f"{where}: expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        raise UsageError(f"{where}: expected a string, got {value!r}")
    origin = typing.get_origin(annotation)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else [value] if isinstance(value, (int, float)) else value
        if not isinstance(items, (list, tuple)):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, where) for v in items if v != "")
    return value


def build_params(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Build a validated ``cls`` instance from ``values``; ``where`` prefixes messages (e.g. 'regularizer')."""
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        valid = ", ".join(sorted(types)) or "(none)"
        raise UsageError(f"{where}: unknown parameter {unknown[0]!r}; valid parameters: {valid}")
    fields = {public_name(f.name): f.name for f in attrs.fields(cls)}
    coerced = {fields[k]: _coerce(v, types[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**coerced)
    except (ValueError, TypeError) as error:
        # attrs' validators put the message first and their Attribute after it in the exception's args
        message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        for public, field in fields.items():
            message = message.replace(f"'{field}'", f"'{public}'")
        raise UsageError(f"{where}: {message}") from None


def describe_params(cls: type) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) for each parameter, for listings and documentation; the help ends with the
    parameter's bounds or choices in brackets."""
    types = _field_types(cls)
    rows = []
    for f in attrs.fields(cls):
        annotation = types[public_name(f.name)]
        type_name = getattr(annotation, "__name__", str(annotation))
        limits = bounds_text(f)
        help_text = f.metadata.get("help", "") + (f" [{limits}]" if limits else "")
        rows.append((public_name(f.name), type_name, f.default, help_text))
    return rows
