"""``vaezoo bench TOOL ...``: the benchmark runner's tools as a command of ``vaezoo``.

``vaezoo bench run smoke`` runs a built-in suite by name (``benchmarks/suites/NAME.toml``, shipped in the wheel) or
a suite file by path; ``vaezoo bench TOOL --help`` shows a tool's options. From a checkout, ``python -m
benchmarks.TOOL`` runs the same code.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

HELP = "benchmark suites: run a matrix, watch it, report it, keep its records, diagnose cells, measure speed"

#: tool -> (its module, what it does)
TOOLS = {
    "run": ("vaezoo_bench.run", "run a suite's matrix: a built-in suite by name, or SUITE.toml"),
    "status": ("vaezoo_bench.status", "each cell's state in a results directory, while the runner works"),
    "report": ("vaezoo_bench.report", "the tables and figures of a results directory"),
    "records": ("vaezoo_bench.records", "copy what a report is made of out of a results directory"),
    "diagnose": ("vaezoo_bench.diagnose", "where a run's collapse shows: its validation lines and latent units"),
    "perf": ("vaezoo_bench.perf.__main__", "the speed benchmarks"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    listing = "; ".join(f"{tool}: {what}" for tool, (_, what) in TOOLS.items())
    parser.add_argument("tool", choices=TOOLS, metavar="TOOL", help=f"one of {listing}")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the tool's arguments (vaezoo bench TOOL --help)")


def run(args: Any) -> int:
    module = importlib.import_module(TOOLS[args.tool][0])
    if args.tool == "run":
        module.answer_stop_signals()  # the runner stops its cells on SIGTERM as on Ctrl-C
    return module.main(args.args, prog=f"vaezoo bench {args.tool}")
