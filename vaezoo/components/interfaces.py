"""What each kind of component must do.

Axis legend, used in every docstring and einops pattern of the project:
``b`` batch, ``k`` samples per example, ``d`` latent, ``c h w`` image, ``t`` tokens, ``v`` vocabulary.

A component is a class deriving from one of the interfaces below, with a class attribute ``name`` and a frozen
attrs ``Params`` class. Its base class decides its kind. Posteriors and priors are ``torch.distributions``
objects so that KL, log-densities and reparameterised samples come from torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from vaezoo.components.distributions import kl_or_estimate
from vaezoo.components.optim import adam
from vaezoo.plugins.component import Component


@attrs.frozen
class DataSpec:
    """What one example looks like.

    ``shape`` is one example's shape, e.g. ``(100,)`` or ``(1, 28, 28)``; ``kind`` is ``real`` for continuous
    values, ``binary`` for {0, 1} values, ``tokens`` for token ids. For tokens, ``shape`` is ``(max_len,)``
    (batches may be shorter), ``vocab_size`` is set, and ``pad_id``, ``bos_id`` and ``eos_id`` name the
    padding, start and end tokens; a padded position never contributes to a loss or metric. ``unk_id`` names
    the unknown token where the vocabulary has one (word dropout needs it).
    """

    shape: tuple[int, ...]
    kind: Literal["real", "binary", "tokens"]
    vocab_size: int | None = None
    pad_id: int | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None


class Encoder(Component, nn.Module, ABC):
    """Maps data to the approximate posterior q(z|x)."""

    kind = "encoder"

    def __init__(self, params: Any, spec: DataSpec, latent_dim: int) -> None:
        super().__init__()
        self.params, self.spec, self.latent_dim = params, spec, latent_dim

    @abstractmethod
    def forward(self, x: Tensor) -> Distribution:
        """``x 'b ...' -> q(z|x)`` with batch shape ``(b,)`` and event shape ``(d,)``, supporting rsample."""


class Decoder(Component, nn.Module, ABC):
    """The likelihood p(x|z), returned as log-densities so that any conditioning stays inside the decoder."""

    kind = "decoder"

    def __init__(self, params: Any, spec: DataSpec, latent_dim: int) -> None:
        super().__init__()
        self.params, self.spec, self.latent_dim = params, spec, latent_dim

    @abstractmethod
    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x|z)`` summed over data dimensions: ``x 'b ...'``, ``z 'k b d'`` -> ``'k b'`` in nats, float32.

        Under bf16 autocast (``train.precision``) the network may compute in bfloat16, but the per-dimension terms
        are computed from float32 logits (or parameters) before they are summed."""

    @abstractmethod
    def sample(self, z: Tensor) -> Tensor:
        """Draw ``x ~ p(x|z)`` for ``z 'b d'``, giving ``'b ...'``; uses torch's global generator."""


class Prior(Component, nn.Module, ABC):
    """The prior p(z) used in training."""

    kind = "prior"

    def __init__(self, params: Any, latent_dim: int) -> None:
        super().__init__()
        self.params, self.latent_dim = params, latent_dim

    @abstractmethod
    def forward(self) -> Distribution:
        """p(z) with event shape ``(d,)`` and empty batch shape."""

    def attach(self, encoder: Encoder) -> None:
        """Called once when the model is assembled, with the model's encoder (its ``spec`` describes the data).

        A prior defined through the encoder, such as a VampPrior (a mixture of the encoder's posteriors at learned
        pseudo-inputs), keeps it here, outside its own module tree (e.g. in a tuple) so that the encoder's
        parameters are not saved twice; the default ignores it."""


