"""The shape the code keeps: no function over 50 lines and no class over 200 in the core, the built-in plugins or
the runner, each counted from its ``def`` or ``class`` (or its first decorator) to its last line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vaezoo", "plugins", "benchmarks")
LIMITS = {"function": 50, "class": 200}


def oversized(source: str, where: str) -> list[str]:
    """``where:line name (N lines)`` for each function or class of ``source`` longer than its limit."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            length = node.end_lineno - first + 1
            if length > LIMITS[kind]:
                found.append(f"{where}:{node.lineno} {kind} {node.name} ({length} lines)")
    return found


def test_the_counter_counts_from_the_first_decorator_to_the_last_line():
    body = "\n".join(f"    x{i} = {i}" for i in range(48))
    assert oversized(f"@decorator\ndef f():\n{body}\n", "m.py") == []  # 50 lines with its decorator
    assert oversized(f"@decorator\n@another\ndef f():\n{body}\n", "m.py") == ["m.py:3 function f (51 lines)"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_over_50_lines_and_no_class_over_200(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, package
    found = [item for path in files for item in oversized(path.read_text(), str(path.relative_to(REPO)))]
    assert found == []
