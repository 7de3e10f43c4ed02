"""vaezoo's training step against a plain PyTorch yardstick of the same networks, interleaved in one process.

Networks (``--network``), each with vaezoo's configuration and the yardstick of :mod:`vaezoo_bench.perf.yardsticks`:

- ``text``: He et al. (2019)'s Yahoo LSTM VAE, the ``lstm`` encoder and decoder with ``arch = "he2019"`` (embedding
  512, LSTM 1024, z 32, 20k words), SGD at lr 1 with the gradient norm clipped to 5, on 32 Yahoo training
  documents of one length read through the ``yahoo`` data plugin (He et al. bucket documents by exact length, so
  their batches have no padding; :func:`vaezoo_bench.perf.steps.equal_length_batch`). ``--arch vaezoo`` takes
  vaezoo's own arch of the same sizes (biases on the linear maps) and the yardstick with biases.
- ``omniglot``: He et al.'s ResNet encoder and PixelCNN of residual bottleneck blocks (``resnet`` and ``pixelcnn``
  with ``arch = "he2019"``), Adam at lr 1e-3 with the gradient norm clipped to 5, on 50 random binary 28x28
  images (each pixel 1 with probability 0.1).
- ``mlp``: vaezoo's ``mlp`` encoder and decoder with their default sizes (784 -> 256 -> 256 -> 2 x 32 and back,
  Bernoulli pixels) and vaezoo's default training (Adam at lr 1e-3, no clipping), on 64 random binary images.

z has 32 dimensions, the regulariser is betavae and the prior N(0, I). The yardstick takes its optimiser, learning
rate and clipping from vaezoo's resolved configuration, and its sizes from vaezoo's encoder and decoder
parameters; the two models must have the same number of parameters (else the measurement fails: the yardstick or
the arch is wrong).

Method. One vaezoo model and one yardstick model, each shared by the precisions (every precision has its own
optimiser): vaezoo's step is the trainer's own (``vaezoo.training.step.TrainingStep`` with ``train.precision``), the
yardstick's is :class:`vaezoo_bench.perf.yardsticks.YardstickStep`. After ``WARMUP`` untimed steps of each, one more
untimed step of each runs under the FLOP counter (:mod:`vaezoo_bench.perf.flops`), which also records whether
the forward pass ran under autocast (``autocast``: for bf16, if not, vaezoo ignored ``train.precision``). Then
``repeats`` rounds, each one timed step of every (system, precision) and one timed matrix product of the
peak's size per precision (:class:`vaezoo_bench.perf.peak.Matmul`), so that the machine's load affects all alike,
in an order shuffled anew each round (seeded), so that no item always follows the same one; a step shorter than
``REWARM_BELOW`` runs once untimed right before its timed call, so that it finds the caches warm as in a training
loop. Every figure is a median over the rounds. Both systems run with subnormal floats flushed, as vaezoo runs do.

Figures: seconds per step (the median, and every round's); vaezoo's speed relative to the yardstick (yardstick
seconds / vaezoo seconds: 1 is parity, above 1 vaezoo is faster); the bf16 speed-ups over fp32 and vaezoo's bf16
speed relative to the fp32 yardstick; FLOPs per step, achieved GFLOP/s and their fraction of the interleaved
products' median GFLOP/s (``python -m benchmarks.perf`` also gives the fraction of the run's peak,
:mod:`vaezoo_bench.perf.peak`).

Usage: ``python -m benchmarks.perf.yardstick [--network text|omniglot|mlp] [--precisions fp32,bf16] [--arch
he2019|vaezoo] [--repeats 10] [--batch N] [--threads 2] [--peak-size 2048] [--data-dir DIR]``; prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import nn

from vaezoo.api import (
    VAE,
    Data,
    DataSpec,
    Parser,
    Registry,
    RunConfig,
    UsageError,
    build_model_for_data,
    configure_cpu,
    load_plugins,
    merge_raw,
    quiet_when_output_closes,
    resolve,
    subnormals_flushed,
)
from vaezoo_bench.perf.configs import PRECISIONS, TEXT_DATA, YARDSTICK_ARCHS, YARDSTICK_BATCH, YARDSTICK_NETWORKS
from vaezoo_bench.perf.flops import count_flops, gflops_per_s
from vaezoo_bench.perf.peak import Matmul
from vaezoo_bench.perf.steps import equal_length_batch, image_batch, stepper, text_data
from vaezoo_bench.perf.yardsticks import MLPVAE, OmniglotVAE, TextVAE, YardstickStep, parameter_count

LATENT = 32
#: Untimed steps of each system and precision before anything is counted or timed.
WARMUP = 2
SYSTEMS = ("vaezoo", "yardstick")
#: A step shorter than this (seconds, in the warm-up) is timed right after an untimed call of itself, so that it
#: finds the caches as a training loop leaves them rather than as the round's previous item (say a large matrix
#: product) did.
REWARM_BELOW = 0.1


def vaezoo_layers(network: str, arch: str, batch: int, threads: int) -> list[dict[str, Any]]:
    """vaezoo's raw configuration of ``network`` at ``arch`` (see the module docstring)."""
    encoder, decoder = YARDSTICK_NETWORKS[network]["networks"]
    with_arch = {"arch": arch} if network != "mlp" else {}
    layers: list[dict[str, Any]] = [
        {
            "encoder": {"name": encoder, **with_arch},
            "decoder": {"name": decoder, **with_arch},
            "model": {"latent_dim": LATENT},
            "train": {**YARDSTICK_NETWORKS[network]["train"], "batch_size": batch, "threads": threads},
        }
    ]
    if network == "text":
        layers.append({"data": TEXT_DATA})
    return layers


