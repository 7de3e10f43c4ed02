"""Divergence estimators shared by the regularisers and the theory lab (none of them is in torch).

Axis legend: ``n`` samples (or support points, with weights), ``d`` latent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """Mean of ``values 'n'``, or their expectation under the probabilities ``weights 'n'``."""
    return values.mean() if weights is None else (values * weights).sum()


def discriminator_jsd(
    prior_logits: Tensor,
    code_logits: Tensor,
    prior_weights: Tensor | None = None,
    code_weights: Tensor | None = None,
) -> Tensor:
    """JSD(q || p) as realised by a discriminator D = sigmoid(logit) that says "prior" with probability D.

    0.5 * (E_p log D + E_q log(1 - D)) + log 2. With the optimal discriminator D*(z) = p(z) / (p(z) + q(z))
    this is exactly JSD(q || p); with any other discriminator it is a lower bound. Samples are averaged;
    with weights (probabilities of support points) the expectations are exact.
    """
    log_d_prior = F.logsigmoid(prior_logits)  # log D on prior samples
    log_not_d_code = F.logsigmoid(-code_logits)  # log (1 - D) on encoded samples
    return 0.5 * (weighted_mean(log_d_prior, prior_weights) + weighted_mean(log_not_d_code, code_weights)) + math.log(2)


def rbf_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    """exp(-||a_i - b_j||^2 / bandwidth): ``'n d', 'm d' -> 'n m'``."""
    return torch.exp(-torch.cdist(a, b).square() / bandwidth)


def imq_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    """Inverse multiquadric bandwidth / (bandwidth + ||a_i - b_j||^2): ``'n d', 'm d' -> 'n m'``."""
    return bandwidth / (bandwidth + torch.cdist(a, b).square())


KERNELS = {"rbf": rbf_kernel, "imq": imq_kernel}


def mmd(x: Tensor, y: Tensor, kernel: str = "rbf", bandwidth: float | None = None) -> Tensor:
    """Unbiased estimate of MMD^2 between samples ``x 'n d'`` and ``y 'm d'``.

    The default bandwidth is 2 d, the expected squared distance between two N(0, I) samples in d dims, so the
    kernel stays informative whatever the latent dimension.
    """
    bandwidth = 2.0 * x.shape[1] if bandwidth is None else bandwidth
    k = KERNELS[kernel]
    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = k(x, x, bandwidth), k(y, y, bandwidth), k(x, y, bandwidth)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean()
