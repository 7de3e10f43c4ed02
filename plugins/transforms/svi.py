"""SA-VAE (Kim, Wiseman, Miller, Sontag and Rush 2018): each posterior refined by K steps of stochastic variational
inference on its own ELBO, and training differentiated through the steps.

The encoder's diagonal Gaussian q0 = N(μ0, σ0²) gives each example's starting point λ0 = (μ0, log σ0²); K steps of
heavy-ball momentum on the example's negative ELBO L(λ) = −log p(x|z) + KL(q_λ || p), z = μ + σ·ε one
reparameterised sample per step, move it to λ_K:

    g_k = clip(∇_λ L(λ_k)),   m_k = momentum·m_{k−1} − g_k  (m_{−1} = 0),   λ_{k+1} = λ_k + lr·m_k,

with the μ part and the log σ² part of each example's gradient clipped to norm ``max_grad_norm`` separately, and
learning rates ``lr_mean`` and ``lr_logvar``. The model samples from q_{λ_K}. With gradients enabled (training) the
steps stay in the autograd graph (``create_graph``), so the training loss at λ_K reaches the encoder through the
whole trajectory (the total derivative dλ_K/dλ0, Hessian-vector products included), and the decoder and prior both
directly and through the steps: Kim et al.'s ``train_n2n = 1``, exact where their code differences gradients.
With ``backward = "finite_difference"`` training differentiates the same steps by Kim et al.'s reverse pass instead
(:mod:`vaezoo_plugins.transforms.svi_backward`): the steps run without a graph, and the Hessian-vector products
are differences of gradients, two gradient evaluations per step where the exact path takes about three.
Under ``torch.no_grad`` (evaluation) the steps still run, from a detached λ0, and the posterior returned is
detached. docs/maths.md, "SA-VAE", has the derivation and every deviation from Kim et al.'s code.

Axis legend: ``b`` batch, ``d`` latent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import einops
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from vaezoo.api import (
    UNCHECKED,
    Decoder,
    PosteriorTransform,
    Prior,
    UsageError,
    is_diagonal_normal,
    kl_or_estimate,
    param,
)
from vaezoo_plugins.transforms.svi_backward import FiniteDifferenceSteps

#: Kim et al.'s text batch: their SVI step averages the loss over it, so their lr 1 is 1/32 per example.
REFERENCE_BATCH = 32
#: Added to a gradient's norm before dividing by it, as in Kim et al.'s clip (and torch's clip_grad_norm_).
CLIP_EPSILON = 1e-6
#: How training differentiates through the steps (``SVIParams.backward``).
BACKWARDS = ("exact", "finite_difference")


@attrs.frozen
class SVIParams:
    steps: int = param(20, ge=0, le=10_000, help="K, SVI steps per posterior (Kim et al.: 20; 0: no refinement)")
    lr_mean: float = param(
        1 / REFERENCE_BATCH,
        gt=0,
        le=100,
        help="SVI learning rate of the means, per example (Kim et al.'s svi_lr1 = 1 on a batch-mean loss of 32 "
        "examples is 1/32)",
    )
    lr_logvar: float = param(
        1 / REFERENCE_BATCH,
        gt=0,
        le=100,
        help="SVI learning rate of the log variances, per example (Kim et al.'s svi_lr2 = 1 on a batch of 32: 1/32)",
    )
    momentum: float = param(0.5, ge=0, lt=1, help="heavy-ball momentum of the SVI steps (Kim et al.: 0.5)")
    max_grad_norm: float = param(
        5 * REFERENCE_BATCH**0.5,
        gt=0,
        le=1e12,
        help="each example's SVI gradient, its mean and its log-variance parts separately, is clipped to this norm; "
        "5*sqrt(32) equals Kim et al.'s clip of 5 on the whole batch-mean gradient of 32 examples when every "
        "example's gradient has the same norm",
    )
    backward: str = param(
        "exact",
        choices=BACKWARDS,
        help="how training differentiates through the steps: exact (autograd's double backward, about 3 gradient "
        "evaluations per step) or finite_difference (Kim et al.'s reverse pass over the cached steps, Hessian-vector "
        "products as differences of gradients: 2 per step)",
    )
    fd_step: float | None = param(
        None,
        gt=0,
        le=1,
        help="finite_difference only: the step of the difference quotients, as the root-mean-square perturbation of "
        "(mean, log variance) at the last step (none: the square root of the machine epsilon of the arithmetic, "
        "3.5e-4 in float32, 0.088 under bf16, 1.5e-8 in float64; Kim et al.'s r = 1e-5 scales the adjoint instead)",
    )


class CircularPrior(UsageError):
    """The prior was evaluated while the transform refined a posterior against it, through the transform itself."""


class SemiAmortized(PosteriorTransform):
    """q0(z|x) ↦ q_{λ_K}(z|x): each example's diagonal Gaussian refined by K momentum-SGD steps on its own negative
    ELBO (KL weight 1), drawing its samples and the decoder's dropout from torch's global generator.

    The decoder runs in its own mode, which the model sets together with the transform's: with dropout in training
    (as in Kim et al.'s code), without it in evaluation. The refinement is float32 at least, also under bf16
    autocast (the decoder returns float32 log-likelihoods)."""

    name = "savae"
    description = "SA-VAE: each posterior refined by K SVI steps on its own ELBO, trained through the steps"
    Params = SVIParams

    def __init__(self, params: SVIParams, latent_dim: int) -> None:
        super().__init__(params, latent_dim)
        self._model: tuple[Decoder, Prior] | tuple[()] = ()
        self._refining = False

    def attach(self, decoder: Decoder, prior: Prior) -> None:
        """Keep the model's decoder and prior, outside this module's tree (their weights are saved once)."""
        self._model = (decoder, prior)

    def incompatibility(self, posterior: Distribution) -> str | None:
        if not is_diagonal_normal(posterior):
            return "it refines the mean and log variance of a diagonal Gaussian posterior"
        if self._model and self._prior_needs_refinement():
            return (
                "its steps need the prior, and this prior is built from the model's encoder, whose posteriors "
                "need the steps (circular)"
            )
        return None

    def forward(self, posterior: Distribution, x: Tensor) -> Distribution:
        if self.params.steps == 0:
            return posterior
        if self._refining:
            raise CircularPrior(f"transform {self.name!r} cannot refine against a prior defined through itself")
        differentiate = torch.is_grad_enabled()
        normal = posterior.base_dist
        dtype = torch.promote_types(normal.loc.dtype, torch.float32)  # never bfloat16
        start = (normal.loc.to(dtype), 2 * normal.scale.to(dtype).log())  # λ0 = (μ0, log σ0²), 'b d' each
        if not differentiate:
            start = tuple(part.detach() for part in start)
        by_differences = differentiate and self.params.backward == "finite_difference"
        with self.stepping(double_backward=differentiate and not by_differences):
            if by_differences:
                mean, logvar = FiniteDifferenceSteps.apply(self, x, *start, *self.refinement_parameters())
            else:
                mean, logvar = self.refine(start, x, create_graph=differentiate)
        if not differentiate:
            mean, logvar = mean.detach(), logvar.detach()
        return Independent(Normal(mean, (logvar / 2).exp(), **UNCHECKED), 1, **UNCHECKED)

    def refine(self, start: tuple[Tensor, Tensor], x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
        """λ_K from λ0 = ``start`` (μ0, log σ0², each ``'b d'``) for the batch ``x``: K momentum steps on each
        example's negative ELBO. With ``create_graph`` every step stays differentiable (λ_K is a function of λ0 and
        of the decoder's and prior's parameters); without it λ_K carries no graph."""
        point = tuple(part if part.requires_grad else part.detach().requires_grad_() for part in start)
        velocity = tuple(torch.zeros_like(part) for part in point)
        prior = self.prior()
        for _ in range(self.params.steps):
            gradients = self.clipped_gradients(point, x, prior, create_graph)
            point, velocity = self.advance(point, velocity, gradients)
            if not create_graph:
                point = tuple(p.detach().requires_grad_() for p in point)
        return point  # type: ignore[return-value]

    def advance(
        self, point: tuple[Tensor, ...], velocity: tuple[Tensor, ...], gradients: tuple[Tensor, ...]
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """One heavy-ball step from λ_k = ``point`` with m_{k−1} = ``velocity`` and the clipped g_k = ``gradients``:
        (λ_{k+1}, m_k)."""
        params = self.params
        rates = (params.lr_mean, params.lr_logvar)
        velocity = tuple(params.momentum * m - g for m, g in zip(velocity, gradients, strict=True))
        point = tuple(p + rate * m for p, rate, m in zip(point, rates, velocity, strict=True))
        return point, velocity

    def negative_elbo(self, mean: Tensor, logvar: Tensor, x: Tensor, prior: Distribution) -> Tensor:
        """−log p(x|z) + KL(q_λ || p) per example, ``'b'``, at one reparameterised z ~ q_λ: the KL in closed form
        where torch has one, else estimated at that z."""
        posterior = Independent(Normal(mean, (logvar / 2).exp(), **UNCHECKED), 1, **UNCHECKED)
        z = posterior.rsample()  # 'b d'
        log_px = self._attached()[0].log_prob(x, einops.rearrange(z, "b d -> 1 b d"))
        return -einops.rearrange(log_px, "1 b -> b").to(mean.dtype) + kl_or_estimate(posterior, prior, z)

    def clipped_gradients(
        self, point: tuple[Tensor, ...], x: Tensor, prior: Distribution, create_graph: bool
    ) -> tuple[Tensor, ...]:
        """∇_λ of each example's negative ELBO at λ = ``point``, the mean and log-variance parts of each example
        clipped to norm ``max_grad_norm`` separately. The objective is summed over the batch: examples do not
        interact, so each example's gradient is its own, whatever the batch size."""
        loss = self.negative_elbo(*point, x, prior).sum()
        gradients = torch.autograd.grad(loss, point, create_graph=create_graph)
        return tuple(self.clip(g) for g in gradients)

    def clip(self, gradient: Tensor) -> Tensor:
        """One part (μ or log σ²) of the gradients, ``'b d'``, each example's row clipped to ``max_grad_norm``."""
        return clip_rows(gradient, self.params.max_grad_norm)

    def prior(self) -> Distribution:
        """The model's prior p(z), against which the steps refine."""
        return self._attached()[1]()

    def refinement_parameters(self) -> list[Tensor]:
        """The trained parameters of the model's decoder and prior, each once: what λ_K depends on besides λ0."""
        unique = {id(p): p for module in self._attached() for p in module.parameters() if p.requires_grad}
        return list(unique.values())

    @contextmanager
    def stepping(self, double_backward: bool) -> Iterator[None]:
        """The context of the steps and of their replay: gradients on, the prior's circle guarded against, the
        decoder's and prior's buffers kept, and cuDNN off when the steps are to be differentiated twice."""
        with torch.enable_grad(), self._refinement(), cudnn_disabled(double_backward), buffers_kept(self._attached()):
            yield

    def _attached(self) -> tuple[Decoder, Prior]:
        if not self._model:
            raise RuntimeError(
                f"transform {self.name!r} refines against the model's decoder and prior: call attach(decoder, prior) "
                "first (vaezoo.model.assembly.build_model does)"
            )
        return self._model

    @contextmanager
    def _refinement(self) -> Iterator[None]:
        self._refining = True
        try:
            yield
        finally:
            self._refining = False

    def _prior_needs_refinement(self) -> bool:
        """Whether evaluating the prior runs this transform (a VampPrior of the transformed encoder does)."""
        with torch.no_grad(), self._refinement():
            try:
                self._attached()[1]()
            except CircularPrior:
                return True
        return False