def build_yardstick(network: str, config: RunConfig, spec: DataSpec) -> nn.Module:
    """The yardstick model of ``network`` for data of ``spec`` with the sizes of vaezoo's ``config``."""
    encoder, decoder = config.encoder.params, config.decoder.params
    if network == "text":
        assert spec.vocab_size is not None
        if (encoder.embed_dim, encoder.hidden) != (decoder.embed_dim, decoder.hidden):
            raise UsageError("the text yardstick has equal encoder and decoder sizes")
        bias = encoder.arch != "he2019"
        return TextVAE(spec.vocab_size, decoder.embed_dim, decoder.hidden, LATENT, decoder.dropout, bias)
    if network == "omniglot":
        if encoder.arch != "he2019" or decoder.arch != "he2019":
            raise UsageError("the omniglot yardstick is He et al.'s network only: use --arch he2019")
        return OmniglotVAE(LATENT)
    if encoder.hidden != decoder.hidden:
        raise UsageError("the mlp yardstick has equal encoder and decoder widths")
    return MLPVAE(math.prod(spec.shape), encoder.hidden, LATENT)


def _batch(network: str, registry: Registry, data_dir: Path | None, batch: int) -> tuple[Data, torch.Tensor]:
    """The data of ``network`` and the batch both systems train on (see the module docstring)."""
    if network == "text":
        data = text_data(registry, data_dir, "--network text")
        return data, equal_length_batch(data, batch)
    return image_batch(batch)


class ParameterCountMismatch(RuntimeError):
    """vaezoo's model and its yardstick differ in size: the yardstick or vaezoo's arch is wrong."""


@contextmanager
def autocast_probe(module: nn.Module) -> Iterator[list[bool]]:
    """A list that gets one entry per forward pass of ``module`` or any of its submodules in the block: whether it
    ran under CPU autocast. The hooks are removed after the block."""
    seen: list[bool] = []
    record = lambda *_: seen.append(torch.is_autocast_enabled("cpu"))  # noqa: E731
    hooks = [m.register_forward_pre_hook(record) for m in module.modules()]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def _timer(step: Callable[[int], object], rewarm: bool) -> Callable[[int], float]:
    """``step`` as a function of the step's index that returns its seconds; with ``rewarm``, an untimed call of
    the same step comes first."""

    def seconds(index: int) -> float:
        if rewarm:
            step(index)
        start = time.perf_counter()
        step(index)
        return time.perf_counter() - start

    return seconds


