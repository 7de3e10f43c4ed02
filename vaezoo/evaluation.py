"""Evaluating a session's model on a split: metrics under one or several test priors, and test codes.

Evaluation runs under its own RNG seeded from the run seed (:func:`evaluation_rng`), so evaluating never
perturbs training and the same model always gets the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from tqdm import tqdm

from vaezoo.distributions import refuses_invalid_parameters
from vaezoo.errors import TrainingDiverged
from vaezoo.interfaces import evaluation_rows
from vaezoo.metrics import evaluate_priors
from vaezoo.precision import autocast
from vaezoo.session import Session, subnormals_flushed
from vaezoo.test_priors import resolve_test_prior


@contextmanager
def evaluation_rng(session: Session, salt: int = 0) -> Iterator[None]:
    """Run a block with its own seeded RNG and restore the training RNG afterwards."""
    devices = [session.device] if session.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(session.config.train.seed + 7919 * salt)
        yield


def evaluate_split(
    session: Session, split: str, test_prior: str, iw_samples: int, progress: bool = False
) -> dict[str, float]:
    """Metrics of ``split`` under the chosen test prior (its variance is reported as ``test_prior_variance``)."""
    return evaluate_split_priors(session, split, [test_prior], iw_samples, progress)[test_prior]


def evaluate_split_priors(
    session: Session, split: str, test_priors: Sequence[str], iw_samples: int, progress: bool = False
) -> dict[str, dict[str, float]]:
    """:func:`evaluate_split` under each of ``test_priors`` (choices such as ``tuned`` or ``2.5``), keyed by
    choice, in one pass: each choice's figures equal its evaluation alone (see ``evaluate_priors``).

    With ``progress``, a bar on stderr counts the examples evaluated (fractions of a batch as its importance
    samples are drawn) and estimates the time left."""
    model, cfg = session.model, session.config.eval
    was_training = model.training
    model.eval()
    size = session.evaluation_size(split)
    iw_mask = torch.zeros(size, dtype=torch.bool)
    iw_mask[evaluation_rows(size, cfg.iw_limit)] = True
    # The bar counts importance samples of IW-NLL's examples and the other examples once, shown as examples.
    work = int(iw_mask.sum()) * max(iw_samples, 1) + size - int(iw_mask.sum())
    bar = tqdm(
        total=work,
        unit="ex",
        unit_scale=size / work,
        desc=f"eval {split}",
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    try:
        train = session.config.train
        with (
            evaluation_rng(session),
            subnormals_flushed(train.flush_denormal),
            autocast(train.precision, session.device),
        ):
            priors = {choice: resolve_test_prior(session, choice) for choice in test_priors}
            metrics = evaluate_priors(
                model.encoder,
                model.decoder,
                {choice: prior.distribution for choice, prior in priors.items()},
                session.batches(split),
                iw_samples=iw_samples,
                iw_chunk=cfg.iw_chunk,
                iw_rows=cfg.iw_rows,
                mi_he_batch=cfg.mi_he_batch,
                iw_mask=iw_mask,
                au_threshold=cfg.au_threshold,
                on_progress=bar.update,
            )
    except ValueError as error:
        if not refuses_invalid_parameters(error):
            raise
        raise TrainingDiverged(
            f"the model's outputs on the {split} split are not finite (NaN or infinite distribution parameters)"
        ) from None
    finally:
        bar.close()
        model.train(was_training)
    if any(math.isnan(value) for figures in metrics.values() for value in figures.values()):
        raise TrainingDiverged(f"the model's outputs on the {split} split are not finite (a metric is NaN)")
    for choice, prior in priors.items():
        if prior.variance is not None:
            metrics[choice]["test_prior_variance"] = prior.variance
    return metrics
