"""Mixture priors: ``mog``, a learned mixture of Gaussians, and ``vamp``, the VampPrior (Tomczak and Welling 2018).

    mog:   p(z) = Σ_k π_k N(z; μ_k, diag σ_k²),   π = softmax(logits); μ, log σ and the logits are learned.
    vamp:  p(z) = (1/K) Σ_k q(z | u_k),            u_k learned pseudo-inputs in data space, q the model's encoder.

Axis legend: ``k`` mixture components (K of them), ``d`` latent, ``...`` one example's data shape.

Neither prior has a closed-form KL against a Gaussian posterior, so training and evaluation use the one-sample
estimate log q(z|x) − log p(z) at the step's own code (docs/maths.md section 2).
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal
from torch.func import functional_call

from vaezoo.api import Encoder, Prior, UsageError, param


class MixtureOfGaussians(Prior):
    """p(z) = Σ_k π_k N(μ_k, diag σ_k²), every part learned: means ``'k d'``, log-scales ``'k d'``, logits ``'k'``.

    The means start as draws of N(0, init_scale² I) from torch's global generator (a seeded run starts the same),
    so that the components start apart; log-scales and logits start at 0 (unit scales, equal weights).
    """

    name = "mog"
    description = "learned mixture of K diagonal Gaussians"

    @attrs.frozen
    class Params:
        components: int = param(10, ge=1, le=1024, help="K, the number of mixture components")
        init_scale: float = param(
            1.0,
            ge=0,
            le=100,
            help="standard deviation of the initial component means around 0 (0 starts every component at 0, "
            "where identical components get identical gradients and stay one Gaussian)",
        )

    def __init__(self, params, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        k = params.components
        self.means = nn.Parameter(torch.randn(k, latent_dim) * params.init_scale)
        self.log_scales = nn.Parameter(torch.zeros(k, latent_dim))
        self.logits = nn.Parameter(torch.zeros(k))

    def forward(self) -> Distribution:
        components = Independent(Normal(self.means, self.log_scales.exp()), 1)  # batch 'k', event 'd'
        return MixtureSameFamily(Categorical(logits=self.logits), components)


class VampPrior(Prior):
    """p(z) = (1/K) Σ_k q(z | u_k): the model's encoder at K pseudo-inputs ``u 'k ...'`` learned with the model.

    ``attach`` keeps the encoder in a tuple, outside this module's tree (its weights are saved once, under
    ``encoder.``), and creates the pseudo-inputs, the prior's only parameter, shaped like K examples. As Tomczak and
    Welling do, binary data gets ``u = hardtanh(w)`` into [0, 1] with w initialised from N(0.05, 0.01²); real data
    gets ``u = w`` initialised from N(0, 1). Token ids are refused: pseudo-inputs are learned by gradient descent,
    and no gradient reaches a token id.

    The pseudo-inputs are encoded as one batch in the encoder's own mode. In training mode, normalisation layers
    use the pseudo-inputs' own batch statistics but leave their running statistics, which encode the data in
    evaluation, as they were; in evaluation mode they use the running statistics like any input.
    """

    name = "vamp"
    description = "VampPrior: uniform mixture of the encoder's posteriors at K learned pseudo-inputs"

    #: Mean and standard deviation of the initial pseudo-inputs of binary data (Tomczak and Welling's MNIST value).
    BINARY_INIT = (0.05, 0.01)

    @attrs.frozen
    class Params:
        components: int = param(
            50,
            ge=1,
            le=4096,
            help="K pseudo-inputs; every training step encodes all K, so its cost grows with K (Tomczak and "
            "Welling use 500 on MNIST; 50 keeps a CPU step cheap)",
        )

    def __init__(self, params, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        self._encoder: tuple[Encoder, ...] = ()
        self.register_parameter("pseudo_inputs", None)

    def attach(self, encoder: Encoder) -> None:
        """Keep ``encoder`` and create the pseudo-inputs ``'k ...'`` for its data (real or binary only)."""
        if self._encoder:
            raise RuntimeError("prior 'vamp' is already attached to an encoder")
        spec = encoder.spec
        if spec.kind == "tokens":
            raise UsageError(
                f"prior 'vamp' cannot be used with {spec.kind} data: its pseudo-inputs are learned by gradient "
                "descent in data space, and token ids are not differentiable; use real or binary data"
            )
        like = next(encoder.parameters(), None)
        options = {"device": like.device, "dtype": like.dtype} if like is not None else {}
        w = torch.empty(self.params.components, *spec.shape, **options)
        if spec.kind == "binary":
            w.normal_(*self.BINARY_INIT)
        else:
            w.normal_(0.0, 1.0)
        self._encoder = (encoder,)
        self.pseudo_inputs = nn.Parameter(w)

    @property
    def encoder(self) -> Encoder:
        """The attached encoder."""
        if not self._encoder:
            raise RuntimeError(
                "prior 'vamp' is defined through the model's encoder: call attach(encoder) first "
                "(vaezoo.model.assembly.build_model does)"
            )
        return self._encoder[0]

    def inputs(self) -> Tensor:
        """The pseudo-inputs in data space, ``'k ...'``: clamped into [0, 1] for binary data."""
        if self.encoder.spec.kind == "binary":
            return self.pseudo_inputs.clamp(0.0, 1.0)
        return self.pseudo_inputs

    def posteriors(self) -> Distribution:
        """q(z | u_k) of every pseudo-input: batch shape ``(k,)``, event shape ``(d,)``."""
        encoder = self.encoder
        if not encoder.training:
            return encoder(self.inputs())
        scratch = {name: buffer.clone() for name, buffer in encoder.named_buffers()}
        return functional_call(encoder, scratch, (self.inputs(),)) if scratch else encoder(self.inputs())

    def forward(self) -> Distribution:
        posteriors = self.posteriors()
        uniform = Categorical(logits=self.pseudo_inputs.new_zeros(self.params.components))
        return MixtureSameFamily(uniform, posteriors)