class PosteriorTransform(Component, nn.Module, ABC):
    """Sits between the encoder and sampling: maps the posterior the encoder gives for ``x`` to the one the model
    uses.

    The model's encoder is then the encoder followed by the transform, everywhere: in training, in evaluation, for
    contrastive inputs and for a prior built from the encoder. A transform may hold parameters (trained with the
    encoder's), behave differently in training and evaluation mode (batch normalisation does), and read the
    model's decoder and prior (refining each posterior by gradient steps on its ELBO does: it differentiates
    through its steps when gradients are enabled, so training reaches the encoder through them). It states what
    posterior it accepts through :meth:`incompatibility`, asked once when the model is assembled.
    """

    kind = "transform"
    #: The smallest training batch the transform is defined on (statistics over the batch need two examples).
    min_batch_size: ClassVar[int] = 1

    def __init__(self, params: Any, latent_dim: int) -> None:
        super().__init__()
        self.params, self.latent_dim = params, latent_dim

    def attach(self, decoder: Decoder, prior: Prior) -> None:
        """Called once when the model is assembled, with the model's decoder and prior. A transform that reads them
        keeps them outside its own module tree (e.g. in a tuple), so that their parameters are not saved twice;
        the default ignores them."""

    def incompatibility(self, posterior: Distribution) -> str | None:
        """Why this transform cannot act on ``posterior`` (an encoder's output on two examples), or None."""
        return None

    @abstractmethod
    def forward(self, posterior: Distribution, x: Tensor) -> Distribution:
        """The transformed q(z|x) for the batch ``x 'b ...'`` the encoder read: batch shape ``(b,)``, event shape
        ``(d,)``, supporting rsample."""


class BatchStatistics:
    """Statistics of the whole training batch, for loss terms built from one (InfoVAE's MMD, free bits).

    This is the case where the batch at hand is the whole batch (one process, or an evaluation): both methods
    return their argument. In a data-parallel training step each process holds a shard, and
    ``vaezoo.training.distributed`` hands the regulariser a version that communicates, differentiably."""

    def mean(self, x: Tensor) -> Tensor:
        """The whole batch's mean of ``x``, a mean over this process's examples."""
        return x

    def gather(self, x: Tensor) -> Tensor:
        """``x 'b ...'`` of every process concatenated, ``'(ranks b) ...'``."""
        return x


WHOLE_BATCH = BatchStatistics()


@attrs.frozen
class Step:
    """Everything a regulariser may look at for one training batch (immutable).

    ``x 'b ...'`` the data batch, ``posterior`` q(z|x), ``z 'b d'`` its reparameterised sample,
    ``log_px 'b'`` = log p(x|z), ``prior`` p(z), ``noise_posterior`` q(z|x_noise) when the regulariser asked
    for noise (else None), ``step`` the global step counted from 0, ``kl_scale`` the factor the run's callbacks
    put on a KL weight β at this step (a KL annealing schedule; 1 without one), ``batch`` the statistics of the
    whole batch when this process holds a shard of it (:class:`BatchStatistics`).
    """

    x: Tensor
    posterior: Distribution
    z: Tensor
    log_px: Tensor
    prior: Distribution
    noise_posterior: Distribution | None
    step: int
    kl_scale: float = 1.0
    batch: BatchStatistics = WHOLE_BATCH

    def kl(self) -> Tensor:
        """KL(q(z|x) || p(z)) per example, ``'b'``, summed over latent dims: in closed form where torch has one,
        else estimated at the step's own sample ``z`` (see :func:`vaezoo.components.distributions.kl_or_estimate`)."""
        return kl_or_estimate(self.posterior, self.prior, self.z)

    def kl_per_dim(self) -> Tensor | None:
        """KL(q(z_d|x) || p(z_d)) per example and latent dim, ``'b d'``, when the posterior and the prior both
        factorise over the dims (torch ``Independent`` over univariate distributions); else None (a mixture prior
        does not)."""
        q, p = self.posterior, self.prior
        if not all(isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1 for d in (q, p)):
            return None
        return kl_or_estimate(q.base_dist, p.base_dist, self.z)


