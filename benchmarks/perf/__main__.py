"""Every speed figure of vaezoo in one command: ``python -m benchmarks.perf``; JSON, then markdown tables.

Parts (``--parts``, default all):

- ``steps``: training step time of each regulariser relative to betavae, per network (``--networks``, default
  pixelcnn, mlp and lstm; see :mod:`benchmarks.perf.steps`), and for the LSTM the training throughput in predicted
  tokens per second, at each ``--lstm-sizes`` (embedding x hidden; ``512x1024`` is He et al.'s text VAE).
- ``sampling``: the PixelCNN's fast (cached) sampler against the naive one (:mod:`benchmarks.perf.sampling`).
- ``iwnll``: IW-NLL evaluation throughput and peak memory for each ``--chunks`` size (:mod:`benchmarks.perf.iwnll`).
- ``subnormals``: a backward pass of He et al.'s LSTM encoder over 200 tokens with subnormal floats kept and
  flushed to zero, as runs do (:mod:`benchmarks.perf.subnormals`; 32 sequences, quick 8).

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

from benchmarks.args import Parser
from benchmarks.perf.configs import NETWORKS, TEXT_NETWORKS, VARIANTS

PARTS = ("steps", "sampling", "iwnll", "subnormals")
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


def parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m benchmarks.perf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", type=_choices(PARTS, "part"), default=list(PARTS), help="comma-separated")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sampled images")
    parser.add_argument("--threads", type=_positive, default=2, help="torch threads of every measurement")
    steps = parser.add_argument_group("steps")
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
    steps.add_argument("--data-dir", help="the data directory of the LSTM's Yahoo batch (default: $VAEZOO_DATA)")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--images", type=_positive, help="images sampled (default 64, quick 16)")
    sampling.add_argument("--full-naive", action="store_true", help="time the naive sampler on every pixel")
    iwnll = parser.add_argument_group("iwnll")
    iwnll.add_argument("--chunks", type=_chunks, default=[10, 100, 500], help="chunk sizes (default 10,100,500)")
    iwnll.add_argument("--iw-k", type=_positive, default=500, help="importance samples (default 500)")
    iwnll.add_argument("--iw-batch", type=_positive, default=100, help="examples evaluated (default 100)")
    parser.add_argument("--json-only", action="store_true", help="print the JSON only")
    return parser


def measure(module: str, *args: Any) -> dict[str, Any]:
    """``python -m benchmarks.perf.MODULE ARGS`` in a fresh process: its JSON, or ``{"error": ...}``."""
    command = [sys.executable, "-m", f"benchmarks.perf.{module}", *map(str, args)]
    print(f"running: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    process = subprocess.run(command, capture_output=True, text=True)
    if process.returncode != 0:
        tail = process.stderr.strip().splitlines()[-ERROR_TAIL_LINES:]
        return {"command": command[1:], "error": "\n".join([f"exit status {process.returncode}", *tail])}
    return json.loads(process.stdout)


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen parts; the document printed as JSON."""
    repeats = args.repeats or (3 if args.quick else 10)
    threads = ("--threads", args.threads)
    document: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "load_average_before": os.getloadavg(), "threads": args.threads},
        "quick": args.quick,
    }
    started = time.perf_counter()
    if "steps" in args.parts:
        document["steps"] = []
        common = ["--repeats", repeats, "--batch", args.batch, *threads]
        if args.variants:
            common += ["--variants", ",".join(args.variants)]
        for network in args.networks:
            if network not in TEXT_NETWORKS:
                document["steps"].append(measure("steps", "--network", network, *common))
                continue
            data = ["--data-dir", args.data_dir] if args.data_dir else []
            for embed, hidden in args.lstm_sizes:
                sizes = ["--embed-dim", embed, "--hidden", hidden]
                document["steps"].append(measure("steps", "--network", network, *common, *sizes, *data))
    if "sampling" in args.parts:
        images = args.images or (16 if args.quick else 64)
        repeats_sampling = 1 if args.quick else 3
        extra = ["--full-naive"] if args.full_naive else []
        document["sampling"] = measure("sampling", "--images", images, "--repeats", repeats_sampling, *threads, *extra)
    if "iwnll" in args.parts:
        document["iwnll"] = [
            measure(
                "iwnll",
                "--batch",
                args.iw_batch,
                "--k",
                args.iw_k,
                "--chunk",
                chunk,
                "--repeats",
                1 if args.quick else 2,
                *threads,
            )
            for chunk in args.chunks
        ]
    if "subnormals" in args.parts:
        document["subnormals"] = measure("subnormals", "--batch", 8 if args.quick else 32, *threads)
    document["machine"]["load_average_after"] = os.getloadavg()
    document["wall_time_s"] = time.perf_counter() - started
    return document


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def _network_name(result: dict[str, Any]) -> str:
    if "embed_dim" in result:
        return f"{result['network']} {result['embed_dim']}/{result['hidden']}"
    return result["network"]


