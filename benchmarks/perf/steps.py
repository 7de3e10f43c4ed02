"""Training step time of each regulariser relative to betavae on the same networks, measured in one process.

All models are built in the same process and timed interleaved (one step of each in turn, repeated), so
drift in the machine's speed affects them alike; the figure per model is the median step time.
Usage: ``python -m benchmarks.perf.steps [--decoder pixelcnn|mlp|deconv] [--repeats 20] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from vaezoo.config import merge_raw, resolve
from vaezoo.interfaces import Data, DataSpec
from vaezoo.model import VAE, build_model
from vaezoo.plugins import load_plugins

IMAGE = DataSpec((1, 28, 28), "binary")
VARIANTS = {
    "betavae": {"regularizer": {"name": "betavae"}},
    "ncvae+gaussian": {"regularizer": {"name": "ncvae"}, "noise": {"name": "gaussian"}},
    "ncvae+decoder": {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder"}},
    "infovae": {"regularizer": {"name": "infovae"}},
    "aae": {"regularizer": {"name": "aae"}},
}
NETWORKS = {
    "pixelcnn": {"encoder": {"name": "resnet"}, "decoder": {"name": "pixelcnn"}},
    "deconv": {"encoder": {"name": "resnet"}, "decoder": {"name": "deconv"}},
    "mlp": {"encoder": {"name": "mlp"}, "decoder": {"name": "mlp"}},
}


def _stepper(model: VAE, data: Data, x: torch.Tensor, lr: float = 1e-3) -> Callable[[int], None]:
    """One optimiser step of ``model`` (and of its regulariser's own parameters) on ``x``."""
    optimizer = torch.optim.Adam(model.main_parameters(), lr=lr)
    auxiliary = model.regularizer.auxiliary_parameters()
    aux_optimizer = model.regularizer.auxiliary_optimizer(lr) if auxiliary else None

    def step(index: int) -> None:
        record = model.forward_step(x, index, data)
        loss, _ = model.loss(record)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if aux_optimizer is not None:
            aux_optimizer.zero_grad(set_to_none=True)
            model.regularizer.auxiliary_loss(record).backward()
            aux_optimizer.step()

    return step


def measure_step_ratios(
    network: str = "pixelcnn", batch: int = 32, repeats: int = 10, threads: int = 2, latent_dim: int = 32
) -> dict[str, object]:
    """Median seconds per training step of every variant on ``network``, and each one's ratio to betavae."""
    torch.set_num_threads(threads)
    registry = load_plugins().registry
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((batch, *IMAGE.shape), 0.1))
    data = Data(IMAGE, x, x, x)
    steppers = {}
    for name, variant in VARIANTS.items():
        raw = merge_raw(NETWORKS[network], variant, {"model": {"latent_dim": latent_dim}})
        model = build_model(resolve(raw, registry), registry, IMAGE)
        steppers[name] = _stepper(model, data, x)
        steppers[name](0)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for index in range(1, repeats + 1):
        for name, step in steppers.items():
            start = time.perf_counter()
            step(index)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "network": network,
        "batch": batch,
        "repeats": repeats,
        "threads": threads,
        "seconds_per_step": medians,
        "ratio_to_betavae": {name: medians[name] / medians["betavae"] for name in medians},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--network", choices=tuple(NETWORKS), default="pixelcnn")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure_step_ratios(args.network, args.batch, args.repeats, args.threads), indent=2))


if __name__ == "__main__":
    main()
