"""``vaezoo run``: train a model, resume one, or check a configuration without training (``--dry-run``).

An interrupted run exits with 130 after saying how to resume; a diverged run ends with code 3 (see
:mod:`vaezoo.cli.main`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaezoo.base.errors import UsageError
from vaezoo.cli.output import format_metrics
from vaezoo.config.run_config import (
    CALLBACKS,
    RESUMABLE_SETTINGS,
    RunConfig,
    check_no_ignored_settings,
    config_changes,
    merge_raw,
    parse_override,
    read_config_file,
    resolve,
)
from vaezoo.plugins.component import KINDS
from vaezoo.plugins.loading import Plugins, default_plugins
from vaezoo.runs.directory import CONFIG_NAME, RunDirectory
from vaezoo.runs.interrupts import Interrupted

if TYPE_CHECKING:  # the command line imports torch only when a command needs it
    pass

HELP = "train a model (default: betavae on the synthetic task)"


RUN_FLAGS = {
    "data": ("data", "name"),
    "encoder": ("encoder", "name"),
    "decoder": ("decoder", "name"),
    "prior": ("prior", "name"),
    "regularizer": ("regularizer", "name"),
    "noise": ("noise", "name"),
    "transform": ("transform", "name"),
    "strategy": ("strategy", "name"),
    "steps": ("train", "steps"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "seed": ("train", "seed"),
    "device": ("train", "device"),
    "latent_dim": ("model", "latent_dim"),
    "test_prior": ("eval", "test_prior"),
}


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The command's options."""
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


def run(args: argparse.Namespace) -> int:
    """Train (or resume, or with ``--dry-run`` only check) the run the options describe, and print its test
    metrics."""
    from vaezoo.evaluation.evaluate import metric_catalogue
    from vaezoo.runs.session import resolve_device
    from vaezoo.training.distributed import process_group
    from vaezoo.training.trainer import Trainer

    plugins = default_plugins()
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
    print(format_metrics({"value": results["metrics"]}, metric_catalogue(trainer.session.metrics)))
    return 0
