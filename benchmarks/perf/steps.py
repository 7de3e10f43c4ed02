"""Training step time of each regulariser relative to betavae on the same networks, measured in one process.

All models are built in the same process and timed interleaved (one step of each in turn, repeated), so
drift in the machine's speed affects them alike; the figure per model is the median step time.

Networks: ``pixelcnn`` (ResNet encoder, the paper's PixelCNN decoder), ``deconv`` and ``mlp`` on a batch of
random binary 28x28 images; ``lstm`` (LSTM encoder and decoder, ``--embed-dim``/``--hidden`` for both) on a batch
of real Yahoo documents read through the ``yahoo`` data plugin from the data directory (``--data-dir`` or
``$VAEZOO_DATA``; the shipped 10k documents, the 20k-word vocabulary, sequences up to 202 tokens). The text batch is
a training batch as a run draws it (bucketed by length), the one of median length among the first epoch's first
``TEXT_CANDIDATES``; for text the result also gives training tokens per second (predicted tokens, i.e. neither
padding nor the start token, per second of training step).

A variant that cannot apply to a network (Gaussian noise on token ids) is not built: it is listed under
``skipped`` with vaezoo's reason.

Each variant's FLOPs per step (matrix products and convolutions, forward and backward; :mod:`vaezoo_bench.perf.flops`)
are counted on one untimed step at index 1, a step like the timed ones (``ncvae+decoder/10`` draws no noise in it),
so that ``python -m benchmarks.perf`` can set the step time against the machine's matmul peak.

Usage: ``python -m benchmarks.perf.steps [--network pixelcnn|deconv|mlp|lstm] [--batch 32] [--repeats 10]
[--threads 2] [--variants betavae,ncvae+decoder] [--embed-dim 64] [--hidden 64] [--data-dir DIR]``; prints one
JSON object.
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

import attrs
import torch

from vaezoo.api import (
    VAE,
    Context,
    Data,
    DataSpec,
    Parser,
    Registry,
    RunConfig,
    TrainConfig,
    TrainingBatch,
    UsageError,
    build_model_for_data,
    build_strategy,
    configure_cpu,
    load_plugins,
    merge_raw,
    predicted_tokens,
    quiet_when_output_closes,
    resolve,
    subnormals_flushed,
)
from vaezoo_bench.perf.configs import ARCH_COMPONENTS, NETWORKS, PRECISIONS, TEXT_DATA, TEXT_NETWORKS, VARIANTS
from vaezoo_bench.perf.flops import count_flops
from vaezoo_plugins.data.text import TextData

IMAGE = DataSpec((1, 28, 28), "binary")
#: Training batches of the first epoch among which the text batch of median length is chosen.
TEXT_CANDIDATES = 25


def stepper(config: RunConfig, registry: Registry, model: VAE, data: Data, x: torch.Tensor) -> Callable[[int], object]:
    """The trainer's own training step of ``model`` on ``x`` through the training strategy of ``config``
    (optimisers, clipping, auxiliary step, logging, ``train.precision``), called with the step's index; the extra
    batches a strategy draws come from ``data``."""
    strategy = build_strategy(config, registry, model, data, Context())
    forward = Context().wrap(model)

    def step(index: int) -> object:
        def extra(draw: int) -> torch.Tensor:
            return data.extra_train_batch(index, draw, len(x), config.train.seed)

        return strategy.update(forward, TrainingBatch(x, index, data, 1.0, extra))

    return step


def image_batch(batch: int) -> tuple[Data, torch.Tensor]:
    """Data of 1x28x28 binary images and a batch of ``batch`` random ones (each pixel 1 with probability 0.1)."""
    x = torch.bernoulli(torch.full((batch, *IMAGE.shape), 0.1))
    return Data(IMAGE, x, x, x), x


def text_data(registry: Registry, data_dir: Path | None, who: str) -> TextData:
    """The Yahoo documents through the ``yahoo`` data plugin (``TEXT_DATA``); ``who`` names the option that
    needs them in the UsageError raised without a data directory."""
    if data_dir is None:
        raise UsageError(f"{who} reads the Yahoo documents: pass --data-dir or set VAEZOO_DATA")
    config = resolve(merge_raw({"data": TEXT_DATA}), registry)
    return registry.get("data", config.data.name).cls(config.data.params).load(data_dir, 0)


def median_batch(data: Data, batch: int) -> torch.Tensor:
    """The training batch of median length among the first epoch's first ``TEXT_CANDIDATES`` (as a run draws
    them: bucketed by length, padded to the longest)."""
    candidates = [data.train_batch(0, i, batch, 0) for i in range(min(TEXT_CANDIDATES, data.steps_per_epoch(batch)))]
    candidates = [x for x in candidates if len(x) == batch] or candidates
    candidates.sort(key=lambda x: int(predicted_tokens(x, data.spec).sum()))
    return candidates[len(candidates) // 2]


def equal_length_batch(data: TextData, batch: int) -> torch.Tensor:
    """``batch`` training documents of one length, ``'b t'`` without padding, as He et al.'s batches are (they
    bucket documents by exact length): the length nearest the training split's median that at least ``batch``
    documents share, and the first such documents in the split's order. UsageError if no length is that common."""
    lengths = data.lengths["train"]  # 'n'
    common = (torch.bincount(lengths) >= batch).nonzero().flatten()
    if not len(common):
        raise UsageError(f"no {batch} training documents share a length; choose a smaller batch")
    length = common[(common - lengths.median()).abs().argmin()]
    return data.rows("train", (lengths == length).nonzero().flatten()[:batch])


