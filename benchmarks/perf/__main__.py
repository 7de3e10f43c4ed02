"""Every speed figure of vaezoo in one command: ``python -m benchmarks.perf``; JSON, then markdown tables.

Parts (``--parts``, default all):

- ``steps``: training step time of each regulariser relative to betavae, per network (``--networks``, default
  pixelcnn, mlp and lstm; see :mod:`benchmarks.perf.steps`), and for the LSTM the training throughput in predicted
  tokens per second, at each ``--lstm-sizes`` (embedding x hidden; ``512x1024`` is He et al.'s text VAE).
- ``sampling``: the PixelCNN's fast (cached) sampler against the naive one (:mod:`benchmarks.perf.sampling`).
- ``iwnll``: IW-NLL evaluation throughput and peak memory for each ``--chunks`` size (:mod:`benchmarks.perf.iwnll`).
- ``subnormals``: a backward pass of He et al.'s LSTM encoder over 200 tokens with subnormal floats kept and
  flushed to zero, as runs do (:mod:`benchmarks.perf.subnormals`; 32 sequences, quick 8).
- ``evaluation``: what MI and AU add to an evaluation pass over 1,000 test examples, as a fraction of one encoder
  pass, for He et al.'s Omniglot and Yahoo networks (:mod:`benchmarks.perf.evaluation`; ``--eval-networks``).
- ``yardstick``: vaezoo's training step against a plain PyTorch step of the same networks, batch and optimiser,
  timed interleaved in one process per network (``--yardstick-networks``: He et al.'s Yahoo LSTM VAE ``text``,
  their Omniglot ResNet and PixelCNN ``omniglot``, and ``mlp``; ``--arch``), at each of ``--precisions``
  (:mod:`benchmarks.perf.yardstick`): vaezoo's speed relative to the yardstick, bf16's speed-up over fp32, the
  achieved GFLOP/s and their fraction of the matmul peak, against the project's targets.

Whenever steps, iwnll or yardstick run, the machine's matmul peak in fp32 and bf16 is measured first with the
same thread count (``--peak-size``, ``--peak-repeats``; :mod:`benchmarks.perf.peak`, best of the repeats), and
every workload whose FLOPs can be counted (:mod:`benchmarks.perf.flops`) is set against the peak of its precision:
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

from benchmarks.perf.configs import (
    BF16_TARGETS,
    IWNLL_TARGET,
    NETWORKS,
    PRECISIONS,
    SPEED_TARGETS,
    TEXT_NETWORKS,
    VARIANTS,
    YARDSTICK_ARCHS,
    YARDSTICK_NETWORKS,
    YARDSTICK_QUICK_REPEATS,
    YARDSTICK_REPEATS,
)
from vaezoo.api import Parser, markdown_table, quiet_when_output_closes

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
    steps.add_argument(
        "--data-dir", help="the data directory of the Yahoo batches (lstm steps, text yardstick; default: $VAEZOO_DATA)"
    )
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
    yardstick = parser.add_argument_group("yardstick")
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
    peak = parser.add_argument_group("peak")
    peak.add_argument("--peak-size", type=_positive, default=2048, help="matrix size of the peak (default 2048)")
    peak.add_argument("--peak-repeats", type=_positive, help="products per precision (default 20, quick 10)")
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
    if any(part in args.parts for part in COUNTED_PARTS):
        peak_repeats = args.peak_repeats or (10 if args.quick else 20)
        document["machine"]["peak"] = measure("peak", "--size", args.peak_size, "--repeats", peak_repeats, *threads)
    if "steps" in args.parts:
        document["steps"] = []
        for precision in args.precisions:
            common = ["--repeats", repeats, "--batch", args.batch, "--arch", args.arch, "--precision", precision]
            common += [*threads, *(["--variants", ",".join(args.variants)] if args.variants else [])]
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
    if "evaluation" in args.parts:
        data = ["--data-dir", args.data_dir] if args.data_dir else []
        options = ["--examples", args.eval_examples, "--repeats", 1 if args.quick else 3, *threads, *data]
        document["evaluation"] = [
            measure("evaluation", "--network", network, *options) for network in args.eval_networks
        ]
    if "yardstick" in args.parts:
        document["yardstick"] = []
        for network in args.yardstick_networks:
            repeats = args.yardstick_repeats or (YARDSTICK_QUICK_REPEATS if args.quick else YARDSTICK_REPEATS)[network]
            options = ["--network", network, "--precisions", ",".join(args.precisions), "--arch", args.arch]
            options += ["--repeats", repeats, "--peak-size", args.peak_size, *threads]
            options += ["--batch", args.yardstick_batch] if args.yardstick_batch else []
            options += ["--data-dir", args.data_dir] if args.data_dir and network == "text" else []
            document["yardstick"].append(measure("yardstick", *options))
    document["machine"]["load_average_after"] = os.getloadavg()
    document["wall_time_s"] = time.perf_counter() - started
    return document


def _network_name(result: dict[str, Any]) -> str:
    sizes = f" {result['embed_dim']}/{result['hidden']}" if "embed_dim" in result else ""
    setting = ", ".join(result[key] for key in ("arch", "precision") if key in result)
    return f"{result['network']}{sizes}" + (f" ({setting})" if setting else "")


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
    peak = _peak(document)
    if peak:
        measured = machine["peak"]
        medians = ", ".join(f"{p} {v['median']:.0f}" for p, v in measured["gflops_per_s"].items())
        lines[0] += (
            f" Matmul peak (best of {measured['repeats']} products of {measured['size']}x{measured['size']} "
            f"matrices): {', '.join(f'{p} {v:.0f}' for p, v in peak.items())} GFLOP/s (median {medians})."
        )
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
        lines += markdown_table(
            ["variant", *(f"{_network_name(r)} (batch {r['batch']})" for r in steps)],
            [[v, *(cell(r, v) for r in steps)] for v in variants],
        )
        reasons = {v: reason for r in steps for v, reason in r["skipped"].items()}
        lines += [f"\nSkipped {v}: {reason}" for v, reason in reasons.items()]
        text = [r for r in steps if "tokens_per_s" in r]
        if text:
            lines += ["", "### LSTM training throughput (predicted tokens per second)", ""]
            lines += markdown_table(
                [
                    "variant",
                    *(f"{_network_name(r)}, vocab {r['vocab_size']}, {r['tokens_per_step']} tokens" for r in text),
                ],
                [
                    [v, *(f"{r['tokens_per_s'][v]:.0f}" if v in r["tokens_per_s"] else "" for r in text)]
                    for v in variants
                ],
            )
        counted = [r for r in steps if "flops_per_step" in r]
        if counted:
            lines += ["", "### Step FLOPs against the fp32 matmul peak", ""]
            lines += markdown_table(
                ["network", "variant", "GFLOP per step", "step (ms)", "GFLOP/s", "FLOP floor (ms)", "fraction of peak"],
                [
                    [
                        _network_name(r),
                        v,
                        f"{flops / 1e9:.2f}",
                        _ms(r["seconds_per_step"][v]),
                        *_against_peak(flops, r["seconds_per_step"][v], peak and peak.get("fp32")),
                    ]
                    for r in counted
                    for v, flops in r["flops_per_step"].items()
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
        lines += markdown_table(
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
        header = ["batch", "k", "chunk", "seconds", "examples/s", "peak RSS (MB)", "extra RSS (MB)"]
        header += ["GFLOP", "GFLOP/s", "FLOP floor (s)", "fraction of fp32 peak", "target (k = 500)"]
        rows = []
        for r in iwnll:
            against = _against_peak(r["flops"], r["seconds"], peak and peak.get("fp32"), seconds_floor=True)
            fraction = r["flops"] / 1e9 / r["seconds"] / peak["fp32"] if peak and "fp32" in peak else None
            target = _target(fraction, IWNLL_TARGET) if r["k"] == 500 else ""
            rows.append(
                [
                    r["batch"],
                    r["k"],
                    r["chunk"],
                    f"{r['seconds']:.3f}",
                    f"{r['examples_per_s']:.0f}",
                    f"{r['peak_rss_mb']:.0f}",
                    f"{r['extra_rss_mb']:.0f}",
                    f"{r['flops'] / 1e9:.1f}",
                    *against,
                    target,
                ]
            )
        lines += markdown_table(header, rows)
    subnormals = document.get("subnormals")
    if subnormals and "error" not in subnormals:
        lines += ["", "### LSTM encoder backward pass, subnormal floats kept against flushed", ""]
        lines += markdown_table(
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
    evaluations = [r for r in document.get("evaluation", []) if "error" not in r]
    if evaluations:
        lines += ["", "### What MI and AU add to an evaluation pass (He et al.'s networks)", ""]
        lines += markdown_table(
            ["network", "examples", "encoder pass (s)", "MI + AU (s)", "MI + AU / encoder pass", "-ELBO pass (s)"],
            [
                [
                    r["network"],
                    r["examples"],
                    f"{r['seconds']['encoder']:.3f}",
                    f"{r['seconds']['mi_au']:.3f}",
                    f"{r['mi_au_per_encoder_pass']:.3f}",
                    f"{r['seconds']['elbo']:.2f}",
                ]
                for r in evaluations
            ],
        )
    lines += _yardstick_markdown([r for r in document.get("yardstick", []) if "error" not in r], peak)
    if failed:
        lines += ["", "### Failed measurements", ""]
        lines += [f"- `{' '.join(r['command'])}`: {r['error'].splitlines()[-1]}" for r in failed]
    return "\n".join(lines)


def _peak(document: dict[str, Any]) -> dict[str, float] | None:
    """The run's matmul peak (best GFLOP/s) of each precision, or None if it was not measured."""
    measured = document["machine"].get("peak")
    if not measured or "error" in measured:
        return None
    return {precision: values["best"] for precision, values in measured["gflops_per_s"].items()}


