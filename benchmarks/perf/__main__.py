"""Every speed figure of vaezoo in one command: ``python -m benchmarks.perf``; JSON, then markdown tables.

Parts (``--parts``, default all):

- ``steps``: training step time of each regulariser relative to betavae, per network (``--networks``, default
  pixelcnn, mlp and lstm; see :mod:`vaezoo_bench.perf.steps`), and for the LSTM the training throughput in predicted
  tokens per second, at each ``--lstm-sizes`` (embedding x hidden; ``512x1024`` is He et al.'s text VAE).
- ``sampling``: the PixelCNN's fast (cached) sampler against the naive one (:mod:`vaezoo_bench.perf.sampling`).
- ``iwnll``: IW-NLL evaluation throughput and peak memory for each ``--chunks`` size (:mod:`vaezoo_bench.perf.iwnll`).
- ``subnormals``: a backward pass of He et al.'s LSTM encoder over 200 tokens with subnormal floats kept and
  flushed to zero, as runs do (:mod:`vaezoo_bench.perf.subnormals`; 32 sequences, quick 8).
- ``evaluation``: what MI and AU add to an evaluation pass over 1,000 test examples, as a fraction of one encoder
  pass, for He et al.'s Omniglot and Yahoo networks (:mod:`vaezoo_bench.perf.evaluation`; ``--eval-networks``).
- ``yardstick``: vaezoo's training step against a plain PyTorch step of the same networks, batch and optimiser,
  timed interleaved in one process per network (``--yardstick-networks``: He et al.'s Yahoo LSTM VAE ``text``,
  their Omniglot ResNet and PixelCNN ``omniglot``, and ``mlp``; ``--arch``), at each of ``--precisions``
  (:mod:`vaezoo_bench.perf.yardstick`): vaezoo's speed relative to the yardstick, bf16's speed-up over fp32, the
  achieved GFLOP/s and their fraction of the matmul peak, against the project's targets.

Whenever steps, iwnll or yardstick run, the machine's matmul peak in fp32 and bf16 is measured first with the
same thread count (``--peak-size``, ``--peak-repeats``; :mod:`vaezoo_bench.perf.peak`, best of the repeats), and
every workload whose FLOPs can be counted (:mod:`vaezoo_bench.perf.flops`) is set against the peak of its precision:
achieved GFLOP/s, and the fraction of the peak, i.e. the workload's FLOP floor (FLOPs / peak) over its time.

Each measurement runs in a process of its own (``python -m benchmarks.perf.MODULE``), so peak memory is per
measurement and one network's allocations do not slow the next. ``--quick`` takes fewer repeats and fewer
sampled images (a few minutes on an idle 2-core machine; the naive sampler is always extrapolated from its first
two rows unless ``--full-naive``). A measurement that fails is reported with its error and the others go on
(exit status 1); bad options exit with status 2. The JSON also records the machine's load average before and
after, since a loaded machine slows every figure (ratios measured in one process suffer least).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from vaezoo.api import Parser, quiet_when_output_closes
from vaezoo_bench.perf.configs import (
    NETWORKS,
    PRECISIONS,
    TEXT_NETWORKS,
    VARIANTS,
    YARDSTICK_ARCHS,
    YARDSTICK_NETWORKS,
    YARDSTICK_QUICK_REPEATS,
    YARDSTICK_REPEATS,
)
from vaezoo_bench.perf.markdown import markdown, measurements

PARTS = ("steps", "sampling", "iwnll", "subnormals", "yardstick", "evaluation")
#: Parts whose FLOPs are counted: the peak is measured when one of them runs.
COUNTED_PARTS = ("steps", "iwnll", "yardstick")
ERROR_TAIL_LINES = 5


def _lstm_size(text: str) -> tuple[int, int]:
    embed, x, hidden = text.partition("x")
    if not x or not embed.isdigit() or not hidden.isdigit() or int(embed) < 1 or int(hidden) < 1:
        raise argparse.ArgumentTypeError(f"LSTM size {text!r} must be EMBEDxHIDDEN, e.g. 64x64 or 512x1024")
    return int(embed), int(hidden)


def _choices(allowed: Sequence[str], what: str):
    def parse(text: str) -> list[str]:
        values = [v for v in text.split(",") if v]
        for value in values:
            if value not in allowed:
                raise argparse.ArgumentTypeError(f"unknown {what} {value!r}; choose from: {', '.join(allowed)}")
        return values

    return parse


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _chunks(text: str) -> list[int]:
    return [_positive(v) for v in text.split(",") if v]


def parser(prog: str = "python -m benchmarks.perf") -> argparse.ArgumentParser:
    """The command's options: the parts and their settings, one argument group per part."""
    parser = Parser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=_choices(PARTS, "part"), default=list(PARTS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sampled images")
    parser.add_argument("--threads", type=_positive, default=2, help="torch threads of every measurement")
    _add_steps_options(parser.add_argument_group("steps"))
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--images", type=_positive, help="images sampled (default 64, quick 16)")
    sampling.add_argument("--full-naive", action="store_true", help="time the naive sampler on every pixel")
    iwnll = parser.add_argument_group("iwnll")
    iwnll.add_argument("--chunks", type=_chunks, default=[10, 100, 500], help="chunk sizes (default 10,100,500)")
    iwnll.add_argument("--iw-k", type=_positive, default=500, help="importance samples (default 500)")
    iwnll.add_argument("--iw-batch", type=_positive, default=100, help="examples evaluated (default 100)")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument(
        "--eval-networks",
        type=_choices(("omniglot", "yahoo"), "network"),
        default=["omniglot", "yahoo"],
        help="comma-separated, from omniglot, yahoo",
    )
    evaluation.add_argument("--eval-examples", type=_positive, default=1000, help="test examples (default 1000)")
    _add_yardstick_options(parser.add_argument_group("yardstick"))
    peak = parser.add_argument_group("peak")
    peak.add_argument("--peak-size", type=_positive, default=2048, help="matrix size of the peak (default 2048)")
    peak.add_argument("--peak-repeats", type=_positive, help="products per precision (default 20, quick 10)")
    parser.add_argument("--json-only", action="store_true", help="print the JSON only")
    return parser


def _add_steps_options(steps: argparse._ArgumentGroup) -> None:
    steps.add_argument(
        "--networks",
        type=_choices(tuple(NETWORKS), "network"),
        default=["pixelcnn", "mlp", "lstm"],
        help=f"comma-separated, from {', '.join(NETWORKS)}",
    )
    steps.add_argument("--variants", type=_choices(tuple(VARIANTS), "variant"), help="comma-separated (default all)")
    steps.add_argument("--repeats", type=_positive, help="timed steps per variant (default 10, quick 3)")
    steps.add_argument("--batch", type=_positive, default=32, help="training batch (default 32)")
    steps.add_argument(
        "--lstm-sizes",
        type=lambda t: [_lstm_size(v) for v in t.split(",") if v],
        default=[(64, 64)],
        help="EMBEDxHIDDEN of the LSTMs, comma-separated (default 64x64; He et al.: 512x1024)",
    )
    steps.add_argument(
        "--data-dir", help="the data directory of the Yahoo batches (lstm steps, text yardstick; default: $VAEZOO_DATA)"
    )


def _add_yardstick_options(yardstick: argparse._ArgumentGroup) -> None:
    yardstick.add_argument(
        "--yardstick-networks",
        type=_choices(tuple(YARDSTICK_NETWORKS), "network"),
        default=list(YARDSTICK_NETWORKS),
        help=f"comma-separated, from {', '.join(YARDSTICK_NETWORKS)} (default all)",
    )
    yardstick.add_argument(
        "--precisions", type=_choices(PRECISIONS, "precision"), default=list(PRECISIONS), help="default fp32,bf16"
    )
    yardstick.add_argument(
        "--arch", choices=YARDSTICK_ARCHS, default="he2019", help="steps and yardstick networks (default he2019)"
    )
    yardstick.add_argument(
        "--yardstick-repeats",
        type=_positive,
        help="timed rounds per network (default text and omniglot 10, mlp 100; quick 3, 3, 30)",
    )
    yardstick.add_argument("--yardstick-batch", type=_positive, help="examples per step (default 32, 50, 64)")


def measure(module: str, *args: Any) -> dict[str, Any]:
    """``python -m benchmarks.perf.MODULE ARGS`` in a fresh process: its JSON, or ``{"error": ...}``."""
    command = [sys.executable, "-m", f"vaezoo_bench.perf.{module}", *map(str, args)]
    print(f"running: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        tail = process.stderr.strip().splitlines()[-ERROR_TAIL_LINES:]
        return {"command": command[1:], "error": "\n".join([f"exit status {process.returncode}", *tail])}
    return json.loads(process.stdout)


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen parts; the document printed as JSON."""
    threads = ("--threads", args.threads)
    document: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_average_before": os.getloadavg(), "threads": args.threads},
        "quick": args.quick,
    }
    started = time.perf_counter()
    if any(part in args.parts for part in COUNTED_PARTS):
        peak_repeats = args.peak_repeats or (10 if args.quick else 20)
        document["machine"]["peak"] = measure("peak", "--size", args.peak_size, "--repeats", peak_repeats, *threads)
    if "steps" in args.parts:
        document["steps"] = _measure_steps(args)
    if "sampling" in args.parts:
        images = args.images or (16 if args.quick else 64)
        repeats_sampling = 1 if args.quick else 3
        extra = ["--full-naive"] if args.full_naive else []
        document["sampling"] = measure("sampling", "--images", images, "--repeats", repeats_sampling, *threads, *extra)
    if "iwnll" in args.parts:
        options = ["--batch", args.iw_batch, "--k", args.iw_k]
        repeats = ["--repeats", 1 if args.quick else 2, *threads]
        document["iwnll"] = [measure("iwnll", *options, "--chunk", chunk, *repeats) for chunk in args.chunks]
    if "subnormals" in args.parts:
        document["subnormals"] = measure("subnormals", "--batch", 8 if args.quick else 32, *threads)
    if "evaluation" in args.parts:
        data = ["--data-dir", args.data_dir] if args.data_dir else []
        options = ["--examples", args.eval_examples, "--repeats", 1 if args.quick else 3, *threads, *data]
        document["evaluation"] = [
            measure("evaluation", "--network", network, *options) for network in args.eval_networks
        ]
    if "yardstick" in args.parts:
        document["yardstick"] = [_measure_yardstick(args, network) for network in args.yardstick_networks]
    document["machine"]["load_average_after"] = os.getloadavg()
    document["wall_time_s"] = time.perf_counter() - started
    return document


def _measure_steps(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The steps part: every network at every precision, and each text network at every LSTM size."""
    results = []
    for precision in args.precisions:
        common = ["--repeats", args.repeats or (3 if args.quick else 10), "--batch", args.batch, "--arch", args.arch]
        common += ["--precision", precision, "--threads", args.threads]
        common += ["--variants", ",".join(args.variants)] if args.variants else []
        for network in args.networks:
            if network not in TEXT_NETWORKS:
                results.append(measure("steps", "--network", network, *common))
                continue
            data = ["--data-dir", args.data_dir] if args.data_dir else []
            for embed, hidden in args.lstm_sizes:
                sizes = ["--embed-dim", embed, "--hidden", hidden]
                results.append(measure("steps", "--network", network, *common, *sizes, *data))
    return results


def _measure_yardstick(args: argparse.Namespace, network: str) -> dict[str, Any]:
    """The yardstick part's measurement of one network, at every precision."""
    repeats = args.yardstick_repeats or (YARDSTICK_QUICK_REPEATS if args.quick else YARDSTICK_REPEATS)[network]
    options = ["--network", network, "--precisions", ",".join(args.precisions), "--arch", args.arch]
    options += ["--repeats", repeats, "--peak-size", args.peak_size, "--threads", args.threads]
    options += ["--batch", args.yardstick_batch] if args.yardstick_batch else []
    options += ["--data-dir", args.data_dir] if args.data_dir and network == "text" else []
    return measure("yardstick", *options)


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.perf") -> int:
    """The command; ``prog`` names it in its usage and errors (``vaezoo bench perf`` when run so)."""
    args = parser(prog).parse_args(argv)
    document = measure_all(args)
    print(json.dumps(document, indent=2))
    if not args.json_only:
        print()
        print(markdown(document))
    return 1 if any("error" in r for r in measurements(document)) else 0


if __name__ == "__main__":
    sys.exit(main())