def measure_step_ratios(
    network: str = "pixelcnn",
    batch: int = 32,
    repeats: int = 10,
    threads: int = 2,
    latent_dim: int = 32,
    variants: Sequence[str] | None = None,
    text_sizes: tuple[int, int] = (64, 64),
    data_dir: Path | None = None,
    arch: str = "vaezoo",
    precision: str = "fp32",
) -> dict[str, Any]:
    """Median seconds per training step of each variant (default: all of ``VARIANTS``) on ``network``, and each
    one's ratio to betavae (always measured). ``text_sizes`` are the LSTMs' (embedding, hidden) sizes, ``arch``
    the ``arch`` of the network's components that take one (he2019: He et al.'s), ``precision`` the run's
    ``train.precision``. Variants that cannot apply are listed under ``skipped`` with the reason;
    ``flops_per_step`` counts each variant's FLOPs (module docstring); for text, ``tokens_per_step`` and
    ``tokens_per_s`` give the training throughput in predicted tokens."""
    chosen = _chosen_variants(network, variants)
    registry = load_plugins().registry
    torch.manual_seed(0)
    text = network in TEXT_NETWORKS
    layers = _base_layers(network, latent_dim, threads, precision, arch)
    train = resolve(merge_raw(*layers), registry).train
    configure_cpu(train)
    if text:
        layers.append(_text_layer(text_sizes))
    data, x = _network_batch(text, registry, data_dir, batch)
    with subnormals_flushed(train.flush_denormal):  # as a run would
        steppers, skipped = _steppers(chosen, layers, registry, data, x, train)
        if "betavae" not in steppers:
            raise UsageError(f"betavae cannot be built on {network}: {skipped['betavae']}")
        flops = {name: count_flops(lambda step=step: step(1)) for name, step in steppers.items()}
        medians = {name: statistics.median(values) for name, values in _step_times(steppers, repeats).items()}
    result: dict[str, Any] = {
        "network": network,
        "batch": batch,
        "repeats": repeats,
        "threads": threads,
        "latent_dim": latent_dim,
        "arch": arch,
        "precision": precision,
        "seconds_per_step": medians,
        "ratio_to_betavae": {name: medians[name] / medians["betavae"] for name in medians},
        "flops_per_step": flops,
        "skipped": skipped,
    }
    if text:
        result |= _text_throughput(data, x, text_sizes, medians)
    return result


def _text_throughput(
    data: Data, x: torch.Tensor, text_sizes: tuple[int, int], medians: dict[str, float]
) -> dict[str, Any]:
    """The sizes of a text batch and each variant's training throughput in predicted tokens per second."""
    tokens = int(predicted_tokens(x, data.spec).sum())
    return {
        "embed_dim": text_sizes[0],
        "hidden": text_sizes[1],
        "vocab_size": data.spec.vocab_size,
        "sequence_length": x.shape[1],
        "tokens_per_step": tokens,
        "tokens_per_s": {name: tokens / seconds for name, seconds in medians.items()},
    }


def _base_layers(network: str, latent_dim: int, threads: int, precision: str, arch: str) -> list[dict[str, Any]]:
    """The raw config layers of ``network`` before any variant: its components, the latent size, the threads and
    precision of training, and ``arch`` for the components that take one."""
    return [
        NETWORKS[network],
        {"model": {"latent_dim": latent_dim}, "train": {"threads": threads, "precision": precision}},
        {kind: {"arch": arch} for kind in ARCH_COMPONENTS[network]},
    ]


