"""The speed read against the machine's limit (``benchmarks/perf``: peak, flops, yardsticks, yardstick): FLOP counts
against their formulas, the yardsticks against vaezoo's models (same parameter count, autoregressive PixelCNN),
the equal-length text batch, the markdown of the yardstick part, and the command's option errors.

No timing is checked (timing claims live in benchmarks/README.md as measured ratios); the tests that time or train
are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys

import attrs
import pytest
import torch
from torch import nn

from tests.conftest import REPO
from vaezoo.components.interfaces import DataSpec
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.model.assembly import build_model
from vaezoo_bench.perf.configs import PRECISIONS
from vaezoo_bench.perf.flops import count_flops, rnn_matmul_flops
from vaezoo_bench.perf.yardsticks import MLPVAE, OmniglotVAE, TextVAE, parameter_count

IMAGES = DataSpec((1, 28, 28), "binary")
YAHOO = DataSpec((202,), "tokens", vocab_size=20_000, pad_id=0, bos_id=1, eos_id=2, unk_id=3)


def vaezoo_model(registry, network: str, arch: str, spec: DataSpec) -> nn.Module:
    from vaezoo_bench.perf.yardstick import vaezoo_layers

    return build_model(resolve(merge_raw(*vaezoo_layers(network, arch, 8, 1)), registry), registry, spec)


def has_he2019(registry, *components: tuple[str, str]) -> bool:
    """Whether every (kind, name) component offers ``arch = "he2019"``, the architecture the speed benchmark
    measures: an architecture renamed or removed fails its tests, never skips them."""
    for kind, name in components:
        fields = attrs.fields_dict(registry.get(kind, name).cls.Params)
        if "arch" not in fields or "he2019" not in fields["arch"].metadata.get("choices", ("he2019",)):
            return False
    return True


# -- FLOP counting ---------------------------------------------------------------------------------------------


def test_flops_of_two_linear_layers_are_the_matmul_formula_forward_and_backward():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ELU(), nn.Linear(16, 4))
    x = torch.randn(5, 8)  # no gradient for the input: the first layer's backward forms the weight's gradient only
    counted = count_flops(lambda: net(x).sum().backward())
    assert counted == 2 * 5 * 8 * 16 * 2 + 2 * 5 * 16 * 4 * 3


@pytest.mark.parametrize("precision", PRECISIONS)
def test_flops_of_an_lstm_are_counted_by_the_formula_that_torch_lacks(precision):
    lstm = nn.LSTM(8, 16, batch_first=True)
    x = torch.randn(3, 5, 8, requires_grad=True)
    forward = rnn_matmul_flops(rows=3 * 5, input_size=8, gates=4 * 16, hidden=16)
    assert forward == 2 * 15 * 64 * (8 + 16)

    def train() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out, _ = lstm(x)
        out.float().sum().backward()

    with torch.no_grad():
        assert count_flops(lambda: lstm(x)) == forward
    assert count_flops(train) == 3 * forward, "backward: gradients of both operands of both products"


def test_peak_reports_best_and_median_for_each_precision():
    from vaezoo_bench.perf.peak import measure_peak

    peak = measure_peak(size=64, repeats=3, threads=1)
    assert set(peak["gflops_per_s"]) == set(PRECISIONS)
    for figures in peak["gflops_per_s"].values():
        assert figures["best"] >= figures["median"] > 0


# -- the yardsticks against vaezoo's models --------------------------------------------------------------------


def test_mlp_yardstick_has_vaezoos_parameter_count(registry):
    model = vaezoo_model(registry, "mlp", "vaezoo", IMAGES)
    assert parameter_count(MLPVAE(28 * 28, (256, 256), 32)) == parameter_count(model) == 558_928


def test_he2019_yardsticks_have_the_reference_parameter_counts_and_vaezoos(registry):
    assert parameter_count(TextVAE(20_000)) == 53_788_672, "He et al.'s Yahoo LSTM VAE"
    assert parameter_count(OmniglotVAE()) == 1_646_848, "He et al.'s Omniglot ResNet + PixelCNN"
    assert has_he2019(registry, ("encoder", "lstm"), ("decoder", "lstm")), "the benchmark measures arch he2019"
    assert parameter_count(vaezoo_model(registry, "text", "he2019", YAHOO)) == 53_788_672
    assert parameter_count(vaezoo_model(registry, "text", "vaezoo", YAHOO)) == parameter_count(
        TextVAE(20_000, bias=True)
    )
    assert has_he2019(registry, ("encoder", "resnet"), ("decoder", "pixelcnn")), "the benchmark measures arch he2019"
    assert parameter_count(vaezoo_model(registry, "omniglot", "he2019", IMAGES)) == 1_646_848


def test_omniglot_yardsticks_pixel_logits_see_only_the_pixels_before_them():
    torch.manual_seed(0)
    model = OmniglotVAE().eval()
    z = torch.randn(1, 32)
    x = torch.bernoulli(torch.full((1, 1, 28, 28), 0.5))
    row, column = 13, 9
    changed = x.clone()
    changed[0, 0, row, column] = 1 - changed[0, 0, row, column]
    changed[0, 0, row + 1 :] = 1 - changed[0, 0, row + 1 :]
    with torch.no_grad():
        before, after = (model.logits(image, z).flatten() for image in (x, changed))
    position = row * 28 + column
    assert torch.equal(before[: position + 1], after[: position + 1]), "logits up to the changed pixel"
    assert not torch.equal(before[position + 1 :], after[position + 1 :])


def test_equal_length_batch_is_of_one_length_without_padding_near_the_median(registry, data_dir):
    from vaezoo_bench.perf.steps import equal_length_batch, text_data

    data = text_data(registry, data_dir, "test")
    x = equal_length_batch(data, 32)
    assert x.shape[0] == 32 and bool((x != data.spec.pad_id).all()), "no padding"
    assert bool((x[:, 0] == data.spec.bos_id).all() and (x[:, -1] == data.spec.eos_id).all())
    lengths = data.lengths["train"]
    assert abs(x.shape[1] - float(lengths.median())) <= 5


# -- the command ---------------------------------------------------------------------------------------------


def yardstick_result(network: str, vaezoo_seconds: float, bf16_autocast: bool = True) -> dict:
    entry = lambda seconds, autocast: {  # noqa: E731
        "seconds": seconds,
        "flops": 2e9,
        "gflops_per_s": 2 / seconds,
        "fraction_of_matmul": 0.5,
        "autocast": autocast,
    }
    return {
        "network": network,
        "arch": "he2019",
        "batch": 32,
        "parameters": {"vaezoo": 10, "yardstick": 10},
        "precisions": {
            "fp32": {
                "vaezoo": entry(vaezoo_seconds, False),
                "yardstick": entry(1.0, False),
                "speed_vs_yardstick": 1.0 / vaezoo_seconds,
            },
            "bf16": {"vaezoo": entry(0.5, bf16_autocast), "yardstick": entry(0.5, True), "speed_vs_yardstick": 1.0},
        },
        "bf16_speedup": {"vaezoo": vaezoo_seconds / 0.5, "yardstick": 2.0, "vaezoo_bf16_vs_yardstick_fp32": 2.0},
    }


def test_yardstick_markdown_gives_ratios_peak_fractions_and_targets():
    from vaezoo_bench.perf.__main__ import markdown

    machine = {"cores": 2, "threads": 2, "load_average_before": [0, 0, 0], "load_average_after": [0, 0, 0]}
    peaks = {"fp32": {"best": 10, "median": 8}, "bf16": {"best": 40, "median": 30}}
    machine["peak"] = {"size": 64, "repeats": 3, "gflops_per_s": peaks}
    document = {
        "machine": machine,
        "quick": False,
        "yardstick": [yardstick_result("text", 2.0), yardstick_result("omniglot", 1.0, bf16_autocast=False)],
    }
    text = markdown(document)
    assert "Matmul peak (best of 3 products of 64x64 matrices): fp32 10, bf16 40 GFLOP/s" in text
    # text fp32: vaezoo 2 s against 1 s, 1 GFLOP/s = 0.10 of the 10 GFLOP/s peak, FLOP floor 200 ms
    row = "| fp32 | 2000 | 1000 | 0.50 | ≥ 0.95: NOT met | 2.0 | 1 | 200 | 0.10 | 0.20 | 0.50 |"
    assert f"| text (he2019, batch 32) {row}" in text
    assert "| omniglot (he2019, batch 32) | fp32 | 1000 | 1000 | 1.00 | ≥ 0.95: met |" in text
    assert "| omniglot (he2019, batch 32) | bf16 (vaezoo ignored it) |" in text
    assert "| text | 4.00 | 2.00 | 2.00 | ≥ 1.6: met |" in text


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--precisions", "fp16"], "argument --precisions: unknown precision 'fp16'; choose from: fp32, bf16"),
        (["--yardstick-networks", "gru"], "unknown network 'gru'; choose from: text, omniglot, mlp"),
        (["--arch", "he2020"], "argument --arch: invalid choice: 'he2020'"),
        (["--peak-size", "0"], "argument --peak-size: must be a positive integer, got '0'"),
    ],
)
def test_perf_command_refuses_a_bad_yardstick_option_with_status_2(capsys, option, message):
    from vaezoo_bench.perf.__main__ import main

    with pytest.raises(SystemExit) as raised:
        main(["--parts", "yardstick", *option])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.perf: error: ") and message in err


def test_yardstick_measurement_refuses_a_bad_option_with_status_2(capsys):
    from vaezoo_bench.perf.yardstick import main

    with pytest.raises(SystemExit) as raised:
        main(["--network", "gru"])
    assert raised.value.code == 2
    assert "argument --network: invalid choice: 'gru'" in capsys.readouterr().err
    assert main(["--precisions", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err == "vaezoo_bench.perf.yardstick: error: precisions must be among: fp32, bf16; got fp16\n"


@pytest.mark.slow
def test_yardstick_part_runs_in_its_own_process_and_reports_equal_models():
    # A tiny configuration: no timing is checked, only that the part and the peak run and report.
    command = [sys.executable, "-m", "vaezoo_bench.perf", "--parts", "yardstick", "--yardstick-networks", "mlp"]
    command += ["--yardstick-repeats", "2", "--threads", "1", "--peak-size", "128", "--peak-repeats", "2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    text, _, markdown = result.stdout.partition("\n\n")
    document = json.loads(text)
    (mlp,) = document["yardstick"]
    assert mlp["parameters"]["vaezoo"] == mlp["parameters"]["yardstick"]
    assert set(mlp["precisions"]) == set(PRECISIONS)
    for precision, entry in mlp["precisions"].items():
        assert entry["vaezoo"]["flops"] == entry["yardstick"]["flops"] > 0, "the same networks do the same work"
        assert entry["yardstick"]["autocast"] == (precision == "bf16")
    assert set(document["machine"]["peak"]["gflops_per_s"]) == set(PRECISIONS)
    assert "### vaezoo's training step against plain PyTorch (yardstick)" in markdown
    assert "### bf16 speed-up over fp32" in markdown
