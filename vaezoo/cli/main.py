"""The ``vaezoo`` command: run, list, eval.

User mistakes (unknown names, bad values, missing files) print one line and exit with code 2; a diverged run
exits with code 3; an interrupted run exits with 130 after saying how to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaezoo.base.args import Parser, quiet_when_output_closes
from vaezoo.base.errors import TrainingDiverged, UsageError
from vaezoo.base.params import describe_params
from vaezoo.config.run_config import (
    CALLBACKS,
    CORE_SECTIONS,
    RESUMABLE_SETTINGS,
    RunConfig,
    check_no_ignored_settings,
    config_changes,
    core_settings_class,
    merge_raw,
    parse_override,
    read_config_file,
    resolve,
)
from vaezoo.evaluation.metric_names import METRIC_LEGEND, METRIC_NAMES
from vaezoo.plugins.component import ALL_KINDS, KINDS
from vaezoo.plugins.loading import Command, PluginFailure, Plugins, default_plugins, load_commands
from vaezoo.runs.directory import CONFIG_NAME, RunDirectory
from vaezoo.runs.interrupts import Interrupted, StopSignals, stop_with_launcher

if TYPE_CHECKING:  # the command line imports torch only when a command needs it
    from vaezoo.components.interfaces import TrainedData

EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130

# flag -> (config section, key)
RUN_FLAGS = {
    "data": ("data", "name"),
    "encoder": ("encoder", "name"),
    "decoder": ("decoder", "name"),
    "prior": ("prior", "name"),
    "regularizer": ("regularizer", "name"),
    "noise": ("noise", "name"),
    "steps": ("train", "steps"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "seed": ("train", "seed"),
    "device": ("train", "device"),
    "latent_dim": ("model", "latent_dim"),
    "test_prior": ("eval", "test_prior"),
}


def _parser(plugin_commands: Sequence[Command] = ()) -> argparse.ArgumentParser:
    """The command line: the core commands and, after them, the commands plugins add."""
    parser = Parser(prog="vaezoo", description="A plugin-based zoo of variational autoencoders.")  # subparsers too
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(commands.add_parser("run", help="train a model (default: betavae on the synthetic task)"))
    listing = commands.add_parser("list", help="registered components, their plugins and parameters")
    listing.add_argument("kind", nargs="?", choices=(*ALL_KINDS, *CORE_SECTIONS))
    _add_eval(commands.add_parser("eval", help="metrics of a run on its test split"))
    _add_sample(commands.add_parser("sample", help="PNG grids of prior samples and test reconstructions of a run"))
    for command in plugin_commands:
        command.module.add_arguments(commands.add_parser(command.name, help=command.module.HELP))
    return parser


def _add_run(run: argparse.ArgumentParser) -> None:
    run.add_argument("--config", type=Path, help="TOML or JSON config file")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.PARAM=VALUE", help="override a value")
    for kind in KINDS:
        run.add_argument(f"--{kind}", metavar="NAME", help=f"{kind} component (see 'vaezoo list {kind}')")
    run.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="NAME",
        help="add a callback (a logger, a KL schedule, early stopping; repeatable; see 'vaezoo list callback'); "
        "its parameters are set with --set callbacks.NAME.PARAM=VALUE",
    )
    run.add_argument("--steps", type=int, help="optimiser steps")
    run.add_argument("--epochs", type=int, help="passes over the training split (instead of --steps)")
    run.add_argument("--batch-size", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument("--device", help="cpu, cuda or cuda:N")
    run.add_argument("--latent-dim", type=int)
    run.add_argument("--test-prior", help="trained (default), standard, optimal, tuned or a variance")
    run.add_argument("--out", type=Path, help="run directory (default: a new runs/DATA-REGULARIZER-sSEED[-N])")
    run.add_argument("--overwrite", action="store_true", help="replace the run files of a non-empty --out directory")
    run.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="continue the run in DIR from its checkpoint (only its length, device, threads and evaluation may change)",
    )
    run.add_argument("--data-dir", type=Path, help="data directory (default: $VAEZOO_DATA)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.add_argument(
        "--dry-run", action="store_true", help="validate everything (config, data, model) and print the config"
    )


def _add_eval(ev: argparse.ArgumentParser) -> None:
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


def _add_sample(sample: argparse.ArgumentParser) -> None:
    sample.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    sample.add_argument("--count", type=int, default=64, help="prior samples (and half as many reconstructions)")
    sample.add_argument("--out", type=Path, help="directory for the PNG or text files (default: RUN_DIR)")
    sample.add_argument("--temperature", type=float, help="text: softmax temperature of ancestral sampling")
    sample.add_argument("--greedy", action="store_true", default=None, help="text: greedy decoding")
    sample.add_argument("--data-dir", type=Path, help="data directory (default: $VAEZOO_DATA)")


def _report_failures(failures: Sequence[PluginFailure]) -> None:
    for failure in failures:
        print(f"vaezoo: warning: {failure.origin} failed and is left out: {failure.error}", file=sys.stderr)


def format_metrics(columns: dict[str, dict[str, Any]]) -> str:
    """A table of metrics, one row per metric in a fixed order and one column per entry of ``columns`` (e.g.
    ``{"value": metrics}``, or one per test prior), with its unit in the header and a legend line below."""
    names = [n for n in METRIC_NAMES if any(n in m for m in columns.values())]
    names += sorted({n for m in columns.values() for n in m} - set(METRIC_NAMES))
    title = "metric (nats per example)"
    width = max(len(n) for n in [*names, title])
    headers = [f"{title:<10}" for title in columns]
    lines = [
        "  ".join([f"{title:<{width}}", *headers]).rstrip(),
        "  ".join(["-" * width, *["-" * len(h) for h in headers]]),
    ]
    for name in names:
        cells = []
        for title, metrics in columns.items():
            value = metrics.get(name)
            text = "" if value is None else f"{value:d}" if isinstance(value, int) else f"{value:.4f}"
            cells.append(f"{text:<{max(10, len(title))}}")
        lines.append("  ".join([f"{name:<{width}}", *cells]).rstrip())
    lines.append("; ".join(METRIC_LEGEND[name] for name in names if name in METRIC_LEGEND))
    return "\n".join(lines)


def _raw_from_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    if getattr(args, "steps", None) is not None and getattr(args, "epochs", None) is not None:
        raise UsageError(f"--steps {args.steps} and --epochs {args.epochs} both set the run's length; give one")
    raw: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in RUN_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            raw.setdefault(section, {})[key] = value
    if getattr(args, "no_progress", False):
        raw.setdefault("train", {})["progress"] = False
    for name in args.callback:
        raw.setdefault(CALLBACKS, {}).setdefault(name, {})
    for text in args.set:
        section, key, value = parse_override(text)
        if section == CALLBACKS:
            name, dot, param = key.partition(".")
            if not dot or not name or not param:
                raise UsageError(f"--set for a callback expects callbacks.NAME.PARAM=VALUE, got {text!r}")
            raw.setdefault(CALLBACKS, {}).setdefault(name, {})[param] = value
        else:
            raw.setdefault(section, {})[key] = value
    train = raw.get("train", {})
    if "steps" in train and "epochs" not in train:
        train["epochs"] = None  # a length in steps replaces one in epochs from a file or the resumed run
    return raw


def _fresh_run_dir(config) -> Path:
    """runs/DATA-REGULARIZER-sSEED, with -2, -3, ... appended while that directory exists and is not empty."""
    base = Path("runs") / f"{config.data.name}-{config.regularizer.name}-s{config.train.seed}"
    candidate, number = base, 1
    while RunDirectory(candidate).foreign_entries():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def _resume_config(directory: RunDirectory, flags: dict[str, Any], plugins: Plugins):
    """The configuration a resume continues with and the settings it changes; changing anything but the run's
    length, device, threads or evaluation is a UsageError naming each difference."""
    directory.check_resumable()
    before = directory.current_config(plugins.registry)
    after = resolve(merge_raw(directory.current_raw(), flags), plugins.registry)
    changes = config_changes(before, after)
    refused = {key: change for key, change in changes.items() if not _resumable(key, plugins)}
    if refused:
        listed = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in refused.items())
        raise UsageError(
            f"--resume cannot change what the run learns: {listed}. A resume may change only "
            f"{', '.join(RESUMABLE_SETTINGS)} and loggers; start a new run from --config "
            f"{directory.file(CONFIG_NAME)} instead"
        )
    return after, changes


def _resumable(key: str, plugins: Plugins) -> bool:
    """Whether a resume may change setting ``key``: one of RESUMABLE_SETTINGS, or a callback that does not
    change what is trained (a logger)."""
    section, _, name = key.partition(".")
    if section == CALLBACKS:
        return not plugins.registry.get("callback", name).cls.changes_training
    return key in RESUMABLE_SETTINGS


def _note_unused_noise(config: RunConfig, plugins: Plugins) -> None:
    """Say so on stderr when the configuration names a noise sampler that its regulariser never draws from
    (a suite may cross noise with every regulariser, so this is a note, not an error)."""
    if config.noise is not None and not plugins.registry.get("regularizer", config.regularizer.name).cls.needs_noise:
        print(
            f"vaezoo: note: regularizer {config.regularizer.name!r} uses no contrastive noise; "
            f"noise {config.noise.name!r} is not used",
            file=sys.stderr,
        )


def _check_resume_length(
    directory: RunDirectory, config: RunConfig, total: int, changes: dict[str, list[Any]], plugins: Plugins
) -> None:
    """Refuse, before anything is written, a resume whose length ``total`` (steps, from --steps or --epochs) would
    contradict what the run has done: fewer steps than its checkpoint's (results.json and the settings in force
    would disagree), or a length this resume ``changes`` to train on past the step where a callback stopped it
    early (it would stop again at its next validation and rewrite its results, so an early-stopped run is extended
    only by a new run). A resume that leaves the length alone finishes an early-stopped run where it stopped (the
    trainer only evaluates it: after an interrupted final evaluation, say)."""
    from vaezoo.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint

    step = int(load_checkpoint(directory.file(CHECKPOINT_NAME))["step"])
    path = str(directory.path)
    if total < step:
        asked = f"train.epochs {config.train.epochs} ({total} steps)" if config.train.epochs else f"{total} steps"
        raise UsageError(
            f"--resume cannot shorten run {path!r}: its checkpoint is at step {step} and the length asked is {asked}; "
            f"ask for at least {step} steps, or evaluate the run as it is with vaezoo eval {path}"
        )
    lengthened = any(key in changes for key in ("train.steps", "train.epochs"))
    if lengthened and total > step and directory.stopped_early_at(step):
        stoppers = [c.name for c in config.callbacks if plugins.registry.get("callback", c.name).cls.changes_training]
        raise UsageError(
            f"run {path!r} was stopped early at step {step} by its callbacks ({', '.join(stoppers)}); resuming it "
            f"would train on, stop again at its next validation and rewrite its results. Finish it where it stopped "
            f"with --resume {path} and no new length (or evaluate it with vaezoo eval {path}); to train longer, "
            f"start a new run: vaezoo run --config {directory.file(CONFIG_NAME)} --out NEW_DIR with a larger patience "
            f"(--set callbacks.early_stop.patience=N)"
        )


def _resume_command(directory: RunDirectory, data_dir: Path | None) -> str:
    words = ["vaezoo", "run", "--resume", str(directory.path)]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    return shlex.join(words)


def _run_target(
    args: argparse.Namespace, plugins: Plugins
) -> tuple[RunConfig, dict[str, list[Any]], RunDirectory, Path | None]:
    """What ``vaezoo run`` trains: its configuration, the settings a resume changes, its run directory and its data
    directory, checked as far as they can be without the data (nothing is written)."""
    from vaezoo.runs.session import resolve_data_dir

    flags = _raw_from_flags(args)
    if args.resume is not None:
        if args.out is not None or args.config is not None or args.overwrite:
            raise UsageError("--resume continues an existing run: it takes no --out, --config or --overwrite")
        directory = RunDirectory(args.resume)
        config, changes = _resume_config(directory, flags, plugins)
        return config, changes, directory, resolve_data_dir(args.data_dir, directory.recorded_data_dir())
    layers = [read_config_file(args.config)] if args.config is not None else []
    config = resolve(merge_raw(*layers, flags), plugins.registry)
    check_no_ignored_settings(config)
    _note_unused_noise(config, plugins)
    data_dir = resolve_data_dir(args.data_dir)
    directory = RunDirectory(args.out or _fresh_run_dir(config))
    directory.check_new(args.overwrite)
    return config, {}, directory, data_dir


def _dry_run(
    args: argparse.Namespace,
    config: RunConfig,
    changes: dict[str, list[Any]],
    directory: RunDirectory,
    data_dir: Path | None,
    plugins: Plugins,
) -> None:
    """``vaezoo run --dry-run``: load the data, build the model, make every check the run makes and print the
    configuration."""
    from vaezoo.training.trainer import open_checked_session, total_steps

    session, _ = open_checked_session(config, plugins.registry, data_dir)
    if args.resume is not None:
        _check_resume_length(directory, config, total_steps(config, session.data), changes, plugins)
    print(json.dumps(config.as_dict(), indent=2))


def _command_run(args: argparse.Namespace, plugins: Plugins) -> int:
    from vaezoo.runs.session import resolve_device
    from vaezoo.training.distributed import process_group
    from vaezoo.training.trainer import Trainer

    config, changes, directory, data_dir = _run_target(args, plugins)
    device = resolve_device(config.train.device)
    if args.dry_run:
        _dry_run(args, config, changes, directory, data_dir, plugins)
        return 0
    trainer = None
    with process_group(device) as context:
        try:
            trainer = Trainer(config, plugins.registry, directory.path, data_dir, context)
            if args.resume is not None:
                _check_resume_length(directory, config, trainer.total_steps, changes, plugins)
            results = trainer.run(resume=args.resume is not None, overwrite=args.overwrite, changes=changes)
        except Interrupted as stop:
            if trainer is None or trainer.progress.saved_step is None:
                print(f"\nvaezoo: interrupted by {stop}; nothing was trained", file=sys.stderr)
            else:
                print(
                    f"\nvaezoo: interrupted by {stop}; the checkpoint of step {trainer.progress.saved_step} is kept in "
                    f"{str(directory.path)!r}; continue with: {_resume_command(directory, data_dir)}",
                    file=sys.stderr,
                )
            return stop.exit_code
    if not context.is_main:
        return 0
    print(f"run directory: {directory}")
    tested = results.get("tested_step", results["steps"])
    model = f", of the best model (step {tested}, train.test_model = best)" if tested != results["steps"] else ""
    print(f"test metrics after {results['steps']} steps ({results['wall_time_s']:.1f} s of training){model}:")
    print(format_metrics({"value": results["metrics"]}))
    return 0


def _print_params(params_class: type) -> None:
    for param_name, type_name, default, help_text in describe_params(params_class):
        print(f"      {param_name} ({type_name}, default {default!r}): {help_text}")


def _command_list(args: argparse.Namespace, plugins: Plugins) -> int:
    for kind in [args.kind] if args.kind else [*ALL_KINDS, *CORE_SECTIONS]:
        print(f"{kind}:")
        if kind in CORE_SECTIONS:
            print(f"  core settings, set with --set {kind}.PARAM=VALUE or a [{kind}] table in --config")
            _print_params(core_settings_class(kind))
            continue
        entries = plugins.registry.entries(kind)
        if not entries:
            print("  (none registered)")
        for name, entry in entries.items():
            description = getattr(entry.cls, "description", "")
            print(f"  {name:<14} {description}  [{entry.origin}]")
            _print_params(entry.cls.Params)
    if plugins.disabled:
        print(f"disabled plugins: {', '.join(plugins.disabled)}")
    for failure in plugins.failures:
        print(f"failed plugin: {failure.origin}: {failure.error}")
    return 0


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


def _command_eval(args: argparse.Namespace, plugins: Plugins) -> int:
    """Evaluate a run's tested model (its latest checkpoint, or best.pt with ``train.test_model = "best"``) on one
    split under one or several test priors; ``--set data.PARAM`` (the data source's ``evaluation_params``, e.g.
    ``data.test_file``) evaluates on other data of the same form."""
    from vaezoo.config.prior_setting import check_test_prior
    from vaezoo.evaluation.evaluate import evaluate_split_priors
    from vaezoo.runs.session import load_trained, resolve_data_dir, trained_data

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
        print(format_metrics(evaluated))
    return 0


def _command_sample(args: argparse.Namespace, plugins: Plugins) -> int:
    from vaezoo.evaluation.sampling import write_sample_grids, write_text_samples
    from vaezoo.runs.session import load_trained, resolve_data_dir

    if args.count < 2:
        raise UsageError(f"--count must be at least 2, got {args.count}")
    if args.temperature is not None and not args.temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    directory = RunDirectory(args.run_dir)
    directory.check_usable()
    data_dir = resolve_data_dir(args.data_dir, directory.recorded_data_dir())
    with directory.locked("sampling"):
        session = load_trained(args.run_dir, plugins.registry, data_dir, {"train": {"progress": False}})
        out_dir = args.out or args.run_dir
        if session.data.spec.kind == "tokens":
            text, path = write_text_samples(session, out_dir, args.count, args.temperature, args.greedy)
            print(f"{text}{path}")
            return 0
        if args.temperature is not None or args.greedy:
            raise UsageError("--temperature and --greedy apply to text (token data) only")
        for path in write_sample_grids(session, out_dir, args.count):
            print(path)
    return 0


COMMANDS = {
    "run": _command_run,
    "list": _command_list,
    "eval": _command_eval,
    "sample": _command_sample,
}


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None) -> int:
    plugin_commands, command_failures = load_commands(taken=tuple(COMMANDS))
    parser = _parser(plugin_commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    plugins = default_plugins()
    _report_failures([*plugins.failures, *command_failures])
    added = {command.name: command.module.run for command in plugin_commands}
    try:
        with StopSignals():  # SIGTERM, like Ctrl-C, ends a command with a message instead of a silent kill
            stop_with_launcher()
            if args.command in added:
                return added[args.command](args)
            return COMMANDS[args.command](args, plugins)
    except Interrupted as stop:
        print(f"\nvaezoo: interrupted by {stop}", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("\nvaezoo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as error:
        print(f"vaezoo: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingDiverged as error:
        print(f"vaezoo: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())
