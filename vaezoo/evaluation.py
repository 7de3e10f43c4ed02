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
from vaezoo.metric_names import METRIC_NAMES
from vaezoo.metrics import evaluate_priors, is_diagonal_normal
from vaezoo.precision import autocast
from vaezoo.session import Session, subnormals_flushed
from vaezoo.test_priors import resolve_test_prior

#: Metrics every evaluation reports, whatever the data, model and settings.
ALWAYS_REPORTED = ("neg_elbo", "recon", "kl", "mi", "au")
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


def evaluation_metrics(session: Session, test_prior: str, iw_samples: int) -> tuple[str, ...]:
    """The metrics an evaluation of ``session``'s model under ``test_prior`` with ``iw_samples`` reports
    (:func:`evaluate_split`), in the order of ``METRIC_NAMES``; decided before training, from the configuration,
    the data and the freshly built model, and the one place that knows it.

    Always ``neg_elbo``, ``recon``, ``kl``, ``mi`` and ``au``; ``mi_he`` when the encoder's posterior is a
    diagonal Gaussian (asked of one validation example); ``iw_nll``, ``iw_nll_se`` and ``iw_examples`` when
    ``iw_samples > 0``; ``ppl_elbo`` for token data (and ``ppl_iw`` with IW-NLL); ``test_prior_variance`` when the
    test prior is N(0, s^2 I) (built to find out: ``tuned`` costs one encoder pass over the validation split).
    The extra test metrics of evaluation plugins (``vaezoo_finish``, e.g. ``separability``) are not among them:
    they are added to a finished run's test metrics only. The training RNG is left as it was."""
    names = set(ALWAYS_REPORTED)
    tokens = session.data.spec.kind == "tokens"
    iw = iw_samples > 0
    names |= {"iw_nll", "iw_nll_se", "iw_examples"} if iw else set()
    names |= ({"ppl_elbo"} | ({"ppl_iw"} if iw else set())) if tokens else set()
    model = session.model
    was_training = model.training
    model.eval()
    try:
        with evaluation_rng(session), torch.no_grad():
            if is_diagonal_normal(model.encoder(next(session.batches("valid"))[:2])):
                names.add("mi_he")
            if resolve_test_prior(session, test_prior).variance is not None:
                names.add("test_prior_variance")
    finally:
        model.train(was_training)
    return tuple(name for name in METRIC_NAMES if name in names)


def validation_metrics(session: Session) -> tuple[str, ...]:
    """The metrics of every validation line of ``session``'s run (metrics.jsonl, what callbacks such as early
    stopping and a suite's selection rule see): :func:`evaluation_metrics` under the run's test prior, without
    IW-NLL."""
    return evaluation_metrics(session, session.config.eval.test_prior, VALIDATION_IW_SAMPLES)
