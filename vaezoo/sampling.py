"""Samples of a trained model written as PNG grids: draws from the prior and test reconstructions.

Axis legend: ``b`` batch, ``c h w`` image, ``gh gw`` grid rows and columns.
"""

from __future__ import annotations

import math
from pathlib import Path

import einops
import torch

from vaezoo.errors import UsageError
from vaezoo.figures import save_image_grid
from vaezoo.train import Session, evaluation_rng

PRIOR_NAME = "samples_prior.png"
RECONSTRUCTION_NAME = "samples_reconstruction.png"


@torch.no_grad()
def write_sample_grids(session: Session, out_dir: Path, count: int = 64) -> list[Path]:
    """``count`` prior samples as one grid; test images, each row followed by a row of their reconstructions.

    The model's training prior p(z) is sampled, and reconstructions decode one z ~ q(z|x) per image.
    """
    spec = session.data.spec
    if len(spec.shape) != 3 or spec.kind == "tokens":
        raise UsageError(f"sample grids need image data of shape (c, h, w); data of shape {spec.shape} has none")
    model = session.model
    model.eval()
    columns = max(int(math.sqrt(count)), 1)
    pair_rows = max(count // (2 * columns), 1)
    with evaluation_rng(session, salt=2):
        prior_samples = model.decoder.sample(model.prior().sample((count,)))
        originals = session.data.splits["test"][: pair_rows * columns].to(session.device).float()
        reconstructions = model.decoder.sample(model.encoder(originals).sample()).float()
    pairs = einops.rearrange(
        torch.stack([originals, reconstructions]), "two (gh gw) c h w -> (gh two gw) c h w", gw=columns
    )
    paths = [out_dir / PRIOR_NAME, out_dir / RECONSTRUCTION_NAME]
    save_image_grid(prior_samples, paths[0], columns)
    save_image_grid(pairs, paths[1], columns)
    return paths
