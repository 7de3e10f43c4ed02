"""``vaezoo list``: the registered components by kind, their plugins and parameters, and the core settings."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from vaezoo.base.errors import UsageError
from vaezoo.base.params import describe_params
from vaezoo.config.run_config import (
    CORE_SECTIONS,
    core_settings_class,
)
from vaezoo.plugins.component import ALL_KINDS
from vaezoo.plugins.loading import default_plugins

if TYPE_CHECKING:  # the command line imports torch only when a command needs it
    pass

HELP = "registered components, their plugins and parameters"


def _print_params(params_class: type) -> None:
    for param_name, type_name, default, help_text in describe_params(params_class):
        print(f"      {param_name} ({type_name}, default {default!r}): {help_text}")


def run(args: argparse.Namespace) -> int:
    """Print each kind's components (or only ``args.kind``'s) with their plugin and parameters, then the core
    settings, the disabled plugins and the ones that failed."""
    plugins = default_plugins()
    kinds = [*plugins.registry.kinds(), *CORE_SECTIONS]
    if args.kind is not None and args.kind not in kinds:
        raise UsageError(f"unknown kind {args.kind!r}; choose one of: {', '.join(kinds)}")
    for kind in [args.kind] if args.kind else kinds:
        print(f"{kind}:")
        if kind in CORE_SECTIONS:
            print(f"  core settings, set with --set {kind}.PARAM=VALUE or a [{kind}] table in --config")
            _print_params(core_settings_class(kind))
            continue
        entries = plugins.registry.entries(kind)
        if not entries:
            print("  (none registered)")
        for name, entry in entries.items():
            description = getattr(entry.cls, "description", "")
            print(f"  {name:<14} {description}  [{entry.origin}]")
            _print_params(entry.cls.Params)
    if plugins.disabled:
        print(f"disabled plugins: {', '.join(plugins.disabled)}")
    for failure in plugins.failures:
        print(f"failed plugin: {failure.origin}: {failure.error}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options: the kind to list (all by default)."""
    parser.add_argument("kind", nargs="?", metavar="KIND", help=f"one kind: {', '.join((*ALL_KINDS, *CORE_SECTIONS))}")
