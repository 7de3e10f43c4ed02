"""The speed benchmark's document (:func:`vaezoo_bench.perf.__main__.measure_all`) as markdown: one section per part
measured, each workload whose FLOPs are counted set against the machine's matmul peak of its precision."""

from __future__ import annotations

from typing import Any

from vaezoo.api import markdown_table
from vaezoo_bench.perf.configs import BF16_TARGETS, IWNLL_TARGET, SPEED_TARGETS


def markdown(document: dict[str, Any]) -> str:
    """The figures of ``document`` as markdown: the machine line, then a section per part that has results, then
    the measurements that failed."""
    peak = _peak(document)
    lines = [_machine_line(document, peak)]
    lines += _steps_markdown([r for r in document.get("steps", []) if "error" not in r], peak)
    sampling = document.get("sampling")
    if sampling and "error" not in sampling:
        lines += _sampling_markdown(sampling)
    lines += _iwnll_markdown([r for r in document.get("iwnll", []) if "error" not in r], peak)
    subnormals = document.get("subnormals")
    if subnormals and "error" not in subnormals:
        lines += _subnormals_markdown(subnormals)
    lines += _evaluation_markdown([r for r in document.get("evaluation", []) if "error" not in r])
    lines += _yardstick_markdown([r for r in document.get("yardstick", []) if "error" not in r], peak)
    failed = [r for r in measurements(document) if "error" in r]
    if failed:
        lines += ["", "### Failed measurements", ""]
        lines += [f"- `{' '.join(r['command'])}`: {r['error'].splitlines()[-1]}" for r in failed]
    return "\n".join(lines)


