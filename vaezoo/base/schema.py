"""The shape of a JSON record checked against a JSON Schema (jsonschema), for the readers of run and results files:
a damaged or foreign record is told apart from a good one, and what is wrong with it said in a few words."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

#: The longest description of a departure from a schema (it may quote a large value).
MESSAGE_LIMIT = 100


def shape_problem(data: Any, checker: Draft202012Validator) -> str | None:
    """Where ``data`` departs most plainly from ``checker``'s schema and how (``$.status: 'x' is not one of [...]``),
    or None when it has the schema's shape."""
    error = best_match(checker.iter_errors(data))
    if error is None:
        return None
    message = error.message if len(error.message) <= MESSAGE_LIMIT else error.message[: MESSAGE_LIMIT - 3] + "..."
    return f"{error.json_path}: {message}"