class Regularizer(Component, nn.Module, ABC):
    """Turns a :class:`Step` into named loss terms; the training loss is ReconE plus their sum.

    A regulariser with parameters of its own (a discriminator, say) returns them from
    ``auxiliary_parameters`` and its loss from ``auxiliary_loss``; the trainer gives them their own optimiser
    and steps it after each model step. The trainer never looks at a regulariser's name.
    """

    kind = "regularizer"
    #: True when the regulariser reads ``Step.noise_posterior``; then a noise sampler is required.
    needs_noise: ClassVar[bool] = False
    #: The smallest training batch the objective is defined on (a statistic over pairs of codes needs two).
    min_batch_size: ClassVar[int] = 1
    #: True when the objective multiplies a KL weight by ``Step.kl_scale``, so that a KL schedule (the
    #: ``cyclical_kl`` callback) acts on it; a run that schedules the KL of a regulariser without one is refused
    #: before training. False by default: a regulariser that reads the scale declares it.
    uses_kl_scale: ClassVar[bool] = False

    def __init__(self, params: Any, latent_dim: int) -> None:
        super().__init__()
        self.params, self.latent_dim = params, latent_dim

    @abstractmethod
    def forward(self, step: Step) -> dict[str, Tensor]:
        """Named, already weighted loss terms, each a scalar averaged over the batch (nats per example)."""

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by the regulariser's own optimiser (none by default)."""
        return []

    def auxiliary_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """The optimiser of the auxiliary parameters; Adam at the model's learning rate unless overridden."""
        return adam(self.auxiliary_parameters(), lr=lr)

    def auxiliary_loss(self, step: Step) -> Tensor:
        """Loss for the regulariser's own parameters, called after each model step.

        ``step.z`` and ``step.log_px`` are detached there; the distributions in ``step`` are not and must not
        be differentiated through.
        """
        raise TypeError(f"regularizer {self.name!r} declares no auxiliary parameters")


class NoiseSampler(Component, nn.Module, ABC):
    """Produces contrastive inputs ``x_noise 'b ...'`` in data space from a data batch and the current model."""

    kind = "noise"

    def __init__(self, params: Any, spec: DataSpec) -> None:
        super().__init__()
        self.params, self.spec = params, spec

    def incompatibility(self, data: Data) -> str | None:
        """Why this sampler cannot work on ``data`` (the run is refused before training), or None."""
        return None

    @abstractmethod
    def forward(self, x: Tensor, decoder: Decoder, prior: Prior, data: Data | None, step: int) -> Tensor:
        """Contrastive batch for ``x`` (drawn, where the sampler needs them, from the model's current ``decoder``
        and ``prior``, or from ``data``); never carries gradients."""


#: Where the examples of one split come from: ``{"file": absolute path, "examples": how many, "selection": how they
#: were chosen from the file and by which setting}``.
SourceRecord = dict[str, Any]


