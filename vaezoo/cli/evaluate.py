"""``vaezoo eval``: a run's metrics on one split under one or several test priors, optionally on other data of the
same form."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaezoo.base.errors import UsageError
from vaezoo.cli.output import format_metrics
from vaezoo.config.run_config import (
    RunConfig,
    config_changes,
    merge_raw,
    parse_override,
    resolve,
)
from vaezoo.plugins.loading import Plugins, default_plugins
from vaezoo.runs.directory import CONFIG_NAME, RunDirectory

if TYPE_CHECKING:  # the command line imports torch only when a command needs it
    from vaezoo.components.interfaces import TrainedData

HELP = "metrics of a run on its test split"


def add_arguments(ev: argparse.ArgumentParser) -> None:
    """The command's options."""
    ev.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    ev.add_argument(
        "--test-prior",
        default=None,
        help="trained, standard, optimal, tuned or a variance; several separated by commas are evaluated in one pass",
    )
    ev.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ev.add_argument("--iw-samples", type=int, help="importance samples for IW-NLL (default: the run's)")
    ev.add_argument("--data-dir", type=Path, help="data directory (default: $VAEZOO_DATA)")
    ev.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.PARAM=VALUE",
        help="override an evaluation setting (eval.PARAM=VALUE), or a data setting that chooses evaluation data only, "
        "e.g. data.test_file=PATH to evaluate on a test file (the data's parameter help says which)",
    )
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ev.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _eval_overrides(args: argparse.Namespace, data_source: type) -> dict[str, dict[str, Any]]:
    """``vaezoo eval``'s ``--set`` as a raw config layer: evaluation settings, and the data settings that the run's
    ``data_source`` lists in ``evaluation_params`` (they choose evaluation data, never the model's input)."""
    allowed = getattr(data_source, "evaluation_params", ())
    overrides: dict[str, dict[str, Any]] = {"train": {"progress": False}, "eval": {}}
    for text in args.set:
        section, key, value = parse_override(text)
        if section == "data" and key in allowed:
            overrides.setdefault("data", {})[key] = value
        elif section != "eval":
            data_settings = ", ".join(f"data.{name}" for name in allowed) or "none"
            raise UsageError(
                f"vaezoo eval changes evaluation settings only (--set eval.PARAM=VALUE), and of the data settings "
                f"only those that choose evaluation data (for data {data_source.name!r}: {data_settings}), got {text!r}"
            )
        else:
            overrides["eval"][key] = value
    return overrides


def _model_input(data: Any) -> tuple[Any, tuple[str, ...] | None]:
    """What a trained model's input space depends on: the data's spec and, for token data, the vocabulary."""
    vocabulary = getattr(data, "vocabulary", None)
    return data.spec, None if vocabulary is None else tuple(vocabulary.tokens)


def _check_same_model_input(
    config: RunConfig, changed: RunConfig, plugins: Plugins, data_dir: Path | None, trained: TrainedData
) -> None:
    """Refuse data settings ``changed`` from the run's ``config`` that give the model another input space (data
    shape or kind, vocabulary), by loading the data under both as the run's data (``trained``); a UsageError
    names the difference."""
    from vaezoo.runs.session import data_source

    settings = ", ".join(f"{key}={new!r}" for key, (_, new) in config_changes(config, changed).items())
    if not settings:
        return
    inputs = []
    with contextlib.redirect_stderr(io.StringIO()):  # notes on the data's files are printed when the run loads it
        for chosen in (config, changed):
            source = data_source(chosen, plugins.registry, trained)
            inputs.append(_model_input(source.load(data_dir, chosen.train.seed)))
    (spec, tokens), (new_spec, new_tokens) = inputs
    if tokens != new_tokens and tokens is not None and new_tokens is not None:
        at = next((i for i, pair in enumerate(zip(tokens, new_tokens, strict=False)) if pair[0] != pair[1]), None)
        where = f"first difference at id {at}: {tokens[at]!r} -> {new_tokens[at]!r}" if at is not None else ""
        difference = f"the vocabulary ({len(tokens)} -> {len(new_tokens)} tokens{'; ' if where else ''}{where})"
    elif spec != new_spec:
        difference = f"the data's form ({spec} -> {new_spec})"
    else:
        return
    raise UsageError(
        f"{settings} would change the model's input: {difference}, which the trained model cannot read; vaezoo eval "
        "takes only data settings that keep it (e.g. a test file of the same corpus)"
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate a run's tested model (its latest checkpoint, or best.pt with ``train.test_model = "best"``) on one
    split under one or several test priors; ``--set data.PARAM`` (the data source's ``evaluation_params``, e.g.
    ``data.test_file``) evaluates on other data of the same form."""
    from vaezoo.config.prior_setting import check_test_prior
    from vaezoo.evaluation.evaluate import evaluate_split_priors, metric_catalogue
    from vaezoo.runs.session import load_trained, resolve_data_dir, trained_data

    plugins = default_plugins()
    choices = None
    if args.test_prior is not None:
        choices = list(dict.fromkeys(check_test_prior(c.strip()) for c in args.test_prior.split(",")))
    if args.iw_samples is not None and args.iw_samples < 0:
        raise UsageError(f"--iw-samples must be >= 0, got {args.iw_samples}")
    directory = RunDirectory(args.run_dir)
    directory.check_usable()
    if not directory.file(CONFIG_NAME).is_file():
        raise UsageError(f"{str(args.run_dir)!r} is not a run directory (no {CONFIG_NAME})")
    data_dir = resolve_data_dir(args.data_dir, directory.recorded_data_dir())
    config = directory.current_config(plugins.registry)
    overrides = _eval_overrides(args, plugins.registry.get("data", config.data.name).cls)
    with directory.locked("evaluating"):
        if overrides.get("data"):
            changed = resolve(merge_raw(directory.current_raw(), {"data": overrides["data"]}), plugins.registry)
            _check_same_model_input(config, changed, plugins, data_dir, trained_data(directory, plugins.registry))
        session = load_trained(args.run_dir, plugins.registry, data_dir, overrides)
        for line in session.data.source_lines():
            print(f"vaezoo: {line}", file=sys.stderr)
        choices = choices or [session.config.eval.test_prior]
        iw_samples = args.iw_samples if args.iw_samples is not None else session.config.eval.iw_samples
        evaluated = evaluate_split_priors(session, args.split, choices, iw_samples, progress=not args.no_progress)
    if args.json:  # one line per test prior
        for choice, metrics in evaluated.items():
            print(json.dumps({"split": args.split, "test_prior": choice, **metrics}))
    else:
        record = session.data.sources.get(args.split)
        origin = f" ({record['examples']} examples from '{record['file']}')" if record else ""
        print(f"{args.split} split{origin} of {args.run_dir}, by test prior:")
        print(format_metrics(evaluated, metric_catalogue(session.metrics)))
    return 0
