"""``vaezoo sample``: PNG grids of prior samples and test reconstructions (or text samples) of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vaezoo.base.errors import UsageError
from vaezoo.plugins.loading import default_plugins
from vaezoo.runs.directory import RunDirectory

if TYPE_CHECKING:  # the command line imports torch only when a command needs it
    pass

HELP = "PNG grids of prior samples and test reconstructions of a run"


def add_arguments(sample: argparse.ArgumentParser) -> None:
    """The command's options."""
    sample.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    sample.add_argument("--count", type=int, default=64, help="prior samples (and half as many reconstructions)")
    sample.add_argument("--out", type=Path, help="directory for the PNG or text files (default: RUN_DIR)")
    sample.add_argument("--temperature", type=float, help="text: softmax temperature of ancestral sampling")
    sample.add_argument("--greedy", action="store_true", default=None, help="text: greedy decoding")
    sample.add_argument("--data-dir", type=Path, help="data directory (default: $VAEZOO_DATA)")


def run(args: argparse.Namespace) -> int:
    from vaezoo.evaluation.sampling import write_sample_grids, write_text_samples
    from vaezoo.runs.session import load_trained, resolve_data_dir

    plugins = default_plugins()
    if args.count < 2:
        raise UsageError(f"--count must be at least 2, got {args.count}")
    if args.temperature is not None and not args.temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    directory = RunDirectory(args.run_dir)
    directory.check_usable()
    data_dir = resolve_data_dir(args.data_dir, directory.recorded_data_dir())
    with directory.locked("sampling"):
        session = load_trained(args.run_dir, plugins.registry, data_dir, {"train": {"progress": False}})
        out_dir = args.out or args.run_dir
        if session.data.spec.kind == "tokens":
            text, path = write_text_samples(session, out_dir, args.count, args.temperature, args.greedy)
            print(f"{text}{path}")
            return 0
        if args.temperature is not None or args.greedy:
            raise UsageError("--temperature and --greedy apply to text (token data) only")
        for path in write_sample_grids(session, out_dir, args.count):
            print(path)
    return 0
