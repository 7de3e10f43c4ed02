"""Where a trained model's information about x sits: per-dimension statistics of its posteriors on a split, the
part of He et al.'s MI estimate carried by the posterior means and by the scales, and, for a run trained against
noise, the posteriors of its noise and the contrastive term's value.

    python -m benchmarks.diagnose RUN_DIR [RUN_DIR ...] [--split test] [--data-dir DIR] [--json]

Each RUN_DIR is a finished or interrupted run (a suite's ``cells/ID/run``); its tested model is read (best.pt under
``train.test_model = "best"``). Prints one JSON line per run with ``--json``, else a markdown table. The figures
(docs/maths.md section 5 defines KL, AU and MI):

- ``kl_dims``: E_x KL(q(z_d|x) || N(0, s²)) per dimension d, against the run's test prior N(0, s² I)
  (``eval.test_prior``; ``prior_variance`` is s², 1 where that prior is not isotropic); ``kl`` their sum;
- ``var_mean_dims``: Var_x E[z_d|x], the statistic AU thresholds (``au``: dims above ``eval.au_threshold``);
- ``var_log_scale_dims``: Var_x log sigma_d(x), how much the posterior's width moves with x; ``mean_scale_dims``:
  E_x sigma_d(x);
- ``mi_he``: He et al.'s MI estimate; ``mi_he_means``: the same with every posterior's scales replaced by their
  average over x (what the means alone carry); ``mi_he_scales``: with every mean replaced by the average mean
  (what the scales alone carry). A collapsed encoder reads about sqrt(D / 2|G|) in each (the estimator's noise);
- for documents, ``length_corr_log_scale`` and ``length_corr_mean_norm``: Pearson correlations of the predicted
  tokens per document with the mean over d of log sigma_d(x) and with |E[z|x]|;
- ``noise`` (runs with a noise sampler, on one noise batch per data batch): ``kl_standard`` and ``kl_contrastive``,
  E KL(q(z|x_n) || N(0, I)) and E KL(q(z|x_n) || N(0, K^2 I)) (the contrastive term before its weight δ, with the
  regulariser's K), ``mean_scale`` and ``mean_norm`` (mean sigma and mean |E[z|x_n]|), and ``separability``, the
  held-out accuracy of telling data codes from noise codes; ``data_kl_contrastive`` is the data's own KL to
  N(0, K^2 I), for comparison.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaezoo.api import (
    Parser,
    RunDirectory,
    Session,
    UsageError,
    autocast,
    diagonal_normal,
    evaluation_rng,
    isotropic_normal,
    load_plugins,
    load_trained,
    markdown_table,
    predicted_tokens,
    quiet_when_output_closes,
    resolve_data_dir,
    resolve_test_prior,
)
from vaezoo_plugins.data.separability import code_separability
from vaezoo_plugins.metrics.information import he_groups, mutual_information_he


def posterior_statistics(
    means: Tensor,
    scales: Tensor,
    groups: Sequence[Tensor],
    lengths: Tensor | None = None,
    au_threshold: float = 0.01,
    prior_variance: float = 1.0,
) -> dict[str, Any]:
    """The per-dimension figures and the MI decomposition of diagonal Gaussian posteriors N(means, scales^2)
    (``'n d'`` each) against N(0, prior_variance I); He et al.'s MI over ``groups`` (index tensors); correlations
    with ``lengths`` (``'n'``) when given. Draws from torch's global RNG (the MI estimates)."""
    means, scales = means.double(), scales.double()
    # KL(N(m, s^2) || N(0, v)) per dim, in closed form (torch's kl_divergence sums no dims apart)
    ratio = (means.square() + scales.square()) / prior_variance
    kl_dims = 0.5 * (ratio - 1 - 2 * scales.log() + math.log(prior_variance)).mean(dim=0)
    var_mean = means.var(dim=0)
    figures: dict[str, Any] = {
        "examples": means.shape[0],
        "prior_variance": prior_variance,
        "kl": kl_dims.sum().item(),
        "au": int((var_mean > au_threshold).sum()),
        "kl_dims": kl_dims.tolist(),
        "var_mean_dims": var_mean.tolist(),
        "var_log_scale_dims": scales.log().var(dim=0).tolist(),
        "mean_scale_dims": scales.mean(dim=0).tolist(),
        "mi_he": mutual_information_he(means, scales, groups),
        "mi_he_means": mutual_information_he(means, scales.mean(dim=0).expand_as(scales), groups),
        "mi_he_scales": mutual_information_he(means.mean(dim=0).expand_as(means), scales, groups),
    }
    if lengths is not None:
        length = lengths.double()
        figures["length_corr_log_scale"] = _pearson(length, scales.log().mean(dim=1))
        figures["length_corr_mean_norm"] = _pearson(length, means.norm(dim=1))
    return figures


