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
from vaezoo.components.distributions import is_diagonal_normal, refuses_invalid_parameters
from vaezoo.components.interfaces import evaluation_rows
from vaezoo.components.metric import ELBO_TERMS, EvaluationSetting, Metric
from vaezoo.components.precision import autocast
from vaezoo.evaluation.evaluation_pass import evaluate_priors
from vaezoo.evaluation.priors import TestPrior, resolve_test_prior
from vaezoo.runs.session import Session, subnormals_flushed

#: What an evaluation reports about its test prior when it is N(0, s^2 I): s^2 (not a metric; shown after them).
TEST_PRIOR_VARIANCE = "test_prior_variance"
TEST_PRIOR_VARIANCE_LEGEND = "test_prior_variance = s^2 of the test prior N(0, s^2 I)"
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
        noise = session.data.noise_examples(split)
        metrics = evaluate_priors(
            session.model.encoder,
            session.model.decoder,
            {choice: prior.distribution for choice, prior in priors.items()},
            session.batches(split),
            metrics=session.metrics,
            iw_samples=iw_samples,
            iw_chunk=cfg.iw_chunk,
            iw_rows=cfg.iw_rows,
            mi_he_batch=cfg.mi_he_batch,
            iw_mask=iw_mask,
            au_threshold=cfg.au_threshold,
            noise_batches=None if noise is None else _noise_batches(session, noise),
            seed=train.seed,
            on_progress=on_progress,
        )
    return priors, metrics


def _noise_batches(session: Session, noise: Tensor) -> Iterator[Tensor]:
    """The split's noise examples in evaluation batches, on the session's device."""
    for batch in noise.split(session.config.eval.batch_size):
        yield batch.to(session.device)


def evaluation_setting(session: Session, split: str, iw_samples: int) -> EvaluationSetting:
    """What decides the metrics an evaluation of ``split`` with ``iw_samples`` reports: the data's form, whether
    the encoder's posterior is a diagonal Gaussian (asked of two validation examples) and whether the split has
    noise examples."""
    with torch.no_grad():
        diagonal = is_diagonal_normal(session.model.encoder(next(session.batches("valid"))[:2]))
    noise = session.data.noise_examples(split) is not None
    cfg = session.config.eval
    options = {"au_threshold": cfg.au_threshold, "mi_he_batch": cfg.mi_he_batch, "seed": session.config.train.seed}
    return EvaluationSetting(session.data.spec, iw_samples, diagonal, noise, options)


def evaluation_metrics(
    session: Session, test_prior: str, iw_samples: int, among: Collection[str] | None = None, split: str = "test"
) -> tuple[str, ...]:
    """Which of ``among`` (default: all) an evaluation of ``session``'s model on ``split`` under ``test_prior``
    with ``iw_samples`` reports (:func:`evaluate_split`), in the order it prints them; decided before training,
    from the configuration, the data and the freshly built model. The one place that knows it.

    Always the ELBO's terms (``neg_elbo``, ``recon``, ``kl``); each registered metric when its ``reported`` says so
    (``mi_he`` for a diagonal Gaussian posterior, ``iw_nll`` when ``iw_samples > 0``, ``ppl_elbo`` for token data,
    ``separability`` for a split with noise examples...); ``test_prior_variance`` when the test prior is
    N(0, s^2 I) (built to find out, and only when asked: ``tuned`` costs an encoder pass over the validation
    split). The model's mode and the training RNG are left as they were."""
    model = session.model
    was_training = model.training
    model.eval()
    try:
        with evaluation_rng(session):
            setting = evaluation_setting(session, split, iw_samples)
            names = [*ELBO_TERMS, *(metric.name for metric in session.metrics if metric.reported(setting))]
            wanted = [name for name in names if among is None or name in among]
            if (among is None or TEST_PRIOR_VARIANCE in among) and _isotropic(session, test_prior):
                wanted.append(TEST_PRIOR_VARIANCE)
            return tuple(wanted)
    finally:
        model.train(was_training)


def _isotropic(session: Session, test_prior: str) -> bool:
    with torch.no_grad():
        return resolve_test_prior(session, test_prior).variance is not None


def validation_metrics(session: Session, among: Collection[str] | None = None) -> tuple[str, ...]:
    """Which of ``among`` every validation line of ``session``'s run holds (metrics.jsonl; what callbacks such as
    early stopping and a suite's selection rule see): :func:`evaluation_metrics` of the validation split under the
    run's test prior, without IW-NLL."""
    return evaluation_metrics(session, session.config.eval.test_prior, VALIDATION_IW_SAMPLES, among, "valid")


def metric_catalogue(metrics: Sequence[type[Metric]]) -> dict[str, dict[str, object]]:
    """Every figure an evaluation may report, in printing order: the ELBO's terms, ``metrics`` and
    ``test_prior_variance``, each with its legend, whether higher is better and when it is reported ("" always)."""
    catalogue: dict[str, dict[str, object]] = {
        name: {"legend": legend, "higher_is_better": False, "when": ""} for name, legend in ELBO_TERMS.items()
    }
    for metric in metrics:
        catalogue[metric.name] = {
            "legend": metric.legend,
            "higher_is_better": metric.higher_is_better,
            "when": metric.when,
        }
    catalogue[TEST_PRIOR_VARIANCE] = {
        "legend": TEST_PRIOR_VARIANCE_LEGEND,
        "higher_is_better": None,
        "when": "only when the test prior is N(0, s^2 I)",
    }
    return catalogue
