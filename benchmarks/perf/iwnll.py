"""IW-NLL evaluation throughput and peak memory for one chunk size, meant to run in a process of its own.

The model is a betavae with the default MLP encoder and decoder on 784-d real data and a 32-d z, with random
weights; the figure is the mean time of ``repeats`` IW-NLL evaluations of one batch with ``k`` importance samples
evaluated ``chunk`` at a time (after one warm-up). Peak memory is the process's peak resident set size
(``ru_maxrss``), so only a fresh process measures one chunk size: ``python -m benchmarks.perf`` starts one per
chunk size.

The FLOPs of one evaluation (matrix products, :mod:`vaezoo_bench.perf.flops`) are counted on an untimed evaluation
after the warm-up, for the comparison with the machine's matmul peak.

Usage: ``python -m benchmarks.perf.iwnll [--batch 100] [--k 500] [--chunk 100] [--repeats 2] [--threads 2]``;
prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from vaezoo.api import (
    DataSpec,
    Parser,
    build_model,
    importance_weighted_log_likelihood,
    load_plugins,
    merge_raw,
    quiet_when_output_closes,
    resolve,
)
from vaezoo_bench.perf.flops import count_flops

DIM = 784
LATENT = 32


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def measure_iwnll(
    batch: int = 100, k: int = 500, chunk: int = 100, repeats: int = 2, threads: int = 2
) -> dict[str, float | int | str]:
    """Seconds per IW-NLL evaluation of ``batch`` examples, examples per second, its FLOPs, and peak memory in MB:
    ``peak_rss_mb`` of the whole process, ``extra_rss_mb`` above what it held before the first evaluation."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    registry = load_plugins().registry
    raw = merge_raw({"data": {"name": "synthetic", "dim": DIM}, "model": {"latent_dim": LATENT}})
    spec = DataSpec((DIM,), "real")
    model = build_model(resolve(raw, registry), registry, spec).eval()
    x = torch.randn(batch, DIM)
    prior = model.prior()
    baseline = _rss_mb()

    def once() -> None:
        with torch.no_grad():
            importance_weighted_log_likelihood(model.decoder, model.encoder(x), prior, x, k, chunk)

    once()
    flops = count_flops(once)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    seconds = (time.perf_counter() - start) / repeats
    peak = _rss_mb()
    return {
        "model": f"betavae, MLP {DIM}-d, z {LATENT}-d",
        "batch": batch,
        "k": k,
        "chunk": chunk,
        "repeats": repeats,
        "threads": threads,
        "seconds": seconds,
        "examples_per_s": batch / seconds,
        "flops": flops,
        "peak_rss_mb": peak,
        "extra_rss_mb": peak - baseline,
    }


@quiet_when_output_closes
def main() -> None:
    parser = Parser(
        prog="python -m benchmarks.perf.iwnll",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--k", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure_iwnll(args.batch, args.k, args.chunk, args.repeats, args.threads), indent=2))


if __name__ == "__main__":
    main()
