"""Samples of a trained model: draws from the prior and test reconstructions, as PNG grids (images) or text.

Axis legend: ``b`` batch, ``c h w`` image, ``gh gw`` grid rows and columns, ``t`` tokens, ``d`` latent.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import attrs
import einops
import torch

from vaezoo.base.errors import UsageError
from vaezoo.evaluation.evaluate import evaluation_rng
from vaezoo.evaluation.figures import save_image_grid
from vaezoo.runs.session import Session

PRIOR_NAME = "samples_prior.png"
RECONSTRUCTION_NAME = "samples_reconstruction.png"
TEXT_NAME = "samples.txt"


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


@attrs.frozen
class TextSamples:
    """Decoded sentences: draws from the prior, and test documents each with its reconstruction."""

    prior: list[str]
    originals: list[str]
    reconstructions: list[str]


def _decoder_options(decoder: torch.nn.Module, temperature: float | None, greedy: bool | None) -> dict:
    """The sampling options that were given, refused when the decoder's ``sample`` does not take them."""
    options = {name: value for name, value in (("temperature", temperature), ("greedy", greedy)) if value is not None}
    accepted = inspect.signature(decoder.sample).parameters
    refused = [name for name in options if name not in accepted]
    if refused:
        raise UsageError(f"decoder {decoder.name!r} takes no sampling option {', '.join(refused)}")
    return options


@torch.no_grad()
def text_samples(
    session: Session, count: int = 10, temperature: float | None = None, greedy: bool | None = None
) -> TextSamples:
    """``count`` sentences decoded from z ~ p(z), and the first ``count // 2`` (at least one) test documents with
    reconstructions decoded from one z ~ q(z|x) each. ``temperature`` and ``greedy`` are passed to the decoder's
    ``sample`` when given (default: the decoder's own parameters)."""
    data, model = session.data, session.model
    decode = getattr(data, "decode", None)
    if data.spec.kind != "tokens" or decode is None:
        raise UsageError(f"text samples need token data that can decode ids into words; this data is {data.spec.kind}")
    options = _decoder_options(model.decoder, temperature, greedy)
    model.eval()
    with evaluation_rng(session, salt=2):
        prior = model.decoder.sample(model.prior().sample((count,)), **options)
        originals = next(data.batches("test", max(count // 2, 1))).to(session.device)
        reconstructions = model.decoder.sample(model.encoder(originals).sample(), **options)
    return TextSamples(decode(prior), decode(originals), decode(reconstructions))


def format_text_samples(samples: TextSamples) -> str:
    """Prior samples one per line, then each test document (``>``) above its reconstruction (``<``)."""
    lines = [
        "samples from the prior:",
        *(f"  {text}" for text in samples.prior),
        "",
        "test documents (>) and reconstructions (<):",
    ]
    for original, reconstruction in zip(samples.originals, samples.reconstructions, strict=True):
        lines += [f"> {original}", f"< {reconstruction}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_text_samples(
    session: Session, out_dir: Path, count: int = 10, temperature: float | None = None, greedy: bool | None = None
) -> tuple[str, Path]:
    """The formatted text samples (see ``text_samples``) and the file ``samples.txt`` in ``out_dir`` holding them."""
    text = format_text_samples(text_samples(session, count, temperature, greedy))
    path = out_dir / TEXT_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text, path
