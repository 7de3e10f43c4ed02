"""Property tests over real one-step runs: any value of any parameter of any component or core section trains,
diverges or is refused, and a refusal is one line of error with no traceback.

Each example runs ``vaezoo run --steps 1`` in-process on a small, valid setting of the component under test
(synthetic vectors, Omniglot or MNIST images, PTB or Yahoo text) with none, one or two of its parameters set to a
drawn value: its default, a bound's edge or just past it, or a value of the wrong size or type.
"""

from __future__ import annotations

import itertools
import math
import shutil
import typing
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaezoo.base.params import public_name
from vaezoo.cli.main import main
from vaezoo.config.run_config import EvalConfig, ModelConfig, TrainConfig
from vaezoo.plugins.component import KINDS
from vaezoo.plugins.loading import load_plugins

pytestmark = pytest.mark.slow

BASE = [
    "run", "--steps", "1", "--no-progress", "--set", "train.threads=1", "--set", "eval.iw_samples=2",
    "--set", "eval.limit=8", "--set", "train.eval_every=1", "--set", "train.batch_size=8",
]  # fmt: skip

Setting = dict[str, dict[str, Any]]
SYNTHETIC: Setting = {
    "data": {"name": "synthetic", "dim": 10, "n_train": 64, "n_valid": 16, "n_test": 16},
    "encoder": {"name": "mlp", "hidden": [8]},
    "decoder": {"name": "mlp", "hidden": [8]},
}
NETWORKS: Setting = {
    "mlp": {"hidden": [8]},
    "resnet": {"channels": [4, 4, 4], "blocks_per_stage": 1},
    "pixelcnn": {"channels": 8, "kernels": [3]},
    "skip_pixelcnn": {"channels": 8, "kernels": [3]},
    "deconv": {"channels": 8},
    "lstm": {"embed_dim": 8, "hidden": 8},
    "skip_lstm": {"embed_dim": 8, "hidden": 8},
}
NCVAE: Setting = {"regularizer": {"name": "ncvae"}}


def images(data: str = "omniglot", encoder: str = "mlp", decoder: str = "mlp") -> Setting:
    """A binarised image data set cut to 64 training images and about 50 test images, with small networks."""
    return {
        "data": {"name": data, "limit": 64, "valid_fraction": 0.01, "test_fraction": 0.01},
        "encoder": {"name": encoder, **NETWORKS[encoder]},
        "decoder": {"name": decoder, **NETWORKS[decoder]},
    }


def text(data: str = "ptb", decoder: str = "lstm") -> Setting:
    """A corpus cut to 64 training documents and about 50 test documents of at most 8 tokens, with small LSTMs."""
    held_out = {"valid_fraction": 0.01, "test_fraction": 0.005} if data == "yahoo" else {"test_fraction": 0.01}
    return {
        "data": {"name": data, "limit": 64, "max_len": 8, **held_out},
        "encoder": {"name": "lstm", **NETWORKS["lstm"]},
        "decoder": {"name": decoder, **NETWORKS[decoder]},
    }


def noise(name: str, setting: Setting) -> Setting:
    """``setting`` trained by NC-VAE with the noise sampler ``name``."""
    return {**setting, **NCVAE, "noise": {"name": name}}


#: Settings in which a component is valid and cheap, by (kind, name); other components use ``fallback``.
SETTINGS: dict[tuple[str, str], list[Setting]] = {
    ("data", "synthetic"): [SYNTHETIC],
    ("data", "omniglot"): [images("omniglot")],
    ("data", "mnist"): [images("mnist")],
    ("data", "ptb"): [text("ptb")],
    ("data", "yahoo"): [text("yahoo")],
    ("data", "torchtext"): [text("torchtext")],
    ("encoder", "mlp"): [SYNTHETIC],
    ("encoder", "resnet"): [images(encoder="resnet", decoder="deconv")],
    ("encoder", "lstm"): [text()],
    ("decoder", "mlp"): [SYNTHETIC],
    ("decoder", "pixelcnn"): [images(decoder="pixelcnn")],
    ("decoder", "deconv"): [images(decoder="deconv")],
    ("decoder", "lstm"): [text()],
    ("decoder", "skip_pixelcnn"): [images(decoder="skip_pixelcnn")],
    ("decoder", "skip_lstm"): [text(decoder="skip_lstm")],
    ("noise", "gaussian"): [noise("gaussian", SYNTHETIC), noise("gaussian", images())],
    ("noise", "dataset"): [noise("dataset", SYNTHETIC)],
    ("noise", "decoder"): [noise("decoder", text()), noise("decoder", images(decoder="pixelcnn"))],
}
#: Settings for the core sections: every kind of data and network.
CORE_SETTINGS = [
    SYNTHETIC,
    {**SYNTHETIC, **NCVAE},
    images(encoder="resnet", decoder="pixelcnn"),
    images(data="mnist", decoder="deconv"),
    text(),
]


