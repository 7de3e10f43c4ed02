"""The run configuration: a frozen attrs tree, built from defaults, a TOML/JSON file, flags and ``--set``.

Raw input is a nested mapping with one section per component kind (``name`` plus that component's
parameters) and the sections ``train``, ``model`` and ``eval``. ``resolve`` validates every value against the
component's ``Params`` class before anything trains; every problem is a :class:`UsageError`.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from vaezoo.base.errors import UsageError
from vaezoo.base.params import build_params, param, params_as_dict
from vaezoo.config.prior_setting import check_test_prior
from vaezoo.plugins.component import KINDS
from vaezoo.plugins.registry import Registry

OPTIONAL_KINDS = ("noise", "transform")
CORE_SECTIONS = ("model", "train", "eval")
CALLBACKS = "callbacks"
SECTIONS = (*KINDS, *CORE_SECTIONS, CALLBACKS)
#: Settings a resumed run may change: how long it trains, where it runs and how it is evaluated, never what it
#: learns. Any other difference refuses the resume.
RESUMABLE_SETTINGS = (
    "train.steps",
    "train.epochs",
    "train.eval_every",
    "train.threads",
    "train.device",
    "train.progress",
    "eval.limit",
    "eval.batch_size",
    "eval.iw_samples",
    "eval.iw_chunk",
    "eval.iw_rows",
    "eval.iw_limit",
    "eval.mi_he_batch",
)

DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {"name": "synthetic"},
    "encoder": {"name": "mlp"},
    "decoder": {"name": "mlp"},
    "prior": {"name": "standard"},
    "regularizer": {"name": "betavae"},
    "noise": {},
    "transform": {},
    "strategy": {"name": "standard"},
    "model": {},
    "train": {},
    "eval": {},
    CALLBACKS: {},
}


@attrs.frozen
class ModelConfig:
    latent_dim: int = param(2, ge=1, le=4096, help="dimension of the latent code z")


@attrs.frozen
class TrainConfig:
    steps: int | None = param(None, ge=1, le=10**9, help="optimiser steps (default: 3000 when epochs is not given)")
    epochs: int | None = param(None, ge=1, le=10**6, help="passes over the training split; overrides steps when given")
    batch_size: int = param(64, ge=1, le=10**6, help="examples per training batch")
    optimizer: str = param("adam", choices=("adam", "sgd"), help="optimiser of the model: adam or sgd")
    lr: float = param(1e-3, gt=0, le=100, help="learning rate")
    momentum: float = param(0.0, ge=0, lt=1, help="momentum of sgd (refused with adam, which would ignore it)")
    grad_clip: float | None = param(None, gt=0, help="clip the gradient norm to this value (none: no clipping)")
    seed: int = param(0, ge=0, le=2**32 - 1, help="seed of every random draw of the run")
    device: str = param("cpu", help="torch device, e.g. cpu or cuda")
    threads: int | None = param(
        1,
        ge=1,
        le=1024,
        help="torch CPU threads (none: torch's default, one per core). 1 by default: on a busy machine more threads "
        "than free cores make every step wait (the default run took 308 s with 2 threads and 77 s with 1 on a loaded "
        "2-core machine); raise it for large networks on an idle machine",
    )
    flush_denormal: bool = param(
        True,
        help="CPU: train and evaluate with subnormal floats flushed to zero; gradients that fade through long "
        "sequences otherwise turn subnormal, which x86 processes many times slower (see the README)",
    )
    precision: str = param(
        "fp32",
        choices=("fp32", "bf16"),
        help="arithmetic of the networks in training and evaluation: fp32, or bf16 through torch.autocast (matrix "
        "multiplies and convolutions in bfloat16; parameters, losses and metrics stay float32)",
    )
    eval_every: int = param(250, ge=1, le=10**9, help="steps between validation evaluations (and checkpoints)")
    test_model: str = param(
        "last",
        choices=("last", "best"),
        help="the model evaluated on the test split: last (the final step's) or best (the validation line with the "
        "lowest -ELBO, kept in best.pt; with the early_stop callback, training until it stopped improving)",
    )
    progress: bool = param(True, help="show a progress bar")


@attrs.frozen
class EvalConfig:
    batch_size: int = param(
        500, ge=2, le=10**6, help="examples per evaluation batch (also MI's aggregate-posterior batch)"
    )
    iw_samples: int = param(500, ge=0, le=10**6, help="importance samples k of IW-NLL (0 skips it)")
    iw_chunk: int = param(100, ge=1, le=10**6, help="importance samples of an example drawn and evaluated at once")
    iw_rows: int = param(
        5000,
        ge=1,
        le=10**8,
        help="most decoder rows (examples x importance samples) in one IW-NLL forward pass: bounds memory; the "
        "examples of a batch are taken in groups of max(1, iw_rows // iw_chunk)",
    )
    limit: int | None = param(None, ge=1, help="evaluate at most this many examples of a split")
    iw_limit: int | None = param(
        None,
        ge=2,
        help="IW-NLL on at most this many of the evaluated examples, spread evenly over them (none: all); the "
        "metrics then hold its standard error over examples, iw_nll_se, and their number, iw_examples",
    )
    au_threshold: float = param(0.01, ge=0, help="a latent dim is active when Cov_x E[z_d] exceeds this")
    mi_he_batch: int | None = param(
        None,
        ge=1,
        le=10**6,
        help="examples per aggregate posterior of He et al.'s MI estimate, mi_he (none: theirs, 32 documents of one "
        "length for token data, 50 otherwise)",
    )
    test_prior: str = param(
        "trained",
        help="trained (the model's prior), standard (N(0, I)), a name a plugin offers (optimal, tuned: NC-VAE's), "
        "or a variance such as 2.5 (N(0, s^2 I))",
    )


@attrs.frozen
class ComponentChoice:
    """A chosen component: its registered name and validated parameters."""

    name: str
    params: Any

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, **params_as_dict(self.params)}


@attrs.frozen
class RunConfig:
    data: ComponentChoice
    encoder: ComponentChoice
    decoder: ComponentChoice
    prior: ComponentChoice
    regularizer: ComponentChoice
    noise: ComponentChoice | None
    transform: ComponentChoice | None
    strategy: ComponentChoice
    model: ModelConfig
    train: TrainConfig
    eval: EvalConfig
    #: The run's callbacks in the order given, each at most once.
    callbacks: tuple[ComponentChoice, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Plain nested dict that ``resolve`` accepts back (written as the run's ``config.json``)."""
        out: dict[str, Any] = {}
        for kind in KINDS:
            choice = getattr(self, kind)
            out[kind] = choice.as_dict() if choice is not None else {}
        for section in CORE_SECTIONS:
            out[section] = attrs.asdict(getattr(self, section))
        out[CALLBACKS] = {choice.name: params_as_dict(choice.params) for choice in self.callbacks}
        return out