def measurements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measurement of ``document`` (the peak's included), each a result or ``{"error": ...}``."""
    single = [document[part] for part in ("sampling", "subnormals") if part in document]
    peak = [document["machine"]["peak"]] if "peak" in document["machine"] else []
    lists = ("steps", "iwnll", "yardstick", "evaluation")
    return [*peak, *single, *(result for part in lists for result in document.get(part, []))]


def _machine_line(document: dict[str, Any], peak: dict[str, float] | None) -> str:
    """The machine, its load before and after, and the matmul peak when it was measured."""
    machine = document["machine"]

    def load(key: str) -> str:
        return " ".join(f"{v:.1f}" for v in machine[key])

    line = (
        f"Machine: {machine['cores']} cores, {machine['threads']} torch threads per measurement; load average "
        f"{load('load_average_before')} before, {load('load_average_after')} after"
        + ("; --quick" if document["quick"] else "")
        + "."
    )
    if peak:
        measured = machine["peak"]
        medians = ", ".join(f"{p} {v['median']:.0f}" for p, v in measured["gflops_per_s"].items())
        line += (
            f" Matmul peak (best of {measured['repeats']} products of {measured['size']}x{measured['size']} "
            f"matrices): {', '.join(f'{p} {v:.0f}' for p, v in peak.items())} GFLOP/s (median {medians})."
        )
    return line


def _steps_markdown(steps: list[dict[str, Any]], peak: dict[str, float] | None) -> list[str]:
    """The steps part: each variant's step time relative to betavae, then the LSTMs' throughput and the step
    FLOPs where they were measured."""
    if not steps:
        return []
    variants = list(dict.fromkeys(v for r in steps for v in [*r["seconds_per_step"], *r["skipped"]]))
    lines = ["", "### Step time relative to betavae (median ms per step)", ""]
    lines += markdown_table(
        ["variant", *(f"{_network_name(r)} (batch {r['batch']})" for r in steps)],
        [[v, *(_step_cell(r, v) for r in steps)] for v in variants],
    )
    reasons = {v: reason for r in steps for v, reason in r["skipped"].items()}
    lines += [f"\nSkipped {v}: {reason}" for v, reason in reasons.items()]
    text = [r for r in steps if "tokens_per_s" in r]
    if text:
        lines += ["", "### LSTM training throughput (predicted tokens per second)", ""]
        lines += markdown_table(
            ["variant", *(f"{_network_name(r)}, vocab {r['vocab_size']}, {r['tokens_per_step']} tokens" for r in text)],
            [[v, *(f"{r['tokens_per_s'][v]:.0f}" if v in r["tokens_per_s"] else "" for r in text)] for v in variants],
        )
    counted = [r for r in steps if "flops_per_step" in r]
    if counted:
        lines += ["", "### Step FLOPs against the fp32 matmul peak", ""]
        lines += markdown_table(
            ["network", "variant", "GFLOP per step", "step (ms)", "GFLOP/s", "FLOP floor (ms)", "fraction of peak"],
            [_step_flops_row(r, v, flops, peak) for r in counted for v, flops in r["flops_per_step"].items()],
        )
    return lines


def _step_cell(result: dict[str, Any], variant: str) -> str:
    """A variant's step time relative to betavae in one network's result ("skipped", or empty when not run)."""
    if variant in result["skipped"]:
        return "skipped"
    if variant not in result["seconds_per_step"]:
        return ""
    ms = 1000 * result["seconds_per_step"][variant]
    return f"{result['ratio_to_betavae'][variant]:.2f}x ({ms:.0f} ms)"


def _step_flops_row(result: dict[str, Any], variant: str, flops: float, peak: dict[str, float] | None) -> list[str]:
    seconds = result["seconds_per_step"][variant]
    against = _against_peak(flops, seconds, peak and peak.get("fp32"))
    return [_network_name(result), variant, f"{flops / 1e9:.2f}", _ms(seconds), *against]


def _sampling_markdown(sampling: dict[str, Any]) -> list[str]:
    """The sampling part: the PixelCNN's fast sampler against the naive one."""
    naive = (
        "extrapolated from " + str(sampling["naive_pixels_timed"]) + " pixels"
        if sampling["naive_extrapolated"]
        else "timed"
    )
    row = [
        sampling["images"],
        f"{sampling['fast_seconds']:.2f}",
        f"{sampling['naive_seconds']:.1f} ({naive})",
        f"{sampling['ratio']:.1f}",
        f"{sampling['max_probability_gap']:.1e}",
    ]
    header = ["images", "fast (s)", "naive (s)", "naive / fast", "largest probability gap"]
    return ["", "### PixelCNN sampling, fast against naive", "", *markdown_table(header, [row])]


def _iwnll_markdown(iwnll: list[dict[str, Any]], peak: dict[str, float] | None) -> list[str]:
    """The iwnll part: IW-NLL evaluation by chunk size, against the fp32 peak and the target at k = 500."""
    if not iwnll:
        return []
    header = ["batch", "k", "chunk", "seconds", "examples/s", "peak RSS (MB)", "extra RSS (MB)"]
    header += ["GFLOP", "GFLOP/s", "FLOP floor (s)", "fraction of fp32 peak", "target (k = 500)"]
    rows = []
    for r in iwnll:
        against = _against_peak(r["flops"], r["seconds"], peak and peak.get("fp32"), seconds_floor=True)
        fraction = r["flops"] / 1e9 / r["seconds"] / peak["fp32"] if peak and "fp32" in peak else None
        target = _target(fraction, IWNLL_TARGET) if r["k"] == 500 else ""
        figures = [f"{r['seconds']:.3f}", f"{r['examples_per_s']:.0f}", f"{r['peak_rss_mb']:.0f}"]
        figures += [f"{r['extra_rss_mb']:.0f}", f"{r['flops'] / 1e9:.1f}"]
        rows.append([r["batch"], r["k"], r["chunk"], *figures, *against, target])
    title = f"### IW-NLL evaluation by chunk size ({iwnll[0]['model']})"
    return ["", title, "", *markdown_table(header, rows)]


def _subnormals_markdown(subnormals: dict[str, Any]) -> list[str]:
    """The subnormals part: the LSTM encoder's backward pass with subnormal floats kept and flushed."""
    header = ["sequences x tokens", "embed/hidden", "kept (s)", "flushed (s)", "kept / flushed", "subnormal share"]
    row = [
        f"{subnormals['batch']} x {subnormals['length']}",
        f"{subnormals['embed_dim']}/{subnormals['hidden']}",
        f"{subnormals['seconds_kept']:.2f}",
        f"{subnormals['seconds_flushed']:.2f}",
        f"{subnormals['ratio']:.1f}",
        f"{subnormals['subnormal_gradient_share']:.1%}",
    ]
    title = "### LSTM encoder backward pass, subnormal floats kept against flushed"
    return ["", title, "", *markdown_table(header, [row])]


def _evaluation_markdown(evaluations: list[dict[str, Any]]) -> list[str]:
    """The evaluation part: what MI and AU add to an evaluation pass."""
    if not evaluations:
        return []
    header = ["network", "examples", "encoder pass (s)", "MI + AU (s)", "MI + AU / encoder pass", "-ELBO pass (s)"]
    rows = [
        [
            r["network"],
            r["examples"],
            f"{r['seconds']['encoder']:.3f}",
            f"{r['seconds']['mi_au']:.3f}",
            f"{r['mi_au_per_encoder_pass']:.3f}",
            f"{r['seconds']['elbo']:.2f}",
        ]
        for r in evaluations
    ]
    title = "### What MI and AU add to an evaluation pass (He et al.'s networks)"
    return ["", title, "", *markdown_table(header, rows)]


def _network_name(result: dict[str, Any]) -> str:
    sizes = f" {result['embed_dim']}/{result['hidden']}" if "embed_dim" in result else ""
    setting = ", ".join(result[key] for key in ("arch", "precision") if key in result)
    return f"{result['network']}{sizes}" + (f" ({setting})" if setting else "")


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
    """The tables of the yardstick part's ``results`` (see :mod:`vaezoo_bench.perf.yardstick`)."""
    if not results:
        return []
    lines = ["", "### vaezoo's training step against plain PyTorch (yardstick), interleaved in one process", ""]
    rows = [
        _yardstick_row(r, precision, entry, peak.get(precision) if peak else None)
        for r in results
        for precision, entry in r["precisions"].items()
    ]
    header = ["network", "precision", "vaezoo (ms)", "yardstick (ms)", "vaezoo speed / yardstick", "target"]
    header += ["GFLOP per step", "vaezoo GFLOP/s", "FLOP floor (ms)", "vaezoo / peak", "yardstick / peak"]
    lines += markdown_table([*header, "vaezoo / interleaved matmul"], rows)
    lines += _bf16_markdown([r for r in results if "bf16_speedup" in r])
    counts = "; ".join(f"{r['network']} {r['parameters']['vaezoo']:,}" for r in results)
    lines += [
        "",
        f"Parameters, equal in vaezoo's model and the yardstick: {counts}. Speeds are yardstick time / vaezoo time "
        "(above 1: vaezoo is faster); peak fractions use the run's matmul peak of the row's precision, the last "
        "column the median of matrix products timed between the steps.",
    ]
    return lines


def _yardstick_row(result: dict[str, Any], precision: str, entry: dict[str, Any], peak: float | None) -> list[str]:
    """One network and precision of the yardstick part: vaezoo against the yardstick, the target, the peak."""
    vaezoo, yardstick = entry["vaezoo"], entry["yardstick"]
    ratio = entry["speed_vs_yardstick"]
    return [
        f"{result['network']} ({result['arch']}, batch {result['batch']})",
        precision + ("" if vaezoo["autocast"] == (precision == "bf16") else " (vaezoo ignored it)"),
        _ms(vaezoo["seconds"]),
        _ms(yardstick["seconds"]),
        f"{ratio:.2f}",
        _target(ratio, SPEED_TARGETS.get((result["network"], precision))),
        f"{vaezoo['flops'] / 1e9:.1f}" + ("" if vaezoo["flops"] == yardstick["flops"] else " (differ)"),
        *_against_peak(vaezoo["flops"], vaezoo["seconds"], peak),
        _against_peak(yardstick["flops"], yardstick["seconds"], peak)[2],
        f"{vaezoo['fraction_of_matmul']:.2f}",
    ]


def _bf16_markdown(speedups: list[dict[str, Any]]) -> list[str]:
    """bf16's speed-up over fp32 for each network measured in both."""
    if not speedups:
        return []
    header = ["network", "vaezoo bf16 / fp32", "yardstick bf16 / fp32", "vaezoo bf16 / yardstick fp32", "target"]
    rows = [
        [
            r["network"],
            f"{r['bf16_speedup']['vaezoo']:.2f}",
            f"{r['bf16_speedup']['yardstick']:.2f}",
            f"{r['bf16_speedup']['vaezoo_bf16_vs_yardstick_fp32']:.2f}",
            _target(r["bf16_speedup"]["vaezoo_bf16_vs_yardstick_fp32"], BF16_TARGETS.get(r["network"])),
        ]
        for r in speedups
    ]
    return ["", "### bf16 speed-up over fp32", "", *markdown_table(header, rows)]
