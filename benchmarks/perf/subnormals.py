"""Backward pass of the LSTM encoder with and without subnormal floats flushed to zero, in one process.

The gradient of the encoder's last state fades at every step back through time; after a couple of hundred tokens
it is subnormal (below 1.2e-38), and x86 arithmetic on subnormals is slow. Runs flush them by default
(``train.flush_denormal``, applied through ``vaezoo.runs.session.subnormals_flushed``); this measures what that saves.
The
encoder is the ``lstm`` plugin's (random weights, 20000-word vocabulary) on random token sequences with no
padding; the figure per mode is the median time of ``repeats`` backward passes of the posterior mean's sum, after
one untimed pass, alternating the modes. Also reported: the share of the input embeddings' gradient entries that
are subnormal when nothing is flushed.

Usage: ``python -m benchmarks.perf.subnormals [--batch 32] [--length 200] [--embed-dim 512] [--hidden 1024]
[--repeats 1] [--threads 2]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from vaezoo.api import DataSpec, Parser, quiet_when_output_closes, subnormals_flushed
from vaezoo_plugins.networks.lstm import LSTMEncoder, LSTMEncoderParams

VOCAB = 20_000
LATENT = 32
PAD, BOS, EOS = 0, 1, 2


def measure_subnormals(
    batch: int = 32, length: int = 200, embed_dim: int = 512, hidden: int = 1024, repeats: int = 1, threads: int = 2
) -> dict[str, float | int]:
    """Median seconds per backward pass with subnormals kept and flushed, their ratio, and the subnormal share."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = DataSpec((length,), "tokens", vocab_size=VOCAB, pad_id=PAD, bos_id=BOS, eos_id=EOS)
    encoder = LSTMEncoder(LSTMEncoderParams(embed_dim=embed_dim, hidden=hidden), spec, LATENT)
    x = torch.randint(EOS + 1, VOCAB, (batch, length))
    x[:, 0], x[:, -1] = BOS, EOS

    def backward() -> float:
        encoder.zero_grad(set_to_none=True)
        mean = encoder(x).mean
        start = time.perf_counter()
        mean.sum().backward()
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {True: [], False: []}
    for flush in (False, True):
        with subnormals_flushed(flush):
            backward()  # untimed
    tiny = torch.finfo(torch.float32).tiny
    with subnormals_flushed(False):
        backward()
        grad = encoder.embed.weight.grad
        touched = grad[x.unique()]
        subnormal_share = ((touched != 0) & (touched.abs() < tiny)).float().mean().item()
    for _ in range(repeats):
        for flush in (False, True):
            with subnormals_flushed(flush):
                times[flush].append(backward())
    kept, flushed = statistics.median(times[False]), statistics.median(times[True])
    return {
        "batch": batch,
        "length": length,
        "embed_dim": embed_dim,
        "hidden": hidden,
        "repeats": repeats,
        "threads": threads,
        "seconds_kept": kept,
        "seconds_flushed": flushed,
        "ratio": kept / flushed,
        "subnormal_gradient_share": subnormal_share,
    }


@quiet_when_output_closes
def main() -> None:
    parser = Parser(
        prog="python -m benchmarks.perf.subnormals",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--embed-dim", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    result = measure_subnormals(args.batch, args.length, args.embed_dim, args.hidden, args.repeats, args.threads)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