class Data:
    """Splits of one data set as tensors, with seeded, resumable batching.

    Subclasses may override ``prepare_train_batch`` (e.g. to binarise afresh) and hold more, such as the
    examples of a noise distribution of the data set's own. ``sources[split]`` records where each split's
    examples were read from (a :data:`SourceRecord`; empty for data made in memory), and ``notes`` are lines about
    the standard files of the data directory a source used or left unused; a run prints both and records the
    sources in its history and results.
    """

    def __init__(self, spec: DataSpec, train: Tensor, valid: Tensor, test: Tensor) -> None:
        self.spec = spec
        self.splits = {"train": train, "valid": valid, "test": test}
        self._epoch_order: tuple[int, int, Tensor] | None = None
        self.sources: dict[str, SourceRecord] = {}
        self.notes: list[str] = []

    def noise_examples(self, split: str) -> Tensor | None:
        """The examples of a noise distribution of the data set's own for ``split`` (read by metrics of the
        ``noise_codes``), or None: most data sets have none."""
        return None

    def source_lines(self) -> list[str]:
        """One line per split read from a file, for people: ``data SPLIT: N examples from 'FILE' (SELECTION)``."""
        return [
            f"data {split}: {record['examples']} examples from '{record['file']}' ({record['selection']})"
            for split, record in self.sources.items()
        ]

    def size(self, split: str) -> int:
        return len(self.splits[split])

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-self.size("train") // batch_size)

    def train_batch(self, epoch: int, index: int, batch_size: int, seed: int) -> Tensor:
        """Batch ``index`` of ``epoch``: a pure function of its arguments, so a resumed run sees the same data."""
        rows = self.batch_rows(seed, epoch, index, batch_size)
        return self.prepare_train_batch(self.train_rows(rows), epoch, index, seed)

    def extra_train_batch(self, step: int, draw: int, batch_size: int, seed: int) -> Tensor:
        """One of the training batches of ``step``'s epoch, chosen at random: the ``draw``-th extra batch of global
        ``step``, for a training strategy that takes batches besides the run's own (aggressive inference training).

        A pure function of its arguments, so a resumed run draws the same batches. ``prepare_train_batch`` sees it
        under a key of its own, ``(-1 - step, draw)``, so that data prepared afresh for each batch (binarised, say)
        is prepared afresh for this one too."""
        batches = self.steps_per_epoch(batch_size)
        state = np.random.SeedSequence([seed, step, draw]).generate_state(1, dtype=np.uint64)
        index = int(torch.randint(batches, (1,), generator=torch.Generator().manual_seed(int(state[0]) >> 1)))
        rows = self.batch_rows(seed, step // batches, index, batch_size)
        return self.prepare_train_batch(self.train_rows(rows), -1 - step, draw, seed)

    def batch_rows(self, seed: int, epoch: int, index: int, batch_size: int) -> Tensor:
        """The training rows of batch ``index`` of ``epoch``: consecutive rows of the epoch's seeded order (the
        latest epoch's order is kept)."""
        if self._epoch_order is None or self._epoch_order[:2] != (seed, epoch):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._epoch_order = (seed, epoch, torch.randperm(self.size("train"), generator=generator))
        return self._epoch_order[2][index * batch_size : (index + 1) * batch_size]

    def train_rows(self, rows: Tensor) -> Tensor:
        """The training examples ``rows`` as one batch."""
        return self.splits["train"][rows]

    def prepare_train_batch(self, batch: Tensor, epoch: int, index: int, seed: int) -> Tensor:
        return batch

    def batches(self, split: str, batch_size: int, limit: int | None = None) -> Iterator[Tensor]:
        """Evaluation batches of ``split`` in a fixed order, at most ``limit`` examples (see
        :func:`evaluation_rows`)."""
        yield from torch.split(self.splits[split][evaluation_rows(self.size(split), limit)], batch_size)


def evaluation_rows(count: int, limit: int | None) -> Tensor:
    """Indices of the examples an evaluation of a split of ``count`` uses when capped at ``limit``, in order.

    All of them without a cap; else ``limit`` rows spread evenly over the split, so that a subset spans it all.
    A prefix would not: splits often come grouped (Omniglot's test rows by character, a corpus by source).
    """
    if limit is None or limit >= count:
        return torch.arange(count)
    return torch.arange(limit) * count // limit


@attrs.frozen
class TrainedData:
    """How a trained run's data was made, for evaluating the run later: the data settings it was trained with and
    the :attr:`Data.sources` its data recorded when the run started (empty if none were recorded)."""

    params: Any
    sources: dict[str, SourceRecord] = attrs.field(factory=dict)


class DataSource(Component, ABC):
    """A named data set; ``load`` reads it (from ``data_dir`` when it needs files) into a :class:`Data`."""

    kind = "data"
    #: False for data sets generated in memory (no data directory needed).
    needs_data_dir: ClassVar[bool] = True
    #: The noise sampler used when a regulariser needs noise and none is chosen (None: one must be chosen).
    default_noise: ClassVar[str | None] = None
    #: Set when the source loads the data of a trained run for an evaluation: how the run's data was made. A source
    #: whose train and valid splits depend on which test file is used derives them from it, so that evaluating on
    #: another test file (or one added to the data directory since) never changes the run's own splits.
    trained: TrainedData | None = None

    def __init__(self, params: Any) -> None:
        self.params = params

    @abstractmethod
    def load(self, data_dir: Path | None, seed: int) -> Data:
        """Read or generate the splits; missing or corrupt files raise UsageError naming the path."""
