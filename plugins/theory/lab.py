"""The non-parametric theory lab: the paper's objectives on finite spaces, optimised exactly.

x takes values in {1..X} and z in {1..Z}. The encoder q(z|x) and the decoder p(x|z) are free tables, each row a
softmax of free logits, so every conditional distribution with full support is reachable. The data distribution
p_d, the noise distribution p_n, the prior p and the contrastive prior n are given probability vectors. Every
expectation and divergence is a finite sum: nothing is sampled. Objectives (nats, docs/maths.md section 6):

- betavae (beta):          ReconE + beta E_pd KL(q(z|x) || p)
- infovae (alpha, lambda): ReconE + (1 - alpha) E_pd KL(q(z|x) || p) + (alpha + lambda - 1) KL(q(z) || p)
- aae (lambda):            ReconE + lambda JSD(q(z) || p)
- ncvae (beta, delta):     ReconE + beta E_pd KL(q(z|x) || p) + delta E_pn KL(q(z|x) || n)

with ReconE = -E_pd E_q(z|x) log p(x|z) and q(z) = sum_x p_d(x) q(z|x) the aggregate posterior.

Axis legend for tensors: ``g`` grid settings (one hyper-parameter setting each), ``r`` random restarts,
``x`` data points, ``z`` codes. An encoder is ``'... x z'`` (rows sum to 1 over z), a decoder ``'... z x'``
(rows sum to 1 over x). Everything is float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import attrs
import einops
import torch
from torch import Tensor
from torch.distributions import Categorical, kl_divergence

from vaezoo.api import UsageError, discriminator_jsd
from vaezoo_plugins.theory.defaults import (
    DEFAULT_BETAS,
    DEFAULT_DELTAS,
    DEFAULT_LAMBDA,
    DEFAULT_LR,
    DEFAULT_RESTARTS,
    DEFAULT_SEED,
    DEFAULT_STEPS,
    REGULARIZERS,
)

DTYPE = torch.float64
#: I(X;Z) below this many nats counts as posterior collapse in the lab's tables.
COLLAPSE_NATS = 1e-3
#: Standard deviation of the random initial logits: far enough from uniform rows that a start is not collapsed.
INIT_SCALE = 2.0


# --------------------------------------------------------------------------------------------------- problem


def probability_vector(name: str, values: Sequence[float], size: int | None = None) -> tuple[float, ...]:
    """``values`` divided by their sum, after checking they are finite and strictly positive.

    ``size``, when given, is the required length. Raises :class:`UsageError` naming ``name``, the bad value and
    what is expected.
    """
    values = tuple(float(v) for v in values)
    if not values:
        raise UsageError(f"{name} is empty; expected comma-separated positive numbers")
    if size is not None and len(values) != size:
        raise UsageError(f"{name} has {len(values)} entries ({_show(values)}); expected {size}")
    for value in values:
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"{name} has the entry {value:g}; expected every entry to be a finite number > 0")
    total = math.fsum(values)
    return tuple(v / total for v in values)


def _show(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _flag(field: str) -> str:
    """The command-line option of a field, which error messages name: ``p_data`` -> ``--p-data``."""
    return "--" + field.replace("_", "-")


def _as_distribution(name: str) -> Callable[[Sequence[float]], tuple[float, ...]]:
    return lambda values: probability_vector(name, values)


def default_vectors(x_size: int, z_size: int) -> dict[str, tuple[float, ...]]:
    """Unnormalised weights of the lab's default problem of any size (keys are :class:`Problem`'s fields).

    p_d(x) ∝ X + 1 - x (decreasing), p_n(x) ∝ x (increasing), p(z) uniform, n(z) ∝ 8^(-(z-1)) (peaked at z = 1);
    so p_n != p_d and n != p whenever X, Z >= 2.
    """
    for name, size in (("--x-size", x_size), ("--z-size", z_size)):
        if size < 2:
            raise UsageError(f"{name} is {size}; expected an integer >= 2")
    return {
        "p_data": tuple(float(x) for x in range(x_size, 0, -1)),
        "p_noise": tuple(float(x) for x in range(1, x_size + 1)),
        "prior": (1.0,) * z_size,
        "contrastive_prior": tuple(8.0 ** (-k) for k in range(z_size)),
    }


@attrs.frozen
class Problem:
    """p_d and p_n over x in {1..X}, p and n over z in {1..Z}: strictly positive and normalised on construction.

    Bad vectors raise :class:`UsageError` naming the command-line option (``--p-data`` ...) that sets them.
    """

    p_data: tuple[float, ...] = attrs.field(converter=_as_distribution("--p-data"))
    p_noise: tuple[float, ...] = attrs.field(converter=_as_distribution("--p-noise"))
    prior: tuple[float, ...] = attrs.field(converter=_as_distribution("--prior"))
    contrastive_prior: tuple[float, ...] = attrs.field(converter=_as_distribution("--contrastive-prior"))

    def __attrs_post_init__(self) -> None:
        for name, other in (("p_noise", "p_data"), ("contrastive_prior", "prior")):
            values, expected = getattr(self, name), len(getattr(self, other))
            if len(values) != expected:
                raise UsageError(
                    f"{_flag(name)} has {len(values)} entries ({_show(values)}); "
                    f"expected {expected}, as many as {_flag(other)}"
                )

    @classmethod
    def default(cls, x_size: int = 4, z_size: int = 4) -> Problem:
        """The problem of :func:`default_vectors`."""
        return cls(**default_vectors(x_size, z_size))

    @property
    def x_size(self) -> int:
        return len(self.p_data)

    @property
    def z_size(self) -> int:
        return len(self.prior)

    def tensor(self, field: str) -> Tensor:
        """One of the four vectors as a float64 tensor (``'x'`` or ``'z'``)."""
        return torch.tensor(getattr(self, field), dtype=DTYPE)

    def data_entropy(self) -> float:
        """H(X) under p_d in nats: the largest I(X;Z) can be."""
        return Categorical(probs=self.tensor("p_data")).entropy().item()


# ---------------------------------------------------------------------------------------------- exact terms


def aggregate_posterior(p_data: Tensor, encoder_logits: Tensor) -> Tensor:
    """q(z) = sum_x p_d(x) q(z|x): ``'x'``, ``'... x z'`` -> ``'... z'``."""
    return einops.einsum(p_data, encoder_logits.softmax(-1), "x, ... x z -> ... z")


def expected_kl(weights: Tensor, encoder_logits: Tensor, target: Categorical) -> Tensor:
    """E_{x ~ weights} KL(q(z|x) || target): ``'x'``, ``'... x z'`` -> ``'...'``.

    ``target`` has batch shape broadcastable to ``'... x'`` (a fixed prior has none).
    """
    kl = kl_divergence(Categorical(logits=encoder_logits), target)  # '... x'
    return einops.einsum(weights, kl, "x, ... x -> ...")


def reconstruction_error(p_data: Tensor, encoder_logits: Tensor, decoder_logits: Tensor) -> Tensor:
    """ReconE = -sum_x p_d(x) sum_z q(z|x) log p(x|z): ``'x'``, ``'... x z'``, ``'... z x'`` -> ``'...'``."""
    log_likelihood = decoder_logits.log_softmax(-1)  # '... z x', log p(x|z)
    return -einops.einsum(p_data, encoder_logits.softmax(-1), log_likelihood, "x, ... x z, ... z x -> ...")


def mutual_information(p_data: Tensor, encoder_logits: Tensor) -> Tensor:
    """I(X;Z) = E_pd KL(q(z|x) || q(z)) in nats, clamped at 0 against rounding: ``'x'``, ``'... x z'`` -> ``'...'``."""
    aggregate = Categorical(probs=aggregate_posterior(p_data, encoder_logits).unsqueeze(-2))  # batch '... 1'
    return expected_kl(p_data, encoder_logits, aggregate).clamp(min=0)


def exact_jsd(q: Tensor, p: Tensor) -> Tensor:
    """JSD(q || p) of categoricals ``'... z'`` and ``'z'`` (or ``'... z'``) -> ``'...'``, in nats.

    Realised as :func:`vaezoo.components.divergences.discriminator_jsd`, the function the AAE regulariser trains
    through,
    with the optimal discriminator logit log p(z) - log q(z) and the exact weights p(z) and q(z) in place of
    samples; then the discriminator bound is the JSD itself. Both must have full support.
    """
    q, p = torch.broadcast_tensors(q, p)
    flat_q, flat_p = q.reshape(-1, q.shape[-1]), p.reshape(-1, p.shape[-1])
    logits = flat_p.log() - flat_q.log()  # optimal discriminator, one row per distribution
    jsd = torch.vmap(discriminator_jsd)(logits, logits, flat_p, flat_q)
    return jsd.reshape(q.shape[:-1])


def optimal_decoder_logits(p_data: Tensor, encoder_logits: Tensor) -> Tensor:
    """The Bayes decoder log p(x|z) = log q(z|x) + log p_d(x) - log q(z): ``'... x z'`` -> ``'... z x'``.

    It minimises ReconE for a fixed encoder; then ReconE = H(X) - I(X;Z).
    """
    log_q = encoder_logits.log_softmax(-1)
    log_aggregate = aggregate_posterior(p_data, encoder_logits).log().unsqueeze(-2)  # '... 1 z'
    log_joint = log_q + p_data.log().unsqueeze(-1) - log_aggregate  # '... x z'
    return einops.rearrange(log_joint, "... x z -> ... z x")


# ------------------------------------------------------------------------------------------------ objectives


@attrs.frozen
class Setting:
    """One hyper-parameter setting of one regulariser; parameters it does not use are None.

    ``sweep`` is the grid value the setting was made from (the x axis of the plot): beta for betavae and ncvae,
    1 - alpha for infovae, lambda for aae.
    """

    regularizer: str = attrs.field(validator=attrs.validators.in_(REGULARIZERS))
    sweep: float
    beta: float | None = None
    delta: float | None = None
    alpha: float | None = None
    lambda_: float | None = None


def settings_grid(
    regularizer: str, betas: Sequence[float], deltas: Sequence[float], infovae_lambda: float
) -> list[Setting]:
    """The settings of one regulariser for the swept values ``betas`` (see :class:`Setting` for the mapping).

    ncvae gets one setting per (beta, delta); infovae uses alpha = 1 - beta, so that its weight of
    E_pd KL(q(z|x) || p) is beta as in betavae, and the fixed ``infovae_lambda``; aae uses lambda = beta.
    """
    if regularizer == "betavae":
        return [Setting("betavae", b, beta=b) for b in betas]
    if regularizer == "ncvae":
        return [Setting("ncvae", b, beta=b, delta=d) for d in deltas for b in betas]
    if regularizer == "infovae":
        return [Setting("infovae", b, alpha=round(1.0 - b, 12), lambda_=infovae_lambda) for b in betas]
    if regularizer == "aae":
        return [Setting("aae", b, lambda_=b) for b in betas]
    raise UsageError(f"unknown regularizer {regularizer!r}; choose from {', '.join(REGULARIZERS)}")


def _column(settings: Sequence[Setting], name: str) -> Tensor:
    """A hyper-parameter of every setting as ``'g 1'``, ready to broadcast against ``'g r'``."""
    return torch.tensor([getattr(s, name) for s in settings], dtype=DTYPE).unsqueeze(-1)


def _betavae(problem: Problem, settings: Sequence[Setting], enc: Tensor, dec: Tensor) -> Tensor:
    p_data = problem.tensor("p_data")
    kl_prior = expected_kl(p_data, enc, Categorical(probs=problem.tensor("prior")))
    return reconstruction_error(p_data, enc, dec) + _column(settings, "beta") * kl_prior


def _infovae(problem: Problem, settings: Sequence[Setting], enc: Tensor, dec: Tensor) -> Tensor:
    p_data, prior = problem.tensor("p_data"), Categorical(probs=problem.tensor("prior"))
    alpha, lambda_ = _column(settings, "alpha"), _column(settings, "lambda_")
    kl_prior = expected_kl(p_data, enc, prior)
    kl_aggregate = kl_divergence(Categorical(probs=aggregate_posterior(p_data, enc)), prior)
    return reconstruction_error(p_data, enc, dec) + (1 - alpha) * kl_prior + (alpha + lambda_ - 1) * kl_aggregate


def _aae(problem: Problem, settings: Sequence[Setting], enc: Tensor, dec: Tensor) -> Tensor:
    p_data = problem.tensor("p_data")
    jsd = exact_jsd(aggregate_posterior(p_data, enc), problem.tensor("prior"))
    return reconstruction_error(p_data, enc, dec) + _column(settings, "lambda_") * jsd


def _ncvae(problem: Problem, settings: Sequence[Setting], enc: Tensor, dec: Tensor) -> Tensor:
    p_data = problem.tensor("p_data")
    kl_prior = expected_kl(p_data, enc, Categorical(probs=problem.tensor("prior")))
    kl_contrastive = expected_kl(problem.tensor("p_noise"), enc, Categorical(probs=problem.tensor("contrastive_prior")))
    beta, delta = _column(settings, "beta"), _column(settings, "delta")
    return reconstruction_error(p_data, enc, dec) + beta * kl_prior + delta * kl_contrastive


OBJECTIVES: dict[str, Callable[[Problem, Sequence[Setting], Tensor, Tensor], Tensor]] = {
    "betavae": _betavae,
    "infovae": _infovae,
    "aae": _aae,
    "ncvae": _ncvae,
}


def objective(problem: Problem, settings: Sequence[Setting], encoder_logits: Tensor, decoder_logits: Tensor) -> Tensor:
    """The exact loss of every setting and restart: ``'g r x z'``, ``'g r z x'`` -> ``'g r'`` (nats).

    All ``settings`` must belong to one regulariser; setting g goes with row g of the logits.
    """
    regularizers = {s.regularizer for s in settings}
    if len(regularizers) != 1:
        raise ValueError(f"settings of one regulariser expected, got {sorted(regularizers)}")
    return OBJECTIVES[regularizers.pop()](problem, settings, encoder_logits, decoder_logits)


# ------------------------------------------------------------------------------------------------- optimiser


@attrs.frozen(eq=False)
class Optimum:
    """The best of the restarts for one setting: ``encoder 'x z'`` and ``decoder 'z x'`` are probabilities.

    ``restart_objectives`` and ``restart_mi`` hold every restart's final loss and I(X;Z) (nats), best first.
    """

    setting: Setting
    objective: float
    mutual_information: float
    encoder: Tensor
    decoder: Tensor
    restart_objectives: tuple[float, ...]
    restart_mi: tuple[float, ...]


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (restored after).

    The lab's tensors have a few hundred entries: thread hand-offs cost far more than the arithmetic, and on a
    busy 2-core machine they made each small op about 300 times slower than on one thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def initial_logits(problem: Problem, restarts: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random encoder ``'r x z'`` and decoder ``'r z x'`` logits, N(0, INIT_SCALE^2), deterministic by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    x, z = problem.x_size, problem.z_size
    encoder = torch.randn(restarts, x, z, generator=generator, dtype=DTYPE) * INIT_SCALE
    decoder = torch.randn(restarts, z, x, generator=generator, dtype=DTYPE) * INIT_SCALE
    return encoder, decoder


def minimise(
    problem: Problem,
    settings: Sequence[Setting],
    *,
    restarts: int = DEFAULT_RESTARTS,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    lr: float = DEFAULT_LR,
) -> list[Optimum]:
    """Minimise the objective of every setting (one regulariser) from the same ``restarts`` random starts.

    All settings and restarts are optimised at once as independent problems ``'g r'`` (Adam is elementwise,
    so summing their losses does not couple them), for ``steps`` Adam steps whose learning rate decays
    from ``lr`` to ``lr / 1000`` on a cosine schedule. Returns, per setting, the restart with the lowest loss.
    """
    if restarts < 1 or steps < 1:
        raise UsageError(f"restarts and steps must be >= 1, got {restarts} and {steps}")
    encoder0, decoder0 = initial_logits(problem, restarts, seed)
    g = len(settings)
    encoder = einops.repeat(encoder0, "r x z -> g r x z", g=g).clone().requires_grad_()
    decoder = einops.repeat(decoder0, "r z x -> g r z x", g=g).clone().requires_grad_()
    optimiser = torch.optim.Adam([encoder, decoder], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps, eta_min=lr / 1000)
    with single_threaded():
        for _ in range(steps):
            optimiser.zero_grad()
            objective(problem, settings, encoder, decoder).sum().backward()
            optimiser.step()
            schedule.step()
    with torch.no_grad():
        losses = objective(problem, settings, encoder, decoder)  # 'g r'
        mi = mutual_information(problem.tensor("p_data"), encoder)  # 'g r'
    return [
        _best(setting, losses[i], mi[i], encoder[i].detach(), decoder[i].detach()) for i, setting in enumerate(settings)
    ]


def _best(setting: Setting, losses: Tensor, mi: Tensor, encoder: Tensor, decoder: Tensor) -> Optimum:
    """The restart with the lowest loss among ``losses 'r'`` (with its ``mi 'r'`` and logits ``'r x z'``...)."""
    order = losses.argsort()
    best = order[0]
    return Optimum(
        setting=setting,
        objective=losses[best].item(),
        mutual_information=mi[best].item(),
        encoder=encoder[best].softmax(-1),
        decoder=decoder[best].softmax(-1),
        restart_objectives=tuple(losses[order].tolist()),
        restart_mi=tuple(mi[order].tolist()),
    )


# ----------------------------------------------------------------------------------------------- fixed point


@attrs.frozen(eq=False)
class FixedPoint:
    """The NC-VAE fixed point of docs/maths.md section 6: ``encoder 'x z'`` (probabilities), iterations used, and the
    last change max |q_new - q_old| (below the tolerance when ``converged``)."""

    encoder: Tensor
    iterations: int
    change: float
    converged: bool


def ncvae_map(problem: Problem, beta: float, delta: float, encoder: Tensor) -> Tensor:
    """One application of Theorem 5's map: ``q 'x z' -> log q' 'x z'`` (normalised log-probabilities).

    log q'(z|x) ∝ [p_d(x) (beta log p(z) - log gamma(z)) + delta p_n(x) log n(z)] / ((beta-1) p_d(x) + delta p_n(x))
    with gamma(z) = sum_x p_d(x) q(z|x). Defined for beta > 1, delta > 0 (the denominator is then positive).
    """
    p_data, p_noise = problem.tensor("p_data"), problem.tensor("p_noise")
    log_gamma = einops.einsum(p_data, encoder, "x, x z -> z").log()
    data_part = einops.einsum(p_data, beta * problem.tensor("prior").log() - log_gamma, "x, z -> x z")
    noise_part = einops.einsum(delta * p_noise, problem.tensor("contrastive_prior").log(), "x, z -> x z")
    denominator = ((beta - 1) * p_data + delta * p_noise).unsqueeze(-1)  # 'x 1'
    return ((data_part + noise_part) / denominator).log_softmax(-1)


def default_damping(problem: Problem, beta: float, delta: float) -> float:
    """1 / (1 + G), G = max_x p_d(x) / ((beta-1) p_d(x) + delta p_n(x)): the map's largest gain in log gamma.

    Linearised, a damped step multiplies an error along log gamma by about 1 - damping (1 + gain), so this
    damping cancels the stiffest direction and keeps every other one contracting. A fixed 0.5 diverges when
    beta is near 1 and delta is small (G large).
    """
    p_data, p_noise = problem.tensor("p_data"), problem.tensor("p_noise")
    gain = (p_data / ((beta - 1) * p_data + delta * p_noise)).max().item()
    return 1 / (1 + gain)


def ncvae_fixed_point(
    problem: Problem,
    beta: float,
    delta: float,
    *,
    start: Tensor | None = None,
    damping: float | None = None,
    tol: float = 1e-13,
    max_iterations: int = 100_000,
) -> FixedPoint:
    """Iterate :func:`ncvae_map` from ``start`` (an encoder ``'x z'``; default a fixed random, non-collapsed one).

    Each step moves the log-encoder a fraction ``damping`` of the way to the map's output; by default
    :func:`default_damping`. Stops when no entry of q(z|x) changes by more than ``tol``, or after
    ``max_iterations``. Requires beta > 1 and delta > 0.
    """
    if not (beta > 1 and delta > 0):
        raise ValueError(f"the NC-VAE fixed point needs beta > 1 and delta > 0, got beta={beta}, delta={delta}")
    if start is None:
        start = initial_logits(problem, 1, seed=12345)[0][0].softmax(-1)
    if damping is None:
        damping = default_damping(problem, beta, delta)
    log_q, change, iteration = start.log(), math.inf, 0
    with single_threaded():
        while change > tol and iteration < max_iterations:
            target = ncvae_map(problem, beta, delta, log_q.exp())
            new_log_q = ((1 - damping) * log_q + damping * target).log_softmax(-1)
            change = (new_log_q.exp() - log_q.exp()).abs().max().item()
            log_q, iteration = new_log_q, iteration + 1
    return FixedPoint(log_q.exp(), iteration, change, change <= tol)


def has_fixed_point(setting: Setting) -> bool:
    """Theorem 5's hypotheses: an ncvae setting with beta > 1 and delta > 0."""
    return setting.regularizer == "ncvae" and setting.beta > 1 and setting.delta > 0


