"""What the collapse metrics add to an evaluation pass, meant to run in a process of its own.

vaezoo evaluates -ELBO, MI and AU in one pass over a split
(:func:`vaezoo.evaluation.evaluation_pass.evaluate_priors`, whose tests
count one encoder and one decoder call per batch): MI (the posteriors of a batch against each other) and AU (the
variance of the posterior means) reuse the batch's encoding. This times, on the same examples, in interleaved
repeats:

- ``encoder``: one encoder pass over the examples (the unit the overhead is read in);
- ``mi_au``: MI and AU from those posteriors, what they add to the pass;
- ``elbo``: encoder, one posterior sample, decoder log-likelihood and KL, the least -ELBO needs, for scale;

and reports ``mi_au / encoder``. Networks: ``omniglot`` (He et al.'s ResNet encoder and PixelCNN, arch he2019, on
the shipped Omniglot test images) and ``yahoo`` (He et al.'s LSTM VAE on the shipped Yahoo test documents);
untrained weights, eval mode, no gradients.

Usage: ``python -m benchmarks.perf.evaluation [--network omniglot|yahoo] [--examples 1000] [--repeats 3]
[--threads 2] [--precision fp32|bf16] [--data-dir DIR]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaezoo.api import (
    VAE,
    Parser,
    UsageError,
    active_units,
    autocast,
    build_model_for_data,
    kl_or_estimate,
    load_plugins,
    merge_raw,
    mutual_information,
    quiet_when_output_closes,
    resolve,
    resolve_data_dir,
    subnormals_flushed,
)

NETWORKS = {
    "omniglot": {"data": {"name": "omniglot"}, "encoder": {"name": "resnet"}, "decoder": {"name": "pixelcnn"}},
    "yahoo": {"data": {"name": "yahoo", "source": "shipped"}, "encoder": {"name": "lstm"}, "decoder": {"name": "lstm"}},
}


def measure_evaluation(
    network: str = "omniglot",
    examples: int = 1000,
    repeats: int = 3,
    threads: int = 2,
    precision: str = "fp32",
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Median seconds of each pass (module docstring) over ``examples`` test examples spread over the split, and
    the cost of MI and AU as a fraction of the encoder pass."""
    if network not in NETWORKS:
        raise UsageError(f"unknown network {network!r}; choose one of: {', '.join(NETWORKS)}")
    torch.set_num_threads(threads)
    registry = load_plugins().registry
    he2019 = {"encoder": {"arch": "he2019"}, "decoder": {"arch": "he2019"}}
    config = resolve(merge_raw(NETWORKS[network], he2019, {"model": {"latent_dim": 32}}), registry)
    data = registry.get("data", config.data.name).cls(config.data.params).load(resolve_data_dir(data_dir), 0)
    torch.manual_seed(0)
    model = build_model_for_data(config, registry, data).eval()
    batches = list(data.batches("test", config.eval.batch_size, examples))
    times = _pass_times(_passes(model, batches, config.eval.au_threshold), repeats, precision)
    seconds = {name: statistics.median(values) for name, values in times.items()}
    return {
        "network": network,
        "examples": sum(len(x) for x in batches),
        "batch": config.eval.batch_size,
        "precision": precision,
        "threads": threads,
        "repeats": repeats,
        "seconds": seconds,
        "mi_au_per_encoder_pass": seconds["mi_au"] / seconds["encoder"],
    }


def _passes(model: VAE, batches: list[Tensor], au_threshold: float) -> dict[str, Callable[[], object]]:
    """The three passes over ``batches``: the encoder's, MI and AU from its posteriors (computed once here), and
    the -ELBO's (encoder, one sample, decoder and KL)."""
    prior = model.prior()

    def encoder() -> list[Distribution]:
        return [model.encoder(x) for x in batches]

    posteriors = encoder()

    def mi_au() -> None:
        for posterior in posteriors:
            mutual_information(posterior).item()
        active_units(torch.cat([posterior.mean for posterior in posteriors]), au_threshold)

    def elbo() -> None:
        for x, posterior in zip(batches, encoder(), strict=True):
            z = posterior.sample()
            model.decoder.log_prob(x, z.unsqueeze(0)).sum().item()
            kl_or_estimate(posterior, prior, z).sum().item()

    return {"encoder": encoder, "mi_au": mi_au, "elbo": elbo}


def _pass_times(passes: dict[str, Callable[[], object]], repeats: int, precision: str) -> dict[str, list[float]]:
    """The seconds of ``repeats`` runs of each pass after a warm-up, the passes taking turns, as an evaluation
    runs them (no gradients, subnormals flushed, under ``precision``)."""
    times: dict[str, list[float]] = {name: [] for name in passes}
    with torch.no_grad(), subnormals_flushed(True), autocast(precision, torch.device("cpu")):
        for run in passes.values():
            run()  # warm-up
        for _ in range(repeats):
            for name, run in passes.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m benchmarks.perf.evaluation", description=__doc__)
    parser.add_argument("--network", choices=tuple(NETWORKS), default="omniglot")
    parser.add_argument("--examples", type=int, default=1000, help="test examples evaluated (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each pass (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--data-dir", type=Path, help="the data directory (default: $VAEZOO_DATA)")
    return parser


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = measure_evaluation(
            args.network, args.examples, args.repeats, args.threads, args.precision, args.data_dir
        )
    except UsageError as error:
        print(f"python -m benchmarks.perf.evaluation: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