def markdown(document: dict[str, Any]) -> str:
    """The figures of ``document`` (from :func:`measure_all`) as markdown tables."""
    machine = document["machine"]
    load = lambda key: " ".join(f"{v:.1f}" for v in machine[key])  # noqa: E731
    lines = [
        f"Machine: {machine['cores']} cores, {machine['threads']} torch threads per measurement; load average "
        f"{load('load_average_before')} before, {load('load_average_after')} after"
        + ("; --quick" if document["quick"] else "")
        + ".",
    ]
    failed = [r for r in _results(document) if "error" in r]
    steps = [r for r in document.get("steps", []) if "error" not in r]
    if steps:
        variants = list(dict.fromkeys(v for r in steps for v in [*r["seconds_per_step"], *r["skipped"]]))

        def cell(result: dict[str, Any], variant: str) -> str:
            if variant in result["skipped"]:
                return "skipped"
            if variant not in result["seconds_per_step"]:
                return ""
            ms = 1000 * result["seconds_per_step"][variant]
            return f"{result['ratio_to_betavae'][variant]:.2f}x ({ms:.0f} ms)"

        lines += ["", "### Step time relative to betavae (median ms per step)", ""]
        lines += _table(
            ["variant", *(f"{_network_name(r)} (batch {r['batch']})" for r in steps)],
            [[v, *(cell(r, v) for r in steps)] for v in variants],
        )
        reasons = {v: reason for r in steps for v, reason in r["skipped"].items()}
        lines += [f"\nSkipped {v}: {reason}" for v, reason in reasons.items()]
        text = [r for r in steps if "tokens_per_s" in r]
        if text:
            lines += ["", "### LSTM training throughput (predicted tokens per second)", ""]
            lines += _table(
                [
                    "variant",
                    *(f"{_network_name(r)}, vocab {r['vocab_size']}, {r['tokens_per_step']} tokens" for r in text),
                ],
                [
                    [v, *(f"{r['tokens_per_s'][v]:.0f}" if v in r["tokens_per_s"] else "" for r in text)]
                    for v in variants
                ],
            )
    sampling = document.get("sampling")
    if sampling and "error" not in sampling:
        naive = (
            "extrapolated from " + str(sampling["naive_pixels_timed"]) + " pixels"
            if sampling["naive_extrapolated"]
            else "timed"
        )
        lines += ["", "### PixelCNN sampling, fast against naive", ""]
        lines += _table(
            ["images", "fast (s)", "naive (s)", "naive / fast", "largest probability gap"],
            [
                [
                    sampling["images"],
                    f"{sampling['fast_seconds']:.2f}",
                    f"{sampling['naive_seconds']:.1f} ({naive})",
                    f"{sampling['ratio']:.1f}",
                    f"{sampling['max_probability_gap']:.1e}",
                ]
            ],
        )
    iwnll = [r for r in document.get("iwnll", []) if "error" not in r]
    if iwnll:
        lines += ["", f"### IW-NLL evaluation by chunk size ({iwnll[0]['model']})", ""]
        lines += _table(
            ["batch", "k", "chunk", "seconds", "examples/s", "peak RSS (MB)", "extra RSS (MB)"],
            [
                [
                    r["batch"],
                    r["k"],
                    r["chunk"],
                    f"{r['seconds']:.3f}",
                    f"{r['examples_per_s']:.0f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['extra_rss_mb']:.0f}",
                ]
                for r in iwnll
            ],
        )
    subnormals = document.get("subnormals")
    if subnormals and "error" not in subnormals:
        lines += ["", "### LSTM encoder backward pass, subnormal floats kept against flushed", ""]
        lines += _table(
            ["sequences x tokens", "embed/hidden", "kept (s)", "flushed (s)", "kept / flushed", "subnormal share"],
            [
                [
                    f"{subnormals['batch']} x {subnormals['length']}",
                    f"{subnormals['embed_dim']}/{subnormals['hidden']}",
                    f"{subnormals['seconds_kept']:.2f}",
                    f"{subnormals['seconds_flushed']:.2f}",
                    f"{subnormals['ratio']:.1f}",
                    f"{subnormals['subnormal_gradient_share']:.1%}",
                ]
            ],
        )
    if failed:
        lines += ["", "### Failed measurements", ""]
        lines += [f"- `{' '.join(r['command'])}`: {r['error'].splitlines()[-1]}" for r in failed]
    return "\n".join(lines)


def _results(document: dict[str, Any]) -> list[dict[str, Any]]:
    single = [document[part] for part in ("sampling", "subnormals") if part in document]
    return [*document.get("steps", []), *single, *document.get("iwnll", [])]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    document = measure_all(args)
    print(json.dumps(document, indent=2))
    if not args.json_only:
        print()
        print(markdown(document))
    return 1 if any("error" in r for r in _results(document)) else 0


if __name__ == "__main__":
    sys.exit(main())
