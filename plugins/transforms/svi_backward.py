"""SA-VAE's steps differentiated by Kim et al.'s reverse pass (``savae`` with ``backward = "finite_difference"``): the
steps run once without a graph, their trajectory is cached, and the backward pass accumulates the adjoints step by
step with each Hessian-vector product a one-sided difference of two gradients of the same stochastic objective.

The forward pass is :meth:`SemiAmortized.refine`'s, for k = 0 … K−1 (λ = (μ, log σ²), L̂_k the negative ELBO at
step k's draws, θ the parameters of the decoder and the prior):

    G_k = ∇_λ L̂_k(λ_k),   g_k = clip(G_k),   m_k = γ m_{k−1} − g_k,   λ_{k+1} = λ_k + α ⊙ m_k.

The backward pass starts from λ̄ = ∂F/∂λ_K and v = 0 and, for k = K−1 … 0 (v the adjoint of m_k, J_k the Jacobian of
the clip at G_k, symmetric):

    v ← γ v + α ⊙ λ̄,     u = J_k v,
    λ̄ ← λ̄ − [∇_λ L̂_k(λ_k + h u) − G_k] / h                    (≈ λ̄ − H_λλ u),
    θ̄ ← θ̄ − [∇_θ L̂_k(λ_k + h u) − ∇_θ L̂_k(λ_k)] / h            (≈ θ̄ − H_θλ u),

ending with dF/dλ0 = λ̄ and the through-the-steps part of dF/dθ = θ̄. One gradient evaluation per step forward (of λ
and θ together) and one backward, where the exact path's double backward costs about three.

- **Parameters.** The decoder's and the prior's trained parameters are inputs of the :class:`torch.autograd.Function`,
  which returns θ̄ as their gradient. Autograd adds it to the direct term of the loss at λ_K, into ``.grad`` or
  whatever asked (``torch.autograd.grad``, data-parallel hooks), before the run's gradient clipping sees the total.
- **The clip.** The derivative is that of the forward map as defined: the adjoint v of g_k is taken through the clip
  exactly (``u = J_k v``, autograd on the cached G_k, no model evaluation), and the differences are of unclipped
  gradients. Nothing in the reverse pass is clipped.
- **The step h.** One h for all steps, set so that the last step's perturbation h·u_{K−1} has root-mean-square
  ``fd_step`` over the batch: the quotient then does not depend on the scale of the loss at λ_K (Kim et al.'s
  perturbation r·v, r = 1e-5, does: with vaezoo's per-example step size of 1/32 and a batch-mean loss it is about
  10⁻⁸ on the Yahoo LSTM VAE, below float32's resolution of λ, and the gradients came out 25 % off), and the θ terms
  of all steps share one denominator, so the forward pass keeps a single sum Σ_k ∇_θ L̂_k(λ_k) (the parameters' size),
  not one gradient per step. ``fd_step`` defaults to √ε of the coarsest arithmetic of the objective (float32: 3.5e-4;
  bf16 autocast: 0.088, whose 8 significant bits a step of 1e-5 does not resolve).
- **Random numbers.** The state of torch's generators is recorded before each step's objective and restored for its
  replay, so that ∇L̂_k(λ_k + h u) draws the same ε and the same dropout masks as ∇L̂_k(λ_k); the replay runs in a
  forked generator, leaving the global one as it was. The autocast state of the forward pass is restored too (torch
  runs the backward pass outside autocast), so that both gradients of a difference are the same function. The
  decoder and the prior must be in the same mode (training or evaluation) at the backward pass as at the forward
  pass, as a training step leaves them.

Memory: λ_k and G_k of every step (4 × K × b × d numbers), K generator states, one copy of θ's gradients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.distributions import Distribution

if TYPE_CHECKING:
    from vaezoo_plugins.transforms.svi import SemiAmortized

Pair = tuple[Tensor, Tensor]  # (μ part, log σ² part), 'b d' each


class FiniteDifferenceSteps(torch.autograd.Function):
    """``apply(transform, x, μ0, log σ0², *θ)`` → (μ_K, log σ²_K): ``transform``'s K steps from λ0 on the batch
    ``x``, differentiable in λ0 and in θ (the parameters :meth:`SemiAmortized.refinement_parameters` lists) through
    the reverse pass above."""

    @staticmethod
    def forward(ctx: Any, transform: SemiAmortized, x: Tensor, mean: Tensor, logvar: Tensor, *parameters: Tensor):
        device = mean.device
        ctx.transform, ctx.x, ctx.parameters = transform, x, parameters
        ctx.autocast = (device.type, torch.is_autocast_enabled(device.type), torch.get_autocast_dtype(device.type))
        ctx.step_size = transform.params.fd_step or default_step(ctx.autocast, (mean, *parameters))
        ctx.points, ctx.gradients, ctx.states = [], [], []
        ctx.parameter_sum = [torch.zeros_like(p) for p in parameters]  # Σ_k ∇_θ L̂_k(λ_k)
        point = (mean.detach(), logvar.detach())
        velocity = (torch.zeros_like(mean), torch.zeros_like(logvar))
        with torch.enable_grad():
            prior = transform.prior()
            for _ in range(transform.params.steps):
                ctx.states.append(generator_states(device))
                gradients, parameter_gradients = objective_gradients(transform, point, x, prior, parameters)
                ctx.points.append(point)
                ctx.gradients.append(gradients)
                for total, gradient in zip(ctx.parameter_sum, parameter_gradients, strict=True):
                    total += gradient
                clipped = tuple(transform.clip(g) for g in gradients)
                point, velocity = transform.advance(point, velocity, clipped)
        return point

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_mean: Tensor | None, grad_logvar: Tensor | None):
        transform, params = ctx.transform, ctx.transform.params
        rates = (params.lr_mean, params.lr_logvar)
        outputs = zip((grad_mean, grad_logvar), ctx.points[0], strict=True)
        adjoint = tuple(torch.zeros_like(p) if g is None else g for g, p in outputs)  # λ̄, from λ̄_K
        velocity = tuple(torch.zeros_like(a) for a in adjoint)  # v, the adjoint of m_k
        perturbed_sum = [torch.zeros_like(p) for p in ctx.parameters]  # Σ_k ∇_θ L̂_k(λ_k + h u_k)
        step, device = None, adjoint[0].device
        with replaying(device), restored_autocast(ctx.autocast), transform.stepping(double_backward=False):
            prior = transform.prior()
            for k in reversed(range(len(ctx.points))):
                velocity = tuple(params.momentum * v + r * a for v, r, a in zip(velocity, rates, adjoint, strict=True))
                direction = through_clip(transform, ctx.gradients[k], velocity)  # u = J_k v
                if step is None:
                    step = difference_step(direction, ctx.step_size)
                restore_generators(ctx.states[k], device)
                point = tuple(p + step * u for p, u in zip(ctx.points[k], direction, strict=True))
                gradients, parameter_gradients = objective_gradients(transform, point, ctx.x, prior, ctx.parameters)
                differences = zip(adjoint, gradients, ctx.gradients[k], strict=True)
                adjoint = tuple(a - (g - g0) / step for a, g, g0 in differences)
                for total, gradient in zip(perturbed_sum, parameter_gradients, strict=True):
                    total += gradient
        sums = zip(ctx.parameter_sum, perturbed_sum, strict=True)
        return None, None, *adjoint, *((base - perturbed) / step for base, perturbed in sums)


def objective_gradients(
    transform: SemiAmortized, point: tuple[Tensor, ...], x: Tensor, prior: Distribution, parameters: tuple[Tensor, ...]
) -> tuple[Pair, list[Tensor]]:
    """∇_λ (unclipped, ``'b d'`` each) and ∇_θ of the batch's summed negative ELBO at λ = ``point``, without a graph;
    zeros for a parameter the objective does not reach."""
    point = tuple(part.detach().requires_grad_() for part in point)
    loss = transform.negative_elbo(*point, x, prior).sum()
    inputs = (*point, *parameters)
    # the graph of ``prior`` from the prior's parameters serves every step: retained
    gradients = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    gradients = [torch.zeros_like(t) if g is None else g for g, t in zip(gradients, inputs, strict=True)]
    return (gradients[0], gradients[1]), gradients[2:]


def through_clip(transform: SemiAmortized, gradients: Pair, adjoint: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """J_kᵀ ``adjoint``: the adjoint of the clipped gradients taken back to the unclipped ``gradients`` G_k, by
    autograd through the clip alone."""
    with torch.enable_grad():
        unclipped = tuple(g.detach().requires_grad_() for g in gradients)
        clipped = tuple(transform.clip(g) for g in unclipped)
        return torch.autograd.grad(clipped, unclipped, adjoint)


def difference_step(direction: tuple[Tensor, ...], size: float) -> float:
    """h such that h·``direction`` has root-mean-square ``size`` (``size`` itself for a zero direction)."""
    square = sum(float((u.double() ** 2).sum()) for u in direction)
    count = sum(u.numel() for u in direction)
    rms = (square / count) ** 0.5
    return size / rms if 0 < rms < float("inf") else size


def default_step(autocast: tuple[str, bool, torch.dtype], tensors: tuple[Tensor, ...]) -> float:
    """√ε of the coarsest floating-point format the objective is computed in: that of ``tensors`` (λ0 and θ) or,
    when it is on, autocast's."""
    _, enabled, dtype = autocast
    dtypes = [t.dtype for t in tensors if t.is_floating_point()] + ([dtype] if enabled else [])
    return max(torch.finfo(d).eps for d in dtypes) ** 0.5


def generator_states(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The state of torch's CPU generator and, on CUDA, of ``device``'s."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def restore_generators(states: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(states[0])
    if states[1] is not None:
        torch.cuda.set_rng_state(states[1], device)


def restored_autocast(state: tuple[str, bool, torch.dtype]) -> torch.autocast:
    """The autocast region the forward pass ran in (``state``: device type, enabled, dtype)."""
    device_type, enabled, dtype = state
    return torch.autocast(device_type, dtype=dtype, enabled=enabled)


@contextmanager
def replaying(device: torch.device) -> Iterator[None]:
    """A block free to reset torch's generators: their states are restored after it."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        yield
