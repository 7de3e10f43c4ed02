"""The suites shipped with the runner (``benchmarks/suites/NAME.toml``, package data of the wheel) and how a suite
named on the command line is found."""

from __future__ import annotations

from pathlib import Path

from vaezoo.api import UsageError

#: The built-in suites, shipped with the runner.
BUILT_IN_SUITES = Path(__file__).resolve().parents[1] / "suites"


def built_in_suites() -> list[str]:
    """The names of the built-in suites, sorted."""
    return sorted(path.stem for path in BUILT_IN_SUITES.glob("*.toml"))


def suite_file(name_or_path: str) -> Path:
    """The file of a suite named on the command line: a path as given when it exists or looks like a path (it has
    a suffix or a directory), else the built-in suite of that name; neither is a UsageError listing the built-ins."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or path.parent != Path("."):
        return path
    built_in = BUILT_IN_SUITES / f"{name_or_path}.toml"
    if built_in.is_file():
        return built_in
    raise UsageError(
        f"suite {name_or_path!r} is neither a file nor a built-in suite; built-in suites: "
        f"{', '.join(built_in_suites())}"
    )