def measure_yardstick(
    network: str = "mlp",
    precisions: Sequence[str] = PRECISIONS,
    arch: str = "he2019",
    repeats: int = 10,
    batch: int | None = None,
    threads: int = 2,
    peak_size: int = 2048,
    data_dir: Path | None = None,
) -> dict[str, Any]:
    """Median step times of vaezoo and its yardstick on ``network`` at each precision, and the figures derived
    from them (see the module docstring). UsageError for a bad choice, :class:`ParameterCountMismatch` if the
    two models differ in size."""
    _check_choices(network, arch, precisions)
    batch = batch or YARDSTICK_BATCH[network]
    registry = load_plugins().registry
    config = resolve(merge_raw(*vaezoo_layers(network, arch, batch, threads)), registry)
    train = config.train
    configure_cpu(train)
    torch.manual_seed(0)
    data, x = _batch(network, registry, data_dir, batch)
    model: VAE = build_model_for_data(config, registry, data)
    yardstick = build_yardstick(network, config, data.spec)
    counts = _equal_parameter_counts(network, model, yardstick)
    steps: dict[tuple[str, str], Callable[[int], object]] = {}
    for precision in precisions:
        at_precision = attrs.evolve(config, train=attrs.evolve(train, precision=precision))
        steps["vaezoo", precision] = stepper(at_precision, registry, model, data, x)
        step = YardstickStep(yardstick, x, train.optimizer, train.lr, train.grad_clip, precision)
        steps["yardstick", precision] = lambda _index, step=step: step()
    products = {precision: Matmul(precision, peak_size) for precision in precisions}
    with subnormals_flushed(train.flush_denormal):
        flops, autocast, times = _interleaved(steps, {"vaezoo": model, "yardstick": yardstick}, products, repeats)
    seconds = {key: statistics.median(values) for key, values in times.items()}
    result: dict[str, Any] = {
        "network": network,
        "arch": arch if network != "mlp" else "vaezoo",
        "batch": batch,
        "repeats": repeats,
        "threads": threads,
        "peak_size": peak_size,
        "parameters": counts,
        "optimizer": {"name": train.optimizer, "lr": train.lr, "grad_clip": train.grad_clip},
        "precisions": {p: _precision_entry(p, products[p], seconds, times, flops, autocast) for p in precisions},
    }
    if network == "text":
        result["tokens"] = list(x.shape)
    if {"fp32", "bf16"} <= set(precisions):
        result["bf16_speedup"] = _bf16_speedup(seconds)
    return result


def _bf16_speedup(seconds: dict[Any, float]) -> dict[str, float]:
    """bf16's speed-up over fp32 of each system, and of vaezoo in bf16 over the yardstick in fp32."""
    speedup = {system: seconds[system, "fp32"] / seconds[system, "bf16"] for system in SYSTEMS}
    return speedup | {"vaezoo_bf16_vs_yardstick_fp32": seconds["yardstick", "fp32"] / seconds["vaezoo", "bf16"]}


def _equal_parameter_counts(network: str, model: VAE, yardstick: nn.Module) -> dict[str, int]:
    """The parameter counts of vaezoo's model and its yardstick; :class:`ParameterCountMismatch` if they differ."""
    counts = {"vaezoo": parameter_count(model), "yardstick": parameter_count(yardstick)}
    if counts["vaezoo"] != counts["yardstick"]:
        raise ParameterCountMismatch(
            f"{network}: vaezoo's model has {counts['vaezoo']} parameters and the yardstick {counts['yardstick']}: "
            "the yardstick or the arch is wrong"
        )
    return counts


def _check_choices(network: str, arch: str, precisions: Sequence[str]) -> None:
    """A UsageError naming the choices for an unknown network, arch or precision."""
    if network not in YARDSTICK_NETWORKS:
        raise UsageError(f"unknown network {network!r}; choose one of: {', '.join(YARDSTICK_NETWORKS)}")
    if arch not in YARDSTICK_ARCHS:
        raise UsageError(f"unknown arch {arch!r}; choose one of: {', '.join(YARDSTICK_ARCHS)}")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise UsageError(f"precisions must be among: {', '.join(PRECISIONS)}; got {', '.join(precisions)}")


