"""Evaluating a session's model on a split: metrics under one or several test priors, and test codes.

Evaluation runs under its own RNG seeded from the run seed (:func:`evaluation_rng`), so evaluating never
perturbs training and the same model always gets the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor
from tqdm import tqdm

from vaezoo.base.errors import TrainingDiverged
from vaezoo.components.distributions import refuses_invalid_parameters
from vaezoo.components.interfaces import evaluation_rows
from vaezoo.components.precision import autocast
from vaezoo.evaluation.metric_names import METRIC_NAMES, REPORTED_WHEN
from vaezoo.evaluation.metrics import evaluate_priors, is_diagonal_normal
from vaezoo.evaluation.priors import TestPrior, resolve_test_prior
from vaezoo.runs.session import Session, subnormals_flushed

#: Metrics every evaluation reports, whatever the data, model and settings (neg_elbo, recon, kl, mi, au).
ALWAYS_REPORTED = tuple(name for name in METRIC_NAMES if name not in REPORTED_WHEN)
#: Importance samples of a validation line's evaluation: a validation never computes IW-NLL (it would cost k
#: decoder passes per example at every evaluation point).
VALIDATION_IW_SAMPLES = 0


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
    model = session.model
    was_training = model.training
    model.eval()
    size = session.evaluation_size(split)
    iw_mask = torch.zeros(size, dtype=torch.bool)
    iw_mask[evaluation_rows(size, session.config.eval.iw_limit)] = True
    bar = _progress_bar(split, size, int(iw_mask.sum()), iw_samples, progress)
    not_finite = f"the model's outputs on the {split} split are not finite"
    try:
        priors, metrics = _evaluate_under_priors(session, split, test_priors, iw_samples, iw_mask, bar.update)
    except ValueError as error:
        if not refuses_invalid_parameters(error):
            raise
        raise TrainingDiverged(f"{not_finite} (NaN or infinite distribution parameters)") from None
    finally:
        bar.close()
        model.train(was_training)
    if any(math.isnan(value) for figures in metrics.values() for value in figures.values()):
        raise TrainingDiverged(f"{not_finite} (a metric is NaN)")
    for choice, prior in priors.items():
        if prior.variance is not None:
            metrics[choice]["test_prior_variance"] = prior.variance
    return metrics


def _progress_bar(split: str, size: int, iw_examples: int, iw_samples: int, shown: bool) -> tqdm:
    """A bar counting importance samples of IW-NLL's examples and the other examples once, shown as examples."""
    work = iw_examples * max(iw_samples, 1) + size - iw_examples
    return tqdm(
        total=work,
        unit="ex",
        unit_scale=size / work,
        desc=f"eval {split}",
        disable=not shown,
        dynamic_ncols=True,
        leave=False,
    )


def _evaluate_under_priors(
    session: Session,
    split: str,
    test_priors: Sequence[str],
    iw_samples: int,
    iw_mask: Tensor,
    on_progress: Callable[[int], object],
) -> tuple[dict[str, TestPrior], dict[str, dict[str, float]]]:
    """The test priors resolved for ``session`` and the metrics under them, in the evaluation's random state and
    the training's arithmetic."""
    train, cfg = session.config.train, session.config.eval
    with (
        evaluation_rng(session),
        subnormals_flushed(train.flush_denormal),
        autocast(train.precision, session.device),
    ):
        priors = {choice: resolve_test_prior(session, choice) for choice in test_priors}
        metrics = evaluate_priors(
            session.model.encoder,
            session.model.decoder,
            {choice: prior.distribution for choice, prior in priors.items()},
            session.batches(split),
            iw_samples=iw_samples,
            iw_chunk=cfg.iw_chunk,
            iw_rows=cfg.iw_rows,
            mi_he_batch=cfg.mi_he_batch,
            iw_mask=iw_mask,
            au_threshold=cfg.au_threshold,
            on_progress=on_progress,
        )
    return priors, metrics


def evaluation_metrics(
    session: Session, test_prior: str, iw_samples: int, among: Collection[str] = METRIC_NAMES
) -> tuple[str, ...]:
    """Which of ``among`` (default: every metric) an evaluation of ``session``'s model under ``test_prior`` with
    ``iw_samples`` reports (:func:`evaluate_split`), in the order of ``METRIC_NAMES``; decided before training,
    from the configuration, the data and the freshly built model. The one place that knows it.

    Always ``neg_elbo``, ``recon``, ``kl``, ``mi`` and ``au``; ``mi_he`` when the encoder's posterior is a
    diagonal Gaussian (asked of two validation examples); ``iw_nll``, ``iw_nll_se`` and ``iw_examples`` when
    ``iw_samples > 0``; ``ppl_elbo`` for token data (and ``ppl_iw`` with IW-NLL); ``test_prior_variance`` when the
    test prior is N(0, s^2 I) (built to find out, and only when asked: ``tuned`` costs an encoder pass over the
    validation split). Never the extra test metrics of evaluation plugins (``separability``): see
    :func:`finish_metrics`. The model's mode and the training RNG are left as they were."""
    iw, tokens = iw_samples > 0, session.data.spec.kind == "tokens"
    conditions: dict[str, Callable[[], bool]] = {
        "mi_he": lambda: is_diagonal_normal(session.model.encoder(next(session.batches("valid"))[:2])),
        "iw_nll": lambda: iw,
        "iw_nll_se": lambda: iw,
        "iw_examples": lambda: iw,
        "ppl_elbo": lambda: tokens,
        "ppl_iw": lambda: tokens and iw,
        "test_prior_variance": lambda: resolve_test_prior(session, test_prior).variance is not None,
    }
    model = session.model
    was_training = model.training
    model.eval()
    try:
        with evaluation_rng(session), torch.no_grad():
            return tuple(
                name
                for name in METRIC_NAMES
                if name in among and (name in ALWAYS_REPORTED or conditions.get(name, lambda: False)())
            )
    finally:
        model.train(was_training)


def validation_metrics(session: Session, among: Collection[str] = METRIC_NAMES) -> tuple[str, ...]:
    """Which of ``among`` every validation line of ``session``'s run holds (metrics.jsonl; what callbacks such as
    early stopping and a suite's selection rule see): :func:`evaluation_metrics` under the run's test prior,
    without IW-NLL."""
    return evaluation_metrics(session, session.config.eval.test_prior, VALIDATION_IW_SAMPLES, among)


def finish_metrics(session: Session) -> tuple[str, ...]:
    """The extra test metrics evaluation plugins add to ``session``'s finished run (``vaezoo_finish``), as they
    declare them before training (``vaezoo_finish_metrics``)."""
    answers = session.hook.vaezoo_finish_metrics(session=session) if session.hook is not None else []
    return tuple(dict.fromkeys(name for answer in answers if answer for name in answer))
