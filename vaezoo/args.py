"""The argument parser of the vaezoo and benchmark commands: a usage error is one line and exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors print ``PROG: error: MESSAGE`` alone (no usage block) and exit with 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