def _interleaved(
    steps: dict[tuple[str, str], Callable[[int], object]],
    modules: dict[str, torch.nn.Module],
    products: dict[str, Matmul],
    repeats: int,
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], bool], dict[Any, list[float]]]:
    """Warm every step and matrix product up, count each step's FLOPs (and whether autocast ran in it), then time
    them all ``repeats`` rounds, in a shuffled order each round so that a slow spell of the machine hits them
    alike. Returns the FLOPs and autocast by (system, precision) and each round's seconds by (system, precision)
    and, for the matrix products, by precision."""
    warm: dict[tuple[str, str], float] = {}
    for index in range(WARMUP):
        for key, step in steps.items():
            warm[key] = _timer(step, rewarm=False)(index)
    for product in products.values():
        product.seconds()
    flops, autocast = {}, {}
    for (system, precision), step in steps.items():
        with autocast_probe(modules[system]) as seen:
            flops[system, precision] = count_flops(lambda step=step: step(WARMUP))
        autocast[system, precision] = any(seen)
    timed: dict[Any, Callable[[int], float]] = {
        key: _timer(step, rewarm=warm[key] < REWARM_BELOW) for key, step in steps.items()
    }
    timed |= {precision: lambda _index, m=product: m.seconds() for precision, product in products.items()}
    times: dict[Any, list[float]] = {key: [] for key in timed}
    order, shuffle = list(timed), random.Random(0).shuffle
    for round_ in range(repeats):
        shuffle(order)
        for key in order:
            times[key].append(timed[key](WARMUP + 1 + round_))
    return flops, autocast, times


def _precision_entry(
    precision: str,
    product: Matmul,
    seconds: dict[Any, float],
    times: dict[Any, list[float]],
    flops: dict[tuple[str, str], float],
    autocast: dict[tuple[str, str], bool],
) -> dict[str, Any]:
    """The figures of one precision: the interleaved matmul rate, each system's time, FLOPs, GFLOP/s and its
    fraction of that rate, and vaezoo's speed relative to the yardstick."""
    matmul = product.flops / seconds[precision] / 1e9
    entry: dict[str, Any] = {"matmul_gflops_per_s": matmul}
    for system in SYSTEMS:
        key = (system, precision)
        achieved = gflops_per_s(flops[key], seconds[key])
        entry[system] = {
            "seconds": seconds[key],
            "seconds_each_round": times[key],
            "flops": flops[key],
            "gflops_per_s": achieved,
            "fraction_of_matmul": achieved / matmul,
            "autocast": autocast[key],
        }
    entry["speed_vs_yardstick"] = seconds["yardstick", precision] / seconds["vaezoo", precision]
    return entry


def parser() -> argparse.ArgumentParser:
    """The command's options."""
    parser = Parser(
        prog="python -m benchmarks.perf.yardstick",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--network", choices=tuple(YARDSTICK_NETWORKS), default="mlp")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated (default fp32,bf16)")
    parser.add_argument("--arch", choices=YARDSTICK_ARCHS, default="he2019", help="text and omniglot (default he2019)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--batch", type=int, help="examples per step (default: text 32, omniglot 50, mlp 64)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak-size", type=int, default=2048, help="size of the interleaved matrix products")
    parser.add_argument("--data-dir", type=Path, help="text: the data directory (default: $VAEZOO_DATA)")
    return parser


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    from vaezoo.api import resolve_data_dir

    args = parser().parse_args(argv)
    try:
        result = measure_yardstick(
            args.network,
            [p for p in args.precisions.split(",") if p],
            args.arch,
            args.repeats,
            args.batch,
            args.threads,
            args.peak_size,
            resolve_data_dir(args.data_dir),
        )
    except UsageError as error:
        print(f"vaezoo_bench.perf.yardstick: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