def fallback(kind: str, name: str) -> list[Setting]:
    """The synthetic setting with the component in place (data: with MLPs; noise: for NC-VAE)."""
    if kind == "data":
        return [{**SYNTHETIC, "data": {"name": name}}]
    if kind == "noise":
        return [noise(name, SYNTHETIC)]
    return [{**SYNTHETIC, kind: {"name": name}}]


@attrs.frozen
class Target:
    """A section whose parameters are drawn: a component (kind and name) or a core section (name None)."""

    section: str
    name: str | None
    params: type
    settings: tuple[Setting, ...]
    #: Command-line flags that put the target in the run (``--callback NAME`` for a callback).
    flags: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.section}-{self.name}" if self.name else self.section


def targets() -> list[Target]:
    """Every registered component of every kind, then the core sections."""
    registry = load_plugins().registry
    found = [
        Target(kind, name, entry.cls.Params, tuple(SETTINGS.get((kind, name)) or fallback(kind, name)))
        for kind in KINDS
        for name, entry in registry.entries(kind).items()
    ]
    callbacks = [
        Target(f"callbacks.{name}", None, entry.cls.Params, (SYNTHETIC,), ("--callback", name))
        for name, entry in registry.entries("callback").items()
    ]
    core = (("model", ModelConfig), ("train", TrainConfig), ("eval", EvalConfig))
    return found + callbacks + [Target(section, None, cls, tuple(CORE_SETTINGS)) for section, cls in core]


# -- drawn values ---------------------------------------------------------------------------------------------

#: Values tried for every parameter, whatever its type: sizes, signs, extremes, and text that is no number.
ANY_NUMBER = [0, -1, 1, 10**12, -(10**12), 2**63, 2**64, 0.5, -0.0, 1e-300, 5e-324, 1e300, -1e300]
ANY_OTHER = ["", "abc", "none", "nan", "inf", "-inf", "1e999", "[1, 2]", "{a = 1}", "'x'", True, False, None, []]
#: Values that mean something to one parameter only.
EXTRA = {
    ("eval", "test_prior"): ["optimal", "tuned", "2.5", "1e-6", "1e6", "1e-7", "1e7", "0", "-2"],
    ("train", "device"): ["cpu", "cuda", "cuda:1", "cpu:0"],
}
#: Valid but slow: an integer above the cap, up to the upper bound, would make a long run rather than a bad one.
COSTLY = {("train", "steps"): 2, ("train", "epochs"): 1, ("train", "threads"): 1, ("eval", "iw_samples"): 64}
#: A progress bar writes to stderr by design; every run here hides it.
SKIPPED = {("train", "progress")}


def edges(field: attrs.Attribute, number: type) -> list[Any]:
    """Each bound of ``field``, and the values just below and above it, as ``number`` (int or float)."""
    values: list[Any] = []
    for bound, _ in field.metadata.get("bounds", ()):
        if number is int:
            values += [int(bound) - 1, int(bound), int(bound) + 1]
        else:
            values += [math.nextafter(bound, -math.inf), float(bound), math.nextafter(bound, math.inf)]
    return values


def scalar_type(annotation: Any) -> Any:
    """The type of a value or of its items: ``int`` for ``int``, ``int | None`` and ``tuple[int, ...]``."""
    args = [a for a in typing.get_args(annotation) if a not in (type(None), Ellipsis)]
    return scalar_type(args[0]) if args else annotation


def affordable(key: tuple[str, str], field: attrs.Attribute, value: Any) -> bool:
    """False for what ``COSTLY`` leaves out, and for train.steps = none (the default 3000 steps)."""
    if key == ("train", "steps") and value in (None, "none"):
        return False
    if key not in COSTLY or not isinstance(value, int) or isinstance(value, bool):
        return True
    upper = min((b for b, sign in field.metadata.get("bounds", ()) if sign in ("<=", "<")), default=math.inf)
    return not COSTLY[key] < value <= upper


def values(section: str, field: attrs.Attribute, annotation: Any) -> st.SearchStrategy[Any]:
    """Drawn values of one parameter: as often its default, choices and bounds' edges (the default first) as any
    kind of junk; lists of edges for a tuple."""
    key = (section, public_name(field.name))
    number = scalar_type(annotation)
    edge = edges(field, number if number in (int, float) else float)

    def pick(candidates: list[Any]) -> st.SearchStrategy[Any]:
        return st.sampled_from([v for v in candidates if affordable(key, field, v)])

    meaningful = [field.default, *(field.metadata.get("choices") or ()), *EXTRA.get(key, []), *edge]
    strategy = pick(meaningful) | pick(ANY_NUMBER + ANY_OTHER)
    if typing.get_origin(annotation) is tuple:
        lists = st.lists(pick([8, *(v for v in edge + ANY_NUMBER if isinstance(v, int))]), max_size=3)
        strategy |= lists | lists.map(lambda items: ",".join(map(str, items)))
    return strategy


