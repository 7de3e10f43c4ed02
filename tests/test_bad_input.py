"""Property tests: no malformed command line or config file ends in a traceback; each is exit 2 and a message."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaezoo.cli.main import main
from vaezoo.config.run_config import SECTIONS

KNOWN_KEYS = ["name", "beta", "delta", "K", "hidden", "lambda", "kernel", "steps", "lr", "seed", "latent_dim",
              "batch_size", "sigma", "refresh_every", "dim", "n_train", "iw_samples", "test_prior", "device",
              "likelihood", "variance", "limit", "optimizer", "momentum", "free_bits", "warmup_steps"]  # fmt: skip
SECTION = st.sampled_from([*SECTIONS, "optimizer", "", "data.extra"])
KEY = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(string.ascii_letters + "_.", max_size=8))
VALUE_TEXT = st.one_of(
    st.sampled_from(["-1", "0", "1e9", "nan", "inf", "true", "[1, 2]", "{a = 1}", "'x'", "none", "", "1.5", "-0.0"]),
    st.integers(-10, 10).map(str),
    st.text(string.printable, max_size=12),
)
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=6)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def outcome(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("vaezoo: error: ") and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err


@PROPERTY
@given(overrides=st.lists(st.tuples(SECTION, KEY, VALUE_TEXT), min_size=1, max_size=3))
def test_any_set_override_is_accepted_or_refused_cleanly(overrides, capsys):
    argv = ["run", "--dry-run"]
    for section, key, value in overrides:
        argv += ["--set", f"{section}.{key}={value}"]
    assert_clean(*outcome(argv, capsys))


@PROPERTY
@given(raw=st.dictionaries(SECTION, st.dictionaries(KEY, JSON_VALUE, max_size=3) | JSON_VALUE, max_size=3))
def test_any_json_config_file_is_accepted_or_refused_cleanly(raw, tmp_path, capsys):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(raw))
    assert_clean(*outcome(["run", "--dry-run", "--config", str(path)], capsys))


@PROPERTY
@given(text=st.text(max_size=80))
def test_any_toml_text_is_accepted_or_refused_cleanly(text, tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert_clean(*outcome(["run", "--dry-run", "--config", str(path)], capsys))


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--dry-run", "--regularizer", "ncvae", "--noise", "gaussian", "--set", "noise.sigma=-1"],
        ["run", "--dry-run", "--set", "data.dim=0"],
        ["run", "--dry-run", "--set", "encoder.hidden=a,b"],
        ["run", "--dry-run", "--set", "eval.test_prior=-2"],
        ["run", "--dry-run", "--set", "train.optimizer=lbfgs"],
        ["run", "--dry-run", "--set", "train.momentum=1"],
    ],
)
def test_examples_of_bad_values_name_the_parameter(argv, capsys):
    code, err = outcome(argv, capsys)
    assert code == 2 and "Traceback" not in err
    name = argv[-1].split("=")[0].split(".")[-1]
    assert name in err, err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--set", "train.optimizer=adamw"], "vaezoo: error: train: 'optimizer' must be one of adam, sgd: 'adamw'"),
        (["--set", "train.test_model=worst"], "vaezoo: error: train: 'test_model' must be one of last, best: 'worst'"),
        (
            ["--regularizer", "infovae", "--set", "regularizer.kernel=gauss"],
            "vaezoo: error: regularizer 'infovae': 'kernel' must be one of rbf, imq: 'gauss'",
        ),
    ],
)
def test_a_value_that_is_not_a_choice_is_named_with_every_choice(argv, expected, capsys):
    code, err = outcome(["run", "--dry-run", *argv], capsys)
    assert code == 2 and err.strip() == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lsit"], "vaezoo: error: argument COMMAND: invalid choice: 'lsit' (choose from 'run', 'list', 'eval'"),
        (["run", "--steps", "abc"], "vaezoo run: error: argument --steps: invalid int value: 'abc'"),
        (["list", "--kinds"], "vaezoo: error: unrecognized arguments: --kinds"),
    ],
)
def test_a_malformed_command_line_is_one_line_without_the_usage_block(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith(expected) and len(err.strip().splitlines()) == 1, err


def test_an_unknown_kind_to_list_is_named_with_every_kind_plugins_registered(capsys):
    code, err = outcome(["list", "regulariser"], capsys)
    kinds = (
        "data, encoder, decoder, prior, regularizer, noise, transform, strategy, callback, metric, executor, model, "
        "train, eval"
    )
    assert code == 2 and err.strip() == f"vaezoo: error: unknown kind 'regulariser'; choose one of: {kinds}"
