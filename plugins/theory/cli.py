"""The ``vaezoo theory`` subcommand, registered by this package's ``vaezoo_commands`` hook: ``HELP``,
``add_arguments`` and ``run``.

``run`` raises :class:`vaezoo.base.errors.UsageError` for bad input; the main command turns it into one line and
exit code 2. The lab (torch) and the report are imported by the functions that use them, not here: ``vaezoo
--help`` imports this module for ``HELP`` and ``add_arguments``, which must not load torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from vaezoo.api import UsageError
from vaezoo_plugins.theory.defaults import (
    DEFAULT_BETAS,
    DEFAULT_DELTAS,
    DEFAULT_LAMBDA,
    DEFAULT_LR,
    DEFAULT_RESTARTS,
    DEFAULT_SEED,
    DEFAULT_STEPS,
    FILES,
    REGULARIZERS,
)

if TYPE_CHECKING:
    from vaezoo_plugins.theory.lab import LabConfig, Problem

VECTOR_OPTIONS = {  # Problem field -> (option, size argument it must match)
    "p_data": ("--p-data", "x_size"),
    "p_noise": ("--p-noise", "x_size"),
    "prior": ("--prior", "z_size"),
    "contrastive_prior": ("--contrastive-prior", "z_size"),
}
DEFAULT_SIZE = 4


def _join(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


HELP = "exact optima of every objective on finite spaces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the theory lab's options to ``parser``."""
    problem = parser.add_argument_group("problem (vectors are comma-separated positive weights, normalised)")
    problem.add_argument("--x-size", type=int, help=f"number of data points X (default {DEFAULT_SIZE})")
    problem.add_argument("--z-size", type=int, help=f"number of codes Z (default {DEFAULT_SIZE})")
    problem.add_argument("--p-data", metavar="W,W,...", help="data distribution p_d (default ∝ X, X-1, ..., 1)")
    problem.add_argument("--p-noise", metavar="W,W,...", help="noise distribution p_n (default ∝ 1, 2, ..., X)")
    problem.add_argument("--prior", metavar="W,W,...", help="prior p(z) (default uniform)")
    problem.add_argument(
        "--contrastive-prior", metavar="W,W,...", help="contrastive prior n(z) of ncvae (default ∝ 8^-(z-1))"
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument(
        "--betas",
        default=_join(DEFAULT_BETAS),
        metavar="S,S,...",
        help="swept values s: beta of betavae and ncvae, alpha = 1 - s of infovae, lambda = s of aae "
        "(default %(default)s)",
    )
    grid.add_argument(
        "--deltas", default=_join(DEFAULT_DELTAS), metavar="D,D,...", help="ncvae's deltas (default %(default)s)"
    )
    grid.add_argument(
        "--lambda",
        dest="infovae_lambda",
        type=float,
        default=DEFAULT_LAMBDA,
        help="InfoVAE's lambda, fixed while alpha is swept (default %(default)s)",
    )
    grid.add_argument(
        "--regularizers",
        default=",".join(REGULARIZERS),
        metavar="NAME,...",
        help="regularisers to optimise (default %(default)s)",
    )
    optimiser = parser.add_argument_group("optimiser")
    optimiser.add_argument("--restarts", type=int, default=DEFAULT_RESTARTS, help="random starts per setting")
    optimiser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Adam steps")
    optimiser.add_argument("--lr", type=float, default=DEFAULT_LR, help="initial Adam learning rate")
    optimiser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the random starts")
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, metavar="DIR", help=f"write {', '.join(FILES)} into DIR")
    output.add_argument("--json", action="store_true", help="print JSON instead of the markdown table")


def parse_numbers(option: str, text: str) -> list[float]:
    """``"0.4, 0.3,0.2"`` -> ``[0.4, 0.3, 0.2]``; anything else raises :class:`UsageError` naming ``option``."""
    numbers = []
    for item in text.split(","):
        try:
            numbers.append(float(item))
        except ValueError:
            raise UsageError(
                f"{option} has {item.strip()!r}, which is not a number; expected comma-separated numbers like 4,3,2,1"
            ) from None
    return numbers


def problem_from_args(args: argparse.Namespace) -> Problem:
    """The problem given by the vector options, sizes taken from them or from --x-size/--z-size (default 4)."""
    from vaezoo_plugins.theory.lab import Problem, default_vectors, probability_vector

    sizes = {"x_size": args.x_size, "z_size": args.z_size}
    given = {}
    for field, (option, size_name) in VECTOR_OPTIONS.items():
        text = getattr(args, field)
        if text is not None:
            given[field] = probability_vector(option, parse_numbers(option, text), sizes[size_name])
            if len(given[field]) < 2:
                raise UsageError(f"{option} has 1 entry ({text}); expected at least 2")
            sizes[size_name] = len(given[field])
    chosen = {name: DEFAULT_SIZE if size is None else size for name, size in sizes.items()}  # 0 is given: refused
    defaults = default_vectors(chosen["x_size"], chosen["z_size"])
    return Problem(**{**defaults, **given})


def config_from_args(args: argparse.Namespace) -> LabConfig:
    """The lab configuration the options describe."""
    from vaezoo_plugins.theory.lab import LabConfig

    return LabConfig(
        problem=problem_from_args(args),
        betas=parse_numbers("--betas", args.betas),
        deltas=parse_numbers("--deltas", args.deltas),
        infovae_lambda=args.infovae_lambda,
        regularizers=[name.strip() for name in args.regularizers.split(",") if name.strip()],
        restarts=args.restarts,
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
    )


def run(args: argparse.Namespace) -> int:
    """Run the lab, print the markdown table (or JSON with --json), write the files with --out; return 0."""
    from vaezoo_plugins.theory.lab import run_lab
    from vaezoo_plugins.theory.report import to_json, to_markdown, write_outputs

    result = run_lab(config_from_args(args))
    if args.out is not None:
        written = write_outputs(result, args.out)
    if args.json:
        print(json.dumps(to_json(result)))
    else:
        print(to_markdown(result))
        if args.out is not None:
            print(f"wrote {', '.join(str(path) for path in written)}")
    return 0
