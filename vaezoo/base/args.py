"""What every vaezoo and benchmark command shares: an argument parser whose usage error is one line and exit status
2, warnings printed once, and a quiet exit when the reader of its output goes away (``| head``)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors print ``PROG: error: MESSAGE`` alone (no usage block) and exit with 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


@functools.cache
def warn_once(message: str) -> None:
    """Print ``warning: MESSAGE`` on stderr, once per message in a process: a reader that goes on without a damaged
    file meets it again (a runner plans, then decides selections; ``status --watch`` reads every few seconds)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def quiet_when_output_closes(main: Callable[P, R]) -> Callable[P, R | int]:
    """Wrap a command's ``main`` so that a closed standard output (its reader, say ``head``, has ended) ends the
    command quietly with status 0 instead of a BrokenPipeError traceback.

    Python's documented recipe (the ``signal`` module's note on SIGPIPE): flush inside the command, so the error
    surfaces here, then point stdout at devnull, so the interpreter's own flush at exit cannot fail again."""

    @functools.wraps(main)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R | int:
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        return status

    return guarded