def _pearson(a: Tensor, b: Tensor) -> float:
    """Pearson's correlation of two ``'n'`` tensors (NaN when either is constant)."""
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


@torch.no_grad()
def diagnose(session: Session, split: str = "test") -> dict[str, Any]:
    """:func:`posterior_statistics` of ``split`` under the session's model and, when the model has a noise sampler,
    the ``noise`` figures (see the module's docstring). Runs under the evaluation RNG, so it is reproducible."""
    model, data, config = session.model, session.data, session.config
    spec = getattr(model.decoder, "spec", None)
    tokens = spec is not None and spec.kind == "tokens"
    K = getattr(model.regularizer.params, "K", None)
    model.eval()
    means, scales, lengths, noise_means, noise_scales = [], [], [], [], []
    with evaluation_rng(session, salt=1), autocast(config.train.precision, session.device):
        for x in session.batches(split):
            posterior = model.encoder(x)
            means.append(posterior.mean.float().cpu())
            scales.append(posterior.stddev.float().cpu())
            if tokens:
                lengths.append(predicted_tokens(x, spec).cpu())
            if model.noise is not None:
                noisy = model.encoder(model.noise(x, model.decoder, model.prior, data, len(noise_means)))
                noise_means.append(noisy.mean.float().cpu())
                noise_scales.append(noisy.stddev.float().cpu())
        mean, scale = torch.cat(means), torch.cat(scales)
        length = torch.cat(lengths) if tokens else None
        groups = he_groups(len(mean), config.eval.mi_he_batch or (32 if tokens else 50), length)
        variance = resolve_test_prior(session, config.eval.test_prior).variance
        figures = posterior_statistics(mean, scale, groups, length, config.eval.au_threshold, variance or 1.0)
        if noise_means:
            figures["noise"] = _noise_figures(mean, scale, torch.cat(noise_means), torch.cat(noise_scales), K)
    figures["split"] = split
    return figures


def _noise_figures(mean: Tensor, scale: Tensor, noise_mean: Tensor, noise_scale: Tensor, K: float | None) -> dict:
    dims = mean.shape[1]
    noise = diagonal_normal(noise_mean, noise_scale.log())
    data = diagonal_normal(mean, scale.log())
    standard = isotropic_normal(dims, 1.0)
    figures = {
        "kl_standard": torch.distributions.kl_divergence(noise, standard).mean().item(),
        "mean_scale": noise_scale.mean().item(),
        "mean_norm": noise_mean.norm(dim=1).mean().item(),
        "separability": code_separability(data.sample(), noise.sample()),
    }
    if K is not None:
        contrastive = isotropic_normal(dims, K**2)
        figures["kl_contrastive"] = torch.distributions.kl_divergence(noise, contrastive).mean().item()
        figures["data_kl_contrastive"] = torch.distributions.kl_divergence(data, contrastive).mean().item()
    return figures


SUMMARY = (
    ("kl", "KL", 2),
    ("au", "AU", 0),
    ("mi_he", "MI", 3),
    ("mi_he_means", "MI of means", 3),
    ("mi_he_scales", "MI of scales", 3),
    ("max_var_log_scale", "max Var log σ", 3),
    ("length_corr_log_scale", "corr(len, log σ)", 2),
    ("noise_kl_contrastive", "noise KL to N(0,K²)", 2),
    ("noise_mean_scale", "noise σ", 2),
    ("noise_separability", "separability", 2),
)


def summary_row(name: str, figures: dict[str, Any]) -> list[str]:
    """One markdown row of :data:`SUMMARY`'s figures; '–' where a figure does not apply."""
    flat = {**figures, "max_var_log_scale": max(figures["var_log_scale_dims"])}
    flat |= {f"noise_{key}": value for key, value in (figures.get("noise") or {}).items()}
    cells = [name]
    for key, _, digits in SUMMARY:
        value = flat.get(key)
        cells.append(
            "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"
        )
    return cells


@quiet_when_output_closes
def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.diagnose") -> int:
    """The command; ``prog`` names it in its usage and errors (``vaezoo bench diagnose`` when run so)."""
    parser = Parser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON line per run instead of the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    plugins = load_plugins()
    rows = []
    try:
        for run in args.runs:
            directory = RunDirectory(run)
            directory.check_usable()
            data_dir = resolve_data_dir(args.data_dir, directory.recorded_data_dir())
            session = load_trained(run, plugins.registry, data_dir)
            figures = diagnose(session, args.split)
            if args.json:
                print(json.dumps({"run": str(run), **figures}), flush=True)
            rows.append(summary_row(str(run), figures))
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if not args.json:
        print("\n".join(markdown_table(["run", *(title for _, title, _ in SUMMARY)], rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
