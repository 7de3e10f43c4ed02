"""Contrastive noise samplers (docs/maths.md section 3): Gaussian perturbation, the current decoder, the data set's own.

Each returns a batch ``'b ...'`` shaped like the data batch, without gradients.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import attrs
import torch
from torch import Tensor

from vaezoo.api import Data, Decoder, NoiseSampler, Prior, autocast, param


@attrs.frozen
class GaussianNoiseParams:
    sigma: float = param(0.01, gt=0, le=100, help="standard deviation of the added noise")


class GaussianNoise(NoiseSampler):
    """x_n = x + eps, eps ~ N(0, sigma^2 I): continuous data only (meaningless for token ids)."""

    name = "gaussian"
    description = "x + N(0, sigma^2 I)"
    Params = GaussianNoiseParams

    def incompatibility(self, data: Data) -> str | None:
        if data.spec.kind == "tokens":
            return "Gaussian noise cannot be added to token ids; use --noise decoder"
        return None

    @torch.no_grad()
    def forward(self, x: Tensor, decoder: Decoder, prior: Prior, data: Data | None, step: int) -> Tensor:
        return x + self.params.sigma * torch.randn(x.shape, device=x.device)


@attrs.frozen
class DecoderNoiseParams:
    refresh_every: int = param(1, ge=1, le=10**9, help="steps between refreshes of the sample pool (1: fully online)")
    pool_size: int = param(0, ge=0, le=1024, help="samples in the pool (0: the batch size)")
    lengths: str = param(
        "batch",
        choices=("batch", "decoder"),
        help="token data: documents are cut at the length of the data batch that draws them (batch: length is no "
        "cue, and a draw costs no more tokens than the batch), or end only where the decoder ends them (decoder); "
        "data of a fixed size ignores it",
    )
    precision: str = param(
        "auto",
        choices=("auto", "bf16", "fp32"),
        help="arithmetic of the decoder while it draws, whatever the run's: bf16 (bfloat16 matrix multiplies "
        "through torch.autocast; a token decoder's draw is bound by reading its output layer, which bfloat16 "
        "halves), fp32, or auto: bf16 for token data, fp32 otherwise (a PixelCNN draws in many small steps, which "
        "bfloat16 slows)",
    )


class DecoderNoise(NoiseSampler):
    """Ancestral samples of the current model: z ~ p(z), x_n ~ p(x|z), under no_grad.

    Samples come from the decoder's own ``sample``, so autoregressive decoders use their own (fast) sampler.
    A pool of samples is drawn every ``refresh_every`` steps and each step takes a batch from it; the pool is
    part of the model's state (``get_extra_state``), so a resumed run uses the same noise as an uninterrupted one.

    With ``lengths = "batch"`` (the default; token data) the documents are drawn with at most as many tokens as
    the data batch that draws the pool is wide (its longest document): a document still open there ends with the
    end token, as data documents longer than the data's ``max_len`` are cut. An untrained decoder, which never
    ends a document, would otherwise contrast the data with documents of the maximum length, a difference the
    encoder can read off the length alone, and each draw would cost ``max_len`` decoder steps. The token decoder's
    ``sample`` takes the length as ``max_len``.

    With ``precision = "bf16"`` (the default, ``auto``, for token data) the decoder draws under bfloat16 autocast
    whatever the run's precision: a draw steps the decoder once per token on a few rows, so it is bound by reading
    the weights (the 20k x 1024 output layer of He et al.'s text decoder, 80 MB in float32, once per token) rather
    than by arithmetic, and bfloat16 halves that. The draws are from the current decoder with its logits rounded
    to bfloat16 (3 significant digits), a negligible change to a noise distribution that is itself only an
    approximation of the data's. Other data is drawn in float32 by default, in bf16 runs too: the
    PixelCNN's cached sampler takes many small steps, which bfloat16 slows (50 images of He et al.'s PixelCNN,
    one thread: 2.2 s in float32, 3.4 s in bfloat16).
    """

    name = "decoder"
    description = "ancestral samples from the current decoder, refreshed every N steps"
    Params = DecoderNoiseParams

    def __init__(self, params: DecoderNoiseParams, spec) -> None:
        super().__init__(params, spec)
        self.pool: Tensor | None = None
        self.pool_step = -1

    def arithmetic(self, device: torch.device) -> AbstractContextManager[None]:
        """The precision of a draw (``precision``; auto: bf16 for token data, fp32 otherwise)."""
        precision = self.params.precision
        if precision == "auto":
            precision = "bf16" if self.spec.kind == "tokens" else "fp32"
        return autocast(precision, device)

    @torch.no_grad()
    def refill(self, decoder: Decoder, prior: Prior, size: int, x: Tensor) -> None:
        """Draw a new pool of ``size`` samples, the data batch ``x`` setting their length when lengths is batch."""
        was_training = decoder.training
        decoder.eval()  # sampling must not update normalisation statistics
        try:
            z = prior().sample((size,)).to(x.device)
            cut = {"max_len": x.shape[1]} if self.params.lengths == "batch" and self.spec.kind == "tokens" else {}
            with self.arithmetic(x.device):
                self.pool = decoder.sample(z, **cut)
        finally:
            decoder.train(was_training)

    @torch.no_grad()
    def forward(self, x: Tensor, decoder: Decoder, prior: Prior, data: Data | None, step: int) -> Tensor:
        b = x.shape[0]
        size = self.params.pool_size or b
        stale = self.pool is None or step - self.pool_step >= self.params.refresh_every or step < self.pool_step
        if stale:
            self.refill(decoder, prior, size, x)
            self.pool_step = step
        if size == b:
            return self.pool
        return self.pool[torch.randint(size, (b,), device=x.device)]

    def get_extra_state(self) -> dict:
        empty = torch.zeros(0)
        return {"pool": self.pool if self.pool is not None else empty, "pool_step": torch.tensor(self.pool_step)}

    def set_extra_state(self, state: dict) -> None:
        self.pool = state["pool"] if state["pool"].numel() else None
        self.pool_step = int(state["pool_step"])


class DatasetNoise(NoiseSampler):
    """Random examples of the data set's own contrastive distribution (e.g. p_n of the synthetic task): a data
    set offers one by holding noise examples in ``data.noise["train"]`` (as ``NoisyData`` does)."""

    name = "dataset"
    description = "the data set's own noise examples (synthetic task)"

    def incompatibility(self, data: Data) -> str | None:
        if "train" not in getattr(data, "noise", {}):
            return "this data set defines no noise distribution of its own"
        return None

    @torch.no_grad()
    def forward(self, x: Tensor, decoder: Decoder, prior: Prior, data: Data | None, step: int) -> Tensor:
        assert data is not None, "dataset noise needs the data set"
        pool = data.noise["train"]
        rows = torch.randint(len(pool), (x.shape[0],))
        return pool[rows].to(x.device)