@contextmanager
def buffers_kept(modules: tuple[nn.Module, ...]) -> Iterator[None]:
    """The buffers of ``modules`` untouched by the block, which runs on copies of them: the steps are an inner
    optimisation, and in training mode a batch norm would otherwise move its running statistics at every step (K
    times per training step, at intermediate posteriors) rather than once, at the refined one, in the model's own
    forward pass. The copies are swapped in and out, never written back: the steps' graph may hold them."""
    swapped = [
        (owner, name, buffer)
        for module in modules
        for owner in module.modules()
        for name, buffer in owner.named_buffers(recurse=False)
    ]
    for owner, name, buffer in swapped:
        setattr(owner, name, buffer.clone())
    try:
        yield
    finally:
        for owner, name, buffer in swapped:
            setattr(owner, name, buffer)


@contextmanager
def cudnn_disabled(disabled: bool) -> Iterator[None]:
    """cuDNN off while ``disabled`` (and restored after): its RNN kernels have no second derivative, which
    differentiating through the steps of an LSTM decoder on CUDA needs; torch's own kernels have one. No effect on
    CPU."""
    previous = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = previous and not disabled
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = previous


def clip_rows(g: Tensor, max_norm: float) -> Tensor:
    """``g 'b d'`` with each row scaled by min(1, max_norm / (‖row‖ + 1e-6)), differentiable twice everywhere
    (the norm of a zero row has no second derivative; it is never clipped, so it is left out)."""
    square = (g * g).sum(dim=-1, keepdim=True)  # 'b 1'
    nonzero = square > 0
    norm = torch.where(nonzero, torch.where(nonzero, square, 1.0).sqrt(), 0.0)
    return g * (max_norm / (norm + CLIP_EPSILON)).clamp(max=1.0)