# ------------------------------------------------------------------------------------------------------ lab

#: Restarts whose final loss is within this many nats of the best are "tied": the objective cannot tell them apart.
TIE_NATS = 1e-6


def _non_negative(name: str) -> Callable[[Sequence[float]], tuple[float, ...]]:
    def convert(values: Sequence[float]) -> tuple[float, ...]:
        values = tuple(float(v) for v in values)
        if not values:
            raise UsageError(f"{name} is empty; expected comma-separated numbers >= 0")
        for value in values:
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{name} has the value {value:g}; expected finite numbers >= 0")
        return values

    return convert


def _regularizer_names(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    for name in names:
        if name not in REGULARIZERS:
            raise UsageError(f"--regularizers has {name!r}; choose from {', '.join(REGULARIZERS)}")
    if not names:
        raise UsageError(f"--regularizers is empty; choose from {', '.join(REGULARIZERS)}")
    return names


def _at_least(bound: float) -> Callable[[object, attrs.Attribute, float], None]:
    def check(_instance: object, attribute: attrs.Attribute, value: float) -> None:
        if not value >= bound:
            flag = attribute.metadata.get("flag", _flag(attribute.name))
            raise UsageError(f"{flag} is {value}; expected a number >= {bound:g}")

    return check


@attrs.frozen
class LabConfig:
    """What to optimise: a problem, the swept values (see :func:`settings_grid`) and the optimiser's budget.

    Bad values raise :class:`UsageError` naming the command-line option that sets them.
    """

    problem: Problem = attrs.field(factory=Problem.default)
    betas: tuple[float, ...] = attrs.field(default=DEFAULT_BETAS, converter=_non_negative("--betas"))
    deltas: tuple[float, ...] = attrs.field(default=DEFAULT_DELTAS, converter=_non_negative("--deltas"))
    infovae_lambda: float = attrs.field(default=DEFAULT_LAMBDA, validator=_at_least(0), metadata={"flag": "--lambda"})
    regularizers: tuple[str, ...] = attrs.field(default=REGULARIZERS, converter=_regularizer_names)
    restarts: int = attrs.field(default=DEFAULT_RESTARTS, validator=_at_least(1))
    steps: int = attrs.field(default=DEFAULT_STEPS, validator=_at_least(1))
    seed: int = DEFAULT_SEED
    lr: float = attrs.field(default=DEFAULT_LR, validator=_at_least(1e-12))

    def settings(self, regularizer: str) -> list[Setting]:
        """The grid of one regulariser."""
        return settings_grid(regularizer, self.betas, self.deltas, self.infovae_lambda)


@attrs.frozen(eq=False)
class Comparison:
    """The NC-VAE optimum against Theorem 5's fixed point: I(X;Z) and loss at the fixed point (with the Bayes
    decoder), and max over (x, z) of |q_opt(z|x) - q_fp(z|x)|."""

    fixed_point: FixedPoint
    mutual_information: float
    objective: float
    max_abs_diff: float


@attrs.frozen(eq=False)
class Row:
    """One setting's result: the best optimum, how many restarts tied with it (within TIE_NATS) and the range
    of I(X;Z) among those, and for ncvae with beta > 1 and delta > 0 the fixed-point comparison."""

    optimum: Optimum
    tied_restarts: int
    tied_mi: tuple[float, float]
    comparison: Comparison | None

    @property
    def collapsed(self) -> bool:
        """I(X;Z) at the optimum is below COLLAPSE_NATS."""
        return self.optimum.mutual_information < COLLAPSE_NATS


@attrs.frozen(eq=False)
class LabResult:
    """Every row of a lab run, in the order regulariser, delta, beta; H(X) in nats; wall time in seconds."""

    config: LabConfig
    rows: tuple[Row, ...]
    data_entropy: float
    seconds: float


def compare_with_fixed_point(problem: Problem, optimum: Optimum) -> Comparison:
    """Theorem 5's fixed point for the optimum's (beta, delta), compared with the optimum's encoder."""
    setting = optimum.setting
    fixed_point = ncvae_fixed_point(problem, setting.beta, setting.delta)
    logits = fixed_point.encoder.log()
    decoder = optimal_decoder_logits(problem.tensor("p_data"), logits)
    loss = objective(problem, [setting], logits[None, None], decoder[None, None]).item()
    return Comparison(
        fixed_point=fixed_point,
        mutual_information=mutual_information(problem.tensor("p_data"), logits).item(),
        objective=loss,
        max_abs_diff=(optimum.encoder - fixed_point.encoder).abs().max().item(),
    )


def make_row(problem: Problem, optimum: Optimum) -> Row:
    """Summarise one optimum (ties among restarts, fixed-point comparison where Theorem 5 applies)."""
    losses, mi = optimum.restart_objectives, optimum.restart_mi
    tied = [m for loss, m in zip(losses, mi, strict=True) if loss - losses[0] <= TIE_NATS]
    comparison = compare_with_fixed_point(problem, optimum) if has_fixed_point(optimum.setting) else None
    return Row(optimum, len(tied), (min(tied), max(tied)), comparison)


def run_lab(config: LabConfig) -> LabResult:
    """Optimise every regulariser over its grid and compare NC-VAE with its fixed point. Deterministic by seed."""
    start = time.perf_counter()
    rows: list[Row] = []
    for regularizer in config.regularizers:
        optima = minimise(
            config.problem,
            config.settings(regularizer),
            restarts=config.restarts,
            steps=config.steps,
            seed=config.seed,
            lr=config.lr,
        )
        rows.extend(make_row(config.problem, optimum) for optimum in optima)
    return LabResult(config, tuple(rows), config.problem.data_entropy(), time.perf_counter() - start)