def flat_settings(config: RunConfig) -> dict[str, Any]:
    """Every setting of ``config`` keyed ``section.param`` (component sections include ``name``); a callback is
    one setting, ``callbacks.NAME``, whose value is its parameters."""
    return {f"{section}.{key}": value for section, values in config.as_dict().items() for key, value in values.items()}


def config_changes(before: RunConfig, after: RunConfig) -> dict[str, list[Any]]:
    """The settings that differ, as ``{"section.param": [before, after]}`` in a stable order."""
    old, new = flat_settings(before), flat_settings(after)
    keys = [*old, *(key for key in new if key not in old)]
    return {key: [old.get(key), new.get(key)] for key in keys if old.get(key) != new.get(key)}


def core_settings_class(section: str) -> type:
    """The attrs class of a core section (``model``, ``train``, ``eval``)."""
    return {"model": ModelConfig, "train": TrainConfig, "eval": EvalConfig}[section]


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON config file as a raw mapping; unreadable or malformed files are UsageErrors."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read config file {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise UsageError(
            f"config file {str(path)!r} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}); save it as UTF-8 TOML or JSON"
        ) from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"config file {str(path)!r} is malformed: {error}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"config file {str(path)!r} must hold a table of sections")
    return raw


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` to its parts; the value is read as a TOML literal, else kept as a string."""
    key, sep, value = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise UsageError(f"--set expects SECTION.PARAM=VALUE, got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return section, name, parsed


def merge_raw(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers override earlier ones; a new component ``name`` drops the old component's parameters."""
    merged: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULTS)
    for layer in layers:
        for section, values in layer.items():
            if section not in SECTIONS:
                raise UsageError(f"unknown config section {section!r}; valid sections: {', '.join(SECTIONS)}")
            if not isinstance(values, Mapping):
                raise UsageError(f"config section {section!r} must be a table, got {values!r}")
            target = merged[section]
            if section == CALLBACKS:
                for name, params in values.items():
                    if not isinstance(params, Mapping):
                        raise UsageError(f"callback {name!r} must be a table of its parameters, got {params!r}")
                    target[name] = {**target.get(name, {}), **params}
                continue
            if "name" in values and values["name"] != target.get("name"):
                target.clear()
            target.update(values)
    return merged


def _choice(registry: Registry, kind: str, section: Mapping[str, Any]) -> ComponentChoice | None:
    values = dict(section)
    name = values.pop("name", None)
    if name is None or name == "none":
        if kind in OPTIONAL_KINDS and not values:
            return None
        raise UsageError(f"{kind}: no component named; choose one of: {', '.join(registry.names(kind))}")
    entry = registry.get(kind, str(name))
    return ComponentChoice(str(name), build_params(entry.cls.Params, values, f"{kind} {name!r}"))


def resolve(raw: Mapping[str, Any], registry: Registry) -> RunConfig:
    """Validate a merged raw config against the registry; every error names the parameter and constraint."""
    choices = {kind: _choice(registry, kind, raw.get(kind, {})) for kind in KINDS}
    config = RunConfig(
        **choices,
        model=build_params(ModelConfig, raw.get("model", {}), "model"),
        train=build_params(TrainConfig, raw.get("train", {}), "train"),
        eval=build_params(EvalConfig, raw.get("eval", {}), "eval"),
        callbacks=tuple(
            ComponentChoice(name, build_params(registry.get("callback", name).cls.Params, params, f"callback {name!r}"))
            for name, params in raw.get(CALLBACKS, {}).items()
        ),
    )
    check_test_prior(config.eval.test_prior)
    regularizer = registry.get("regularizer", config.regularizer.name).cls
    default_noise = registry.get("data", config.data.name).cls.default_noise
    if regularizer.needs_noise and config.noise is None and default_noise is not None:
        config = attrs.evolve(config, noise=_choice(registry, "noise", {"name": default_noise}))
    if regularizer.needs_noise and config.noise is None:
        raise UsageError(
            f"regularizer {config.regularizer.name!r} needs contrastive noise: choose --noise from "
            f"{', '.join(registry.names('noise')) or '(none registered)'}"
        )
    return config


def check_no_ignored_settings(config: RunConfig) -> None:
    """Refuse (UsageError) a new run's setting that its other choices would ignore: ``train.momentum`` with an
    optimiser other than sgd. Not part of :func:`resolve`, so that the runs recorded before stay readable."""
    if config.train.momentum and config.train.optimizer != "sgd":  # Adam keeps moments of its own, not this one
        raise UsageError(
            f"train.momentum {config.train.momentum} applies to train.optimizer 'sgd' only; with "
            f"{config.train.optimizer!r} it would be ignored: set train.optimizer=sgd, or leave train.momentum at 0"
        )
