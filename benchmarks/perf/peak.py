"""The machine's matmul peak: GFLOP/s of large square matrix products in float32 and bfloat16, in one process.

Each precision multiplies two random ``size x size`` matrices into a preallocated output (``torch.mm(a, b,
out=c)``, ``2 size^3`` FLOPs) ``repeats`` times after one untimed product, the precisions alternating so that a
change in the machine's load affects both alike, with ``threads`` torch threads (those of the measurements it is
the yardstick of). The **peak** of a precision is its best (fastest) repeat: the machine's limit when nothing else
competes for it. The median repeat is reported too; on a busy machine it is closer to what a workload meets.
bfloat16 products run through oneDNN (on AMX or AVX-512 BF16 where the processor has them).

Every FLOP figure of ``python -m benchmarks.perf`` is compared with the peak of its precision: the **FLOP floor**
of a workload is its FLOPs (:mod:`vaezoo_bench.perf.flops`) divided by the peak, and its **fraction of the peak** is
the floor divided by its measured time.

Usage: ``python -m benchmarks.perf.peak [--size 2048] [--repeats 20] [--threads 2]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from vaezoo.api import Parser, quiet_when_output_closes
from vaezoo_bench.perf.configs import PRECISIONS

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class Matmul:
    """One ``size x size`` matrix product in ``precision`` (``fp32`` or ``bf16``), ready to be timed."""

    def __init__(self, precision: str, size: int) -> None:
        dtype = DTYPES[precision]
        self.a, self.b = (torch.randn(size, size).to(dtype) for _ in range(2))
        self.out = torch.empty(size, size, dtype=dtype)
        self.flops = 2 * size**3

    def seconds(self) -> float:
        """Seconds of one product."""
        start = time.perf_counter()
        torch.mm(self.a, self.b, out=self.out)
        return time.perf_counter() - start


def measure_peak(
    size: int = 2048, repeats: int = 20, threads: int = 2, precisions: Sequence[str] = PRECISIONS
) -> dict[str, Any]:
    """Best and median GFLOP/s of ``repeats`` products per precision (see the module docstring)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    products = {precision: Matmul(precision, size) for precision in precisions}
    for product in products.values():
        product.seconds()  # untimed: oneDNN builds its kernels on the first call
    times: dict[str, list[float]] = {precision: [] for precision in products}
    for _ in range(repeats):
        for precision, product in products.items():
            times[precision].append(product.seconds())
    flops = 2 * size**3
    return {
        "size": size,
        "repeats": repeats,
        "threads": threads,
        "gflops_per_s": {
            precision: {"best": flops / min(seconds) / 1e9, "median": flops / statistics.median(seconds) / 1e9}
            for precision, seconds in times.items()
        },
    }


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog="python -m benchmarks.perf.peak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=2048, help="rows and columns of the matrices (default 2048)")
    parser.add_argument("--repeats", type=int, default=20, help="timed products per precision (default 20)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    print(json.dumps(measure_peak(args.size, args.repeats, args.threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