def _against_peak(flops: float, seconds: float, peak: float | None, *, seconds_floor: bool = False) -> list[str]:
    """Cells of a workload of ``flops`` in ``seconds`` against ``peak`` GFLOP/s: achieved GFLOP/s, the FLOP floor
    (ms, or s with ``seconds_floor``) and the fraction of the peak (the last two empty without a peak)."""
    achieved = flops / seconds / 1e9
    if not peak:
        return [f"{achieved:.0f}", "", ""]
    floor = flops / 1e9 / peak
    return [f"{achieved:.0f}", f"{floor:.3f}" if seconds_floor else _ms(floor), f"{achieved / peak:.2f}"]


def _ms(seconds: float) -> str:
    """``seconds`` in milliseconds, to three significant figures below 100 ms, else whole."""
    ms = 1000 * seconds
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.3g}"


def _target(value: float | None, target: float | None) -> str:
    """``≥ TARGET: met`` or ``not met`` for ``value`` (empty when either is missing)."""
    if value is None or target is None:
        return ""
    return f"≥ {target}: {'met' if value >= target else 'NOT met'}"


def _yardstick_markdown(results: list[dict[str, Any]], peak: dict[str, float] | None) -> list[str]:
    """The tables of the yardstick part's ``results`` (see :mod:`benchmarks.perf.yardstick`)."""
    if not results:
        return []
    lines = ["", "### vaezoo's training step against plain PyTorch (yardstick), interleaved in one process", ""]
    rows = []
    for r in results:
        for precision, entry in r["precisions"].items():
            vaezoo, yardstick = entry["vaezoo"], entry["yardstick"]
            peak_of = peak.get(precision) if peak else None
            ratio = entry["speed_vs_yardstick"]
            rows.append(
                [
                    f"{r['network']} ({r['arch']}, batch {r['batch']})",
                    precision + ("" if vaezoo["autocast"] == (precision == "bf16") else " (vaezoo ignored it)"),
                    _ms(vaezoo["seconds"]),
                    _ms(yardstick["seconds"]),
                    f"{ratio:.2f}",
                    _target(ratio, SPEED_TARGETS.get((r["network"], precision))),
                    f"{vaezoo['flops'] / 1e9:.1f}" + ("" if vaezoo["flops"] == yardstick["flops"] else " (differ)"),
                    *_against_peak(vaezoo["flops"], vaezoo["seconds"], peak_of),
                    _against_peak(yardstick["flops"], yardstick["seconds"], peak_of)[2],
                    f"{vaezoo['fraction_of_matmul']:.2f}",
                ]
            )
    header = ["network", "precision", "vaezoo (ms)", "yardstick (ms)", "vaezoo speed / yardstick", "target"]
    header += ["GFLOP per step", "vaezoo GFLOP/s", "FLOP floor (ms)", "vaezoo / peak", "yardstick / peak"]
    lines += markdown_table([*header, "vaezoo / interleaved matmul"], rows)
    speedups = [r for r in results if "bf16_speedup" in r]
    if speedups:
        lines += ["", "### bf16 speed-up over fp32", ""]
        lines += markdown_table(
            ["network", "vaezoo bf16 / fp32", "yardstick bf16 / fp32", "vaezoo bf16 / yardstick fp32", "target"],
            [
                [
                    r["network"],
                    f"{r['bf16_speedup']['vaezoo']:.2f}",
                    f"{r['bf16_speedup']['yardstick']:.2f}",
                    f"{r['bf16_speedup']['vaezoo_bf16_vs_yardstick_fp32']:.2f}",
                    _target(r["bf16_speedup"]["vaezoo_bf16_vs_yardstick_fp32"], BF16_TARGETS.get(r["network"])),
                ]
                for r in speedups
            ],
        )
    counts = "; ".join(f"{r['network']} {r['parameters']['vaezoo']:,}" for r in results)
    lines += [
        "",
        f"Parameters, equal in vaezoo's model and the yardstick: {counts}. Speeds are yardstick time / vaezoo time "
        "(above 1: vaezoo is faster); peak fractions use the run's matmul peak of the row's precision, the last "
        "column the median of matrix products timed between the steps.",
    ]
    return lines


def _results(document: dict[str, Any]) -> list[dict[str, Any]]:
    single = [document[part] for part in ("sampling", "subnormals") if part in document]
    peak = [document["machine"]["peak"]] if "peak" in document["machine"] else []
    lists = ("steps", "iwnll", "yardstick", "evaluation")
    return [*peak, *single, *(result for part in lists for result in document.get(part, []))]


@quiet_when_output_closes
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
