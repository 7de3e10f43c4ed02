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
    "hookimpl": "vaezoo.hookspecs",
    "param": "vaezoo.params",
    "UsageError": "vaezoo.errors",
    # the component interfaces
    "Callback": "vaezoo.interfaces",
    "Data": "vaezoo.interfaces",
    "DataSource": "vaezoo.interfaces",
    "DataSpec": "vaezoo.interfaces",
    "Decoder": "vaezoo.interfaces",
    "Encoder": "vaezoo.interfaces",
    "NoiseSampler": "vaezoo.interfaces",
    "Prior": "vaezoo.interfaces",
    "Regularizer": "vaezoo.interfaces",
    "SourceRecord": "vaezoo.interfaces",
    "Step": "vaezoo.interfaces",
    "TrainedData": "vaezoo.interfaces",
    "evaluation_rows": "vaezoo.interfaces",
    "TestPrior": "vaezoo.test_priors",
    # maths shared by components
    "UNCHECKED": "vaezoo.distributions",
    "diagonal_normal": "vaezoo.distributions",
    "diagonal_normal_from": "vaezoo.distributions",
    "isotropic_normal": "vaezoo.distributions",
    "kl_or_estimate": "vaezoo.distributions",
    "KERNELS": "vaezoo.divergences",
    "discriminator_jsd": "vaezoo.divergences",
    "mmd": "vaezoo.divergences",
    "autocast": "vaezoo.precision",
    "adam": "vaezoo.optim",
    # metrics
    "METRIC_NAMES": "vaezoo.metric_names",
    "REPORTED_WHEN": "vaezoo.metric_names",
    "active_units": "vaezoo.metrics",
    "code_separability": "vaezoo.metrics",
    "he_groups": "vaezoo.metrics",
    "importance_weighted_log_likelihood": "vaezoo.metrics",
    "mutual_information": "vaezoo.metrics",
    "mutual_information_he": "vaezoo.metrics",
    "predicted_tokens": "vaezoo.metrics",
    "evaluation_metrics": "vaezoo.evaluation",
    "evaluation_rng": "vaezoo.evaluation",
    "finish_metrics": "vaezoo.evaluation",
    "validation_metrics": "vaezoo.evaluation",
    "check_test_prior": "vaezoo.test_prior_names",
    "resolve_test_prior": "vaezoo.test_priors",
    "latent_scatter": "vaezoo.figures",
    # plugins and the registry
    "PluginFailure": "vaezoo.plugins",
    "default_plugins": "vaezoo.plugins",
    "load_group": "vaezoo.plugins",
    "load_plugins": "vaezoo.plugins",
    "Registry": "vaezoo.registry",
    # configuration and models
    "RunConfig": "vaezoo.config",
    "SECTIONS": "vaezoo.config",
    "TrainConfig": "vaezoo.config",
    "check_no_ignored_settings": "vaezoo.config",
    "merge_raw": "vaezoo.config",
    "resolve": "vaezoo.config",
    "VAE": "vaezoo.model",
    "build_model": "vaezoo.model",
    "build_model_for_data": "vaezoo.model",
    # runs: sessions, run directories and their files
    "Session": "vaezoo.session",
    "configure_cpu": "vaezoo.session",
    "load_trained": "vaezoo.session",
    "resolve_data_dir": "vaezoo.session",
    "subnormals_flushed": "vaezoo.session",
    "RunDirectory": "vaezoo.rundir",
    "CONFIG_NAME": "vaezoo.rundir",
    "LOCK_NAME": "vaezoo.rundir",
    "METRICS_NAME": "vaezoo.rundir",
    "RESULTS_NAME": "vaezoo.rundir",
    "SCATTER_NAME": "vaezoo.rundir",
    "process_gone": "vaezoo.rundir",
    "process_text": "vaezoo.rundir",
    "read_json_lines": "vaezoo.rundir",
    "CHECKPOINT_NAME": "vaezoo.checkpoint",
    "STOP_WITH_PARENT_ENV": "vaezoo.interrupts",
    "shape_problem": "vaezoo.schema",
    # the parts of training that speed benchmarks time one by one
    "TrainingStep": "vaezoo.step",
    "Context": "vaezoo.distributed",
    "RunHooks": "vaezoo.callbacks",
    "BestSoFar": "vaezoo.best",
    # command-line tools
    "Parser": "vaezoo.args",
    "quiet_when_output_closes": "vaezoo.args",
    "warn_once": "vaezoo.args",
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
