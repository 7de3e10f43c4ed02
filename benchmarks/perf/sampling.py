"""Time the PixelCNN decoder's fast (cached) sampler against the naive full-recompute sampler on CPU.

The decoder is the default ``pixelcnn`` (the paper's 13 layers) with random weights, in eval mode, for 28x28
binary images and a 32-d z. Every naive step is one full forward pass of the same shape, so its cost does not
depend on the pixel: by default the naive sampler is timed over the first ``naive_pixels`` pixels and scaled to
the whole image (``naive_extrapolated``); ``--full-naive`` times every pixel (about 800 full passes: long).
Both samplers get the same random draws, and the timed prefix is checked to agree.

Usage: ``python -m benchmarks.perf.sampling [--images 64] [--repeats 3] [--threads 2] [--naive-pixels 56]
[--full-naive]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from vaezoo.api import DataSpec, Parser, quiet_when_output_closes
from vaezoo_plugins.networks.pixelcnn import PixelCNNDecoder, PixelCNNParams

HEIGHT = WIDTH = 28
LATENT = 32


def _timed(decoder: PixelCNNDecoder, z: torch.Tensor, method: str, pixels: int | None) -> tuple[float, torch.Tensor]:
    """Seconds of one seeded sampling run, and its per-pixel probabilities ``'b 1 h w'``."""
    torch.manual_seed(1)
    start = time.perf_counter()
    _, probabilities = decoder.sample_with_probabilities(z, method, pixels)
    return time.perf_counter() - start, probabilities


def measure_sampling(
    images: int = 64, repeats: int = 3, threads: int = 2, naive_pixels: int | None = 2 * WIDTH
) -> dict[str, float | int | bool]:
    """Seconds to sample ``images`` 28x28 images with each path, and naive / fast.

    ``fast_seconds`` is the median of ``repeats`` runs; ``naive_seconds`` is one run, over every pixel when
    ``naive_pixels`` is None, else over that many pixels scaled by h * w / naive_pixels. ``max_probability_gap``
    is the largest difference of the two paths' pixel probabilities over the pixels both drew.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        decoder = PixelCNNDecoder(PixelCNNParams(), DataSpec((1, HEIGHT, WIDTH), "binary"), LATENT).eval()
        z = torch.randn(images, LATENT)
        _timed(decoder, z[:2], "fast", WIDTH)  # warm-up
        fast_runs = [_timed(decoder, z, "fast", None) for _ in range(repeats)]
        naive_time, naive_p = _timed(decoder, z, "naive", naive_pixels)
    finally:
        torch.set_num_threads(previous_threads)
    pixels = HEIGHT * WIDTH if naive_pixels is None else min(naive_pixels, HEIGHT * WIDTH)
    fast_seconds = statistics.median(seconds for seconds, _ in fast_runs)
    naive_seconds = naive_time * HEIGHT * WIDTH / pixels
    drawn = naive_p.flatten(1)[:, :pixels]
    gap = (fast_runs[0][1].flatten(1)[:, :pixels] - drawn).abs().max().item()
    return {
        "images": images,
        "height": HEIGHT,
        "width": WIDTH,
        "threads": threads,
        "repeats": repeats,
        "fast_seconds": fast_seconds,
        "naive_seconds": naive_seconds,
        "naive_pixels_timed": pixels,
        "naive_extrapolated": pixels < HEIGHT * WIDTH,
        "ratio": naive_seconds / fast_seconds,
        "max_probability_gap": gap,
    }


@quiet_when_output_closes
def main() -> None:
    parser = Parser(
        prog="python -m benchmarks.perf.sampling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--naive-pixels", type=int, default=2 * WIDTH, help="pixels the naive sampler is timed on")
    parser.add_argument("--full-naive", action="store_true", help="time the naive sampler on every pixel")
    args = parser.parse_args()
    naive_pixels = None if args.full_naive else args.naive_pixels
    print(json.dumps(measure_sampling(args.images, args.repeats, args.threads, naive_pixels), indent=2))


if __name__ == "__main__":
    main()