def _text_layer(text_sizes: tuple[int, int]) -> dict[str, Any]:
    """The raw config layer of the Yahoo data and LSTMs of (embedding, hidden) sizes ``text_sizes``."""
    embed_dim, hidden = text_sizes
    sizes = {"embed_dim": embed_dim, "hidden": hidden}
    return {"data": TEXT_DATA, "encoder": sizes, "decoder": sizes}


def _network_batch(text: bool, registry: Registry, data_dir: Path | None, batch: int) -> tuple[Data, torch.Tensor]:
    """The data and the batch the steps are timed on: Yahoo documents of the median length, or random images."""
    if text:
        data = text_data(registry, data_dir, "--network lstm")
        return data, median_batch(data, batch)
    return image_batch(batch)


def _chosen_variants(network: str, variants: Sequence[str] | None) -> list[str]:
    """betavae, then the other ``variants`` (default: all of ``VARIANTS``); a UsageError naming the choices for an
    unknown network or variant."""
    if network not in NETWORKS:
        raise UsageError(f"unknown network {network!r}; choose one of: {', '.join(NETWORKS)}")
    chosen = ["betavae", *(v for v in (variants or VARIANTS) if v != "betavae")]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise UsageError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
    return chosen


def _steppers(
    chosen: Sequence[str],
    layers: list[dict[str, Any]],
    registry: Registry,
    data: Data,
    x: torch.Tensor,
    train: TrainConfig,
) -> tuple[dict[str, Callable[[int], object]], dict[str, str]]:
    """A warmed-up training step of each variant that can be built on the data, and why each other one cannot."""
    steppers, skipped = {}, {}
    for name in chosen:
        try:
            # the variant right after the network's components, so that the sizes set later apply to its own
            config = resolve(merge_raw(layers[0], variant_layer(name, layers[0]), *layers[1:]), registry)
            model = build_model_for_data(config, registry, data)
            steppers[name] = stepper(attrs.evolve(config, train=train), registry, model, data, x)
        except UsageError as error:
            skipped[name] = str(error)
            continue
        steppers[name](0)  # warm-up
    return steppers, skipped


def variant_layer(name: str, network: dict[str, Any]) -> dict[str, Any]:
    """The raw config layer of variant ``name`` on the ``network`` layer: ``{decoder}`` in a component's name
    stands for the network's decoder (``skip_{decoder}``: its Skip-VAE version)."""
    decoder = network["decoder"]["name"]
    return {
        section: {
            key: value.format(decoder=decoder) if isinstance(value, str) else value for key, value in values.items()
        }
        for section, values in VARIANTS[name].items()
    }


def _step_times(steppers: dict[str, Callable[[int], object]], repeats: int) -> dict[str, list[float]]:
    """The seconds of ``repeats`` steps of each variant, the variants taking turns step by step."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for index in range(1, repeats + 1):
        for name, step in steppers.items():
            start = time.perf_counter()
            step(index)
            times[name].append(time.perf_counter() - start)
    return times


def parser() -> argparse.ArgumentParser:
    """The command's options (shared with ``python -m benchmarks.perf``'s help)."""
    parser = Parser(
        prog="python -m benchmarks.perf.steps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--network", choices=tuple(NETWORKS), default="pixelcnn")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--variants", help=f"comma-separated, from {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--embed-dim", type=int, default=64, help="lstm: word embedding size of both networks")
    parser.add_argument("--hidden", type=int, default=64, help="lstm: hidden size of both networks")
    parser.add_argument("--data-dir", type=Path, help="lstm: the data directory (default: $VAEZOO_DATA)")
    parser.add_argument("--arch", choices=("vaezoo", "he2019"), default="vaezoo", help="the networks' arch")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="train.precision")
    return parser


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    from vaezoo.api import resolve_data_dir

    args = parser().parse_args(argv)
    try:
        result = measure_step_ratios(
            args.network,
            args.batch,
            args.repeats,
            args.threads,
            args.latent_dim,
            args.variants.split(",") if args.variants else None,
            (args.embed_dim, args.hidden),
            resolve_data_dir(args.data_dir),
            args.arch,
            args.precision,
        )
    except UsageError as error:
        print(f"vaezoo_bench.perf.steps: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