def literal(value: Any) -> str:
    """The text of ``--set KEY=TEXT`` for ``value``: a TOML literal, or a string as typed."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) if not isinstance(v, str) else f'"{v}"' for v in value) + "]"
    return str(value)


def set_flags(setting: Setting) -> list[str]:
    """``--set SECTION.KEY=VALUE`` for every value of ``setting``."""
    return [
        arg
        for section, pairs in setting.items()
        for k, v in pairs.items()
        for arg in ("--set", f"{section}.{k}={literal(v)}")
    ]


# -- running --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> Iterator:
    """Fresh run directories run-0, run-1, ... under one temporary directory."""
    root = tmp_path_factory.mktemp("fuzz")
    return (root / f"run-{n}" for n in itertools.count())


def run(argv: Sequence[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``vaezoo ARGV`` in this process."""
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_clean(code: int, err: str, argv: Sequence[str]) -> None:
    """Exit 0 (trained), 2 (refused) or 3 (diverged); a refusal is one line of error, before anything runs (after
    the notes on the data, for a refusal that needs the data loaded, such as a batch larger than its split); a
    divergence is one line of error after the lines saying which file made each split."""
    assert code in (0, 2, 3), (code, err, argv)
    if code != 0:
        *before, last = err.strip().splitlines()
        assert last.startswith("vaezoo: error: ") and "Traceback" not in err, (err, argv)
        notes = [line for line in before if line.startswith("vaezoo: note: data ")]
        assert all(line.startswith("vaezoo: data ") for line in before if line not in notes), (err, argv)
        assert code == 3 or len(notes) == len(before), (err, argv)


TARGETS = targets()
PROPERTY = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("target", TARGETS, ids=str)
@PROPERTY
@given(data=st.data())
def test_a_one_step_run_with_any_drawn_value_ends_cleanly(target, data, data_dir, run_dirs, capsys):
    """Up to two parameters of the target at drawn values: the run trains (0), is refused (2) or diverges (3), and
    never ends in a traceback."""
    hints = typing.get_type_hints(target.params)
    fields = [f for f in attrs.fields(target.params) if (target.section, public_name(f.name)) not in SKIPPED]
    chosen = data.draw(
        st.lists(st.sampled_from(fields), max_size=2, unique_by=lambda f: f.name) if fields else st.just([])
    )
    drawn = {public_name(f.name): data.draw(values(target.section, f, hints[f.name])) for f in chosen}
    setting = data.draw(st.sampled_from(target.settings))
    if target.name is not None:
        setting = {**setting, target.section: {**setting.get(target.section, {}), "name": target.name}}
    out = next(run_dirs)
    argv = [*BASE, "--out", str(out), "--data-dir", str(data_dir), *target.flags, *set_flags(setting)]
    argv += set_flags({target.section: drawn})
    try:
        assert_clean(*run(argv, capsys), argv)
    finally:
        shutil.rmtree(out, ignore_errors=True)


#: Values once accepted, each with the word its refusal must name.
ONCE_ACCEPTED = [
    (["--set", "train.grad_clip=-1"], "grad_clip"),
    (["--regularizer", "infovae", "--set", "regularizer.bandwidth=-1"], "bandwidth"),
    (["--set", "eval.limit=0"], "limit"),
    (["--set", "eval.limit=-1"], "limit"),
    (["--test-prior", "inf"], "inf"),
    (["--test-prior", "1e-300"], "1e-300"),
    (["--latent-dim", "1000000000"], "latent_dim"),
    (["--seed", "9223372036854775807"], "seed"),
]


@pytest.mark.parametrize(("flags", "named"), [pytest.param(f, n, id=" ".join(f)) for f, n in ONCE_ACCEPTED])
def test_values_once_accepted_are_refused_before_training(flags, named, run_dirs, capsys):
    """Each of these values was once accepted and ended in a traceback or a useless run: now it is exit 2 with one
    line naming it, and no run directory is made."""
    out = next(run_dirs)
    code, err = run([*BASE, "--out", str(out), *set_flags(SYNTHETIC), *flags], capsys)
    assert code == 2, (code, err)
    assert err.startswith("vaezoo: error: ") and len(err.strip().splitlines()) == 1, err
    assert named in err, err
    assert not out.exists()
