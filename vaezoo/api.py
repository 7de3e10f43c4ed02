"""The public API of vaezoo: everything plugins, the benchmark runner and users' scripts may import.

Import from here, never from the modules behind it, which are free to move::

    from vaezoo.api import DataSpec, Encoder, UsageError, hookimpl, param

A name is resolved when it is first imported, and only the module that defines it is loaded: importing the light
names (``UsageError``, ``param``, ``Parser``) does not load torch, so a command's ``--help`` stays fast.
The names, by purpose, are listed in docs/plugins.md ("The public API").
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module that defines it. Resolved lazily (PEP 562) rather than imported here, so that the
# light half of the API does not pull in torch with the heavy half; no library offers this in a dozen lines.
_WHERE: dict[str, str] = {
    # extending: the hook marker, parameters and errors
    "hookimpl": "vaezoo.plugins.hookspecs",
    "param": "vaezoo.base.params",
    "UsageError": "vaezoo.base.errors",
    # the component interfaces
    "Callback": "vaezoo.training.callbacks",
    "Data": "vaezoo.components.interfaces",
    "DataSource": "vaezoo.components.interfaces",
    "DataSpec": "vaezoo.components.interfaces",
    "Decoder": "vaezoo.components.interfaces",
    "Encoder": "vaezoo.components.interfaces",
    "NoiseSampler": "vaezoo.components.interfaces",
    "PosteriorTransform": "vaezoo.components.interfaces",
    "Prior": "vaezoo.components.interfaces",
    "Regularizer": "vaezoo.components.interfaces",
    "SourceRecord": "vaezoo.components.interfaces",
    "Step": "vaezoo.components.interfaces",
    "TrainedData": "vaezoo.components.interfaces",
    "evaluation_rows": "vaezoo.components.interfaces",
    "TestPrior": "vaezoo.evaluation.priors",
    # maths shared by components
    "UNCHECKED": "vaezoo.components.distributions",
    "diagonal_normal": "vaezoo.components.distributions",
    "diagonal_normal_from": "vaezoo.components.distributions",
    "isotropic_normal": "vaezoo.components.distributions",
    "kl_or_estimate": "vaezoo.components.distributions",
    "KERNELS": "vaezoo.components.divergences",
    "discriminator_jsd": "vaezoo.components.divergences",
    "mmd": "vaezoo.components.divergences",
    "autocast": "vaezoo.components.precision",
    "adam": "vaezoo.components.optim",
    "is_diagonal_normal": "vaezoo.components.distributions",
    # metrics: the interface, and what the evaluation pass offers them
    "Metric": "vaezoo.components.metric",
    "BatchView": "vaezoo.components.metric",
    "ElboTotals": "vaezoo.components.metric",
    "EvaluationSetting": "vaezoo.components.metric",
    "ELBO_TERMS": "vaezoo.components.metric",
    "READS": "vaezoo.components.metric",
    "evaluate": "vaezoo.evaluation.evaluation_pass",
    "evaluate_priors": "vaezoo.evaluation.evaluation_pass",
    "importance_weighted_log_likelihood": "vaezoo.evaluation.evaluation_pass",
    "predicted_tokens": "vaezoo.evaluation.evaluation_pass",
    "evaluation_metrics": "vaezoo.evaluation.evaluate",
    "evaluation_rng": "vaezoo.evaluation.evaluate",
    "metric_catalogue": "vaezoo.evaluation.evaluate",
    "validation_metrics": "vaezoo.evaluation.evaluate",
    "registered_metrics": "vaezoo.runs.session",
    "check_test_prior": "vaezoo.config.prior_setting",
    "resolve_test_prior": "vaezoo.evaluation.priors",
    "latent_scatter": "vaezoo.evaluation.figures",
    # plugins and the registry
    "PluginFailure": "vaezoo.plugins.loading",
    "default_plugins": "vaezoo.plugins.loading",
    "Plugins": "vaezoo.plugins.loading",
    "Component": "vaezoo.plugins.component",
    "load_plugins": "vaezoo.plugins.loading",
    "Registry": "vaezoo.plugins.registry",
    # configuration and models
    "RunConfig": "vaezoo.config.run_config",
    "SECTIONS": "vaezoo.config.run_config",
    "TrainConfig": "vaezoo.config.run_config",
    "check_no_ignored_settings": "vaezoo.config.run_config",
    "merge_raw": "vaezoo.config.run_config",
    "resolve": "vaezoo.config.run_config",
    "VAE": "vaezoo.model.assembly",
    "build_model": "vaezoo.model.assembly",
    "build_model_for_data": "vaezoo.model.assembly",
    "TransformedEncoder": "vaezoo.model.assembly",
    # runs: sessions, run directories and their files
    "Session": "vaezoo.runs.session",
    "configure_cpu": "vaezoo.runs.session",
    "load_trained": "vaezoo.runs.session",
    "resolve_data_dir": "vaezoo.runs.session",
    "subnormals_flushed": "vaezoo.runs.session",
    "RunDirectory": "vaezoo.runs.directory",
    "CONFIG_NAME": "vaezoo.runs.directory",
    "LOCK_NAME": "vaezoo.runs.directory",
    "METRICS_NAME": "vaezoo.runs.directory",
    "RESULTS_NAME": "vaezoo.runs.directory",
    "SCATTER_NAME": "vaezoo.runs.directory",
    "process_gone": "vaezoo.base.locks",
    "process_text": "vaezoo.base.locks",
    "read_json_lines": "vaezoo.runs.directory",
    "CHECKPOINT_NAME": "vaezoo.runs.checkpoint",
    "STOP_WITH_PARENT_ENV": "vaezoo.runs.interrupts",
    "shape_problem": "vaezoo.base.schema",
    # training strategies: the interface and the building blocks of an update rule
    "TrainingStrategy": "vaezoo.training.strategy",
    "TrainingBatch": "vaezoo.training.strategy",
    "build_strategy": "vaezoo.training.strategy",
    "NonFiniteLoss": "vaezoo.training.step",
    "checked_forward": "vaezoo.training.step",
    "descend": "vaezoo.training.step",
    "make_optimizer": "vaezoo.training.step",
    # the parts of training that speed benchmarks time one by one
    "TrainingStep": "vaezoo.training.step",
    "Context": "vaezoo.training.distributed",
    "RunHooks": "vaezoo.training.callbacks",
    "BestSoFar": "vaezoo.training.best",
    # command-line tools
    "Parser": "vaezoo.base.args",
    "quiet_when_output_closes": "vaezoo.base.args",
    "warn_once": "vaezoo.base.args",
    # files, tables and timestamps
    "write_bytes_atomically": "vaezoo.base.files",
    "write_json_atomically": "vaezoo.base.files",
    "write_text_atomically": "vaezoo.base.files",
    "markdown_table": "vaezoo.base.tables",
    "local_timestamp": "vaezoo.base.timestamps",
    "held": "vaezoo.base.locks",
    # reading data files (docs/data-plugins.md): file handling and its errors, files named or found, splits
    "DataFile": "vaezoo.datafiles.files",
    "gunzipped": "vaezoo.datafiles.files",
    "parsing": "vaezoo.datafiles.files",
    "read_bytes": "vaezoo.datafiles.files",
    "require": "vaezoo.datafiles.files",
    "CHOSEN_BY_AUTO": "vaezoo.datafiles.locations",
    "auto_note": "vaezoo.datafiles.locations",
    "file_param": "vaezoo.datafiles.locations",
    "first_present": "vaezoo.datafiles.locations",
    "given_path": "vaezoo.datafiles.locations",
    "present": "vaezoo.datafiles.locations",
    "unused_note": "vaezoo.datafiles.locations",
    "SPLITS": "vaezoo.datafiles.splits",
    "Rows": "vaezoo.datafiles.splits",
    "hold_out_last": "vaezoo.datafiles.splits",
    "limited": "vaezoo.datafiles.splits",
    "part_selection": "vaezoo.datafiles.splits",
    "random_parts": "vaezoo.datafiles.splits",
    "share_parts": "vaezoo.datafiles.splits",
    "split_by_group": "vaezoo.datafiles.splits",
    # reading data files: the image formats, as grey levels 'n 1 28 28'
    "as_grey": "vaezoo.datafiles.grey_images",
    "CHARDATA": "vaezoo.datafiles.chardata",
    "read_chardata": "vaezoo.datafiles.chardata",
    "IDX_WHAT": "vaezoo.datafiles.idx",
    "idx_pixels": "vaezoo.datafiles.idx",
    "MNIST_CSV": "vaezoo.datafiles.mnist_csv",
    "csv_pixels": "vaezoo.datafiles.mnist_csv",
    "read_mnist_csv": "vaezoo.datafiles.mnist_csv",
    "MNIST_FILE_WHAT": "vaezoo.datafiles.mnist_files",
    "MNIST_IDX": "vaezoo.datafiles.mnist_files",
    "read_mnist_file": "vaezoo.datafiles.mnist_files",
    "OMNIGLOT_IMAGES": "vaezoo.datafiles.omniglot_images",
    "OMNIGLOT_IMAGES_WHAT": "vaezoo.datafiles.omniglot_images",
    "read_omniglot_images": "vaezoo.datafiles.omniglot_images",
    "OMNIGLOT_NPZ": "vaezoo.datafiles.omniglot_npz",
    "read_omniglot_npz": "vaezoo.datafiles.omniglot_npz",
    # reading data files: the text formats
    "DOCUMENTS_WHAT": "vaezoo.datafiles.documents",
    "decode_lines": "vaezoo.datafiles.documents",
    "read_documents": "vaezoo.datafiles.documents",
    "read_lines": "vaezoo.datafiles.documents",
    "user_file": "vaezoo.datafiles.documents",
    "Specials": "vaezoo.datafiles.vocabulary",
    "Vocabulary": "vaezoo.datafiles.vocabulary",
    "read_vocabulary": "vaezoo.datafiles.vocabulary",
    "train_vocabulary": "vaezoo.datafiles.vocabulary",
    "vocabulary_from_lines": "vaezoo.datafiles.vocabulary",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"vaezoo.api has no {name!r}; its names are listed in vaezoo.api.__all__") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return __all__
