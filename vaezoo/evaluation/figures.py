"""Figures written into run directories (matplotlib, no display needed; imported when a figure is drawn, since
it costs a third of a second at every start of the command)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import einops
import torch
from torch import Tensor


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def project_2d(codes: Tensor, reference: Tensor) -> tuple[Tensor, str]:
    """Codes ``'b d'`` as 2-d points: as they are when d <= 2, else on the reference codes' top two PCs."""
    d = codes.shape[1]
    if d == 1:
        return torch.cat([codes, torch.zeros_like(codes)], dim=1), "z"
    if d == 2:
        return codes, "z"
    if len(reference) < 2:  # no principal components of a single code: its first two coordinates
        return codes[:, :2], "z"
    center = reference.mean(0)
    _, _, v = torch.pca_lowrank(reference - center, q=2, center=False)
    return (codes - center) @ v, "principal component of data codes"


def latent_scatter(data_codes: Tensor, noise_codes: Tensor | None, path: Path, title: str) -> None:
    """Scatter of posterior samples of data (blue) and noise (red) examples, the layout of the paper's Fig. 2."""
    plt = _pyplot()
    data_xy, axis = project_2d(data_codes, data_codes)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(data_xy[:, 0], data_xy[:, 1], s=4, alpha=0.5, c="tab:blue", label="data")
    if noise_codes is not None:
        noise_xy, _ = project_2d(noise_codes, data_codes)
        ax.scatter(noise_xy[:, 0], noise_xy[:, 1], s=4, alpha=0.5, c="tab:red", label="noise")
    ax.set_xlabel(f"{axis} 1")
    ax.set_ylabel(f"{axis} 2")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=3)
    ax.set_aspect("equal", adjustable="datalim")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def image_grid(images: Tensor, columns: int) -> Tensor:
    """``'b c h w'`` to one ``'(gh h) (gw w) c'`` picture, padding the last grid row with blank images."""
    rows = -(-images.shape[0] // columns)
    blank = images.new_zeros(rows * columns - images.shape[0], *images.shape[1:])
    return einops.rearrange(torch.cat([images, blank]), "(gh gw) c h w -> (gh h) (gw w) c", gh=rows, gw=columns)


def save_image_grid(images: Tensor, path: Path, columns: int) -> None:
    """Images in [0, 1] (``'b c h w'``, one or three channels) as a PNG grid."""
    grid = image_grid(images.float().clamp(0, 1).cpu(), columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pyplot().imsave(path, grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1)
