"""The ``vaezoo`` command: the subcommands every plugin registers (the core's ``run``, ``list``, ``eval`` and
``sample`` among them) under one parser.

User mistakes (unknown names, bad values, missing files) print one line and exit with code 2; a diverged run
exits with code 3; an interrupted command exits with 130 (a run says how to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence

from vaezoo.base.args import Parser, quiet_when_output_closes
from vaezoo.base.errors import TrainingDiverged, UsageError
from vaezoo.plugins.loading import Command, PluginFailure, default_plugins
from vaezoo.runs.interrupts import Interrupted, StopSignals, stop_with_launcher

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130


def _parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The command line: one subparser per registered command, in registration order (the core's first)."""
    parser = Parser(prog="vaezoo", description="A plugin-based zoo of variational autoencoders.")  # subparsers too
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in commands.items():
        command.module.add_arguments(subparsers.add_parser(name, help=command.module.HELP))
    return parser


def _report_failures(failures: Sequence[PluginFailure]) -> None:
    for failure in failures:
        print(f"vaezoo: warning: {failure.origin} failed and is left out: {failure.error}", file=sys.stderr)


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    plugins = default_plugins()
    parser = _parser(plugins.commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    reported = len(plugins.failures)
    _report_failures(plugins.failures)
    try:
        with StopSignals():  # SIGTERM, like Ctrl-C, ends a command with a message instead of a silent kill
            stop_with_launcher()
            return plugins.commands[args.command].module.run(args)
    except Interrupted as stop:
        print(f"\nvaezoo: interrupted by {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("\nvaezoo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as error:
        print(f"vaezoo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as error:
        print(f"vaezoo: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    finally:
        _report_failures(plugins.failures[reported:])  # components that failed when the command loaded them


if __name__ == "__main__":
    sys.exit(main())
