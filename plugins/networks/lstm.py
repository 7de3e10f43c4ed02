"""LSTM encoder and decoder for token sequences (docs/maths.md section 7; the text VAE of He et al. 2019).

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``t`` tokens, ``v`` vocabulary, ``e`` embedding,
``h`` hidden, ``r`` rows (sequences run through the LSTM at once, e.g. ``(k b)``), ``n`` predicted tokens, ``o`` the
sequences still open while sampling, ``f`` the inputs of the output layer (``h``, or ``h + d`` in ``skip_lstm``).

Data: ``x 'b t'`` holds ``BOS w1 .. wn EOS`` then padding (``spec.pad_id``), the layout of
``vaezoo_plugins.data.text``; a batch may carry padding columns beyond its longest sequence, which are cut off.

Encoder: an embedding and a single-layer LSTM read the whole sequence, start and end tokens included; the hidden
state after the last real token (EOS) is mapped linearly to the mean and log standard deviation of q(z|x).

Decoder (teacher forcing): inputs ``x[:, :-1]`` = ``BOS w1 .. wn`` and targets ``x[:, 1:]`` = ``w1 .. wn EOS``;
the prediction of target i sees inputs 0..i only, so token i+1 is never visible while it is predicted. z is
concatenated to every input embedding and mapped linearly to the initial cell state, c0 = W z (+ b), with
h0 = tanh(c0) (as in He et al.'s code). Targets at padded positions are masked out of the log-likelihood, and the
padding and start tokens are never predicted (their logits are -inf), so p(x|z) is a distribution over sequences
``BOS w* EOS``. In training only, dropout acts on the word embeddings and the LSTM outputs, and word dropout
replaces each input word (never the start or end token) by the unknown token with probability ``word_dropout``.

Skip decoder (``skip_lstm``, :class:`SkipLSTMDecoder`): the Skip-VAE of Dieng et al. (2019) feeds z to every
layer of the generative network and to its output. The decoder's one LSTM layer already reads z at every step, so
the skip adds z to the output layer: logits = W h_t + V z (+ b), linear in z, as in their reference code
(``models_text_skip.py``: one linear layer over [dropout(h_t); z], z itself never dropped out). Everything else,
initial state included, is the ``lstm`` decoder's.

Sampling (``sample``) is batched ancestral sampling from the start token, at ``temperature`` or greedy (the most
probable token each step), without dropout whatever the module's mode. A sequence stops at its first EOS and is
padded after it (and leaves the batch: later steps compute only the open sequences); a sequence still open when
it reaches ``max_len`` tokens ends with EOS there (as data documents longer than ``max_len`` are cut), so every
sample has the layout of the data. Samples are ``'b max_len'``.

Architectures (``arch``): ``vaezoo`` has biases on every linear map and torch's default initialisation, and reads
the encoder head as (mean, log standard deviation); ``he2019`` is the network of He et al. (2019) the paper builds
on: no bias on the encoder head, on the map of z to the initial cell state, or on the output layer; the head read
as (mean, log variance); every parameter drawn from U(-0.01, 0.01), then both embeddings from U(-0.1, 0.1). With
the default sizes and a 20,000-word vocabulary it has their 53,788,672 parameters.

Memory: with gradients off (evaluation, IW-NLL with many samples) the LSTM runs on chunks of sequences whose
activations stay under ``ROW_ELEMENTS`` numbers (with gradients on, every chunk's graph would be kept anyway, so all
rows run at once). Logits are computed for all predicted tokens at once unless they exceed ``LOGIT_ELEMENTS``
numbers (512 MB in float32): splitting them would stream the 20k x 1024 output matrix once per piece, forward and
backward, for nothing. The impossible tokens' -inf enters as the bias of the output layer's matrix multiply, so
masking them costs no pass of its own.
"""

from __future__ import annotations

import attrs
import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from vaezoo.api import DataSpec, Decoder, Encoder, UsageError, diagonal_normal_from, param

#: LSTM activations held at once per chunk of sequences when gradients are off.
ROW_ELEMENTS = 2**25
#: Most logits computed at once (only IW-NLL with many samples reaches it).
LOGIT_ELEMENTS = 2**27
ARCHS = ("vaezoo", "he2019")
ARCH_HELP = (
    "vaezoo: biases on every linear map, torch's initialisation; he2019: He et al. (2019)'s network, no biases on "
    "the linear maps, every weight U(-0.01, 0.01) and embeddings U(-0.1, 0.1), head read as (mean, log variance)"
)
State = tuple[Tensor, Tensor]


def token_ids(spec: DataSpec, who: str) -> tuple[int, int, int, int]:
    """``(vocab_size, pad_id, bos_id, eos_id)`` of a token spec; other data is a UsageError."""
    ids = (spec.vocab_size, spec.pad_id, spec.bos_id, spec.eos_id)
    if spec.kind != "tokens" or any(i is None for i in ids):
        raise UsageError(
            f"{who} works on token sequences with padding, start and end ids, not {spec.kind} data of shape "
            f"{spec.shape}"
        )
    return ids  # type: ignore[return-value]


def sequence_lengths(x: Tensor, pad_id: int) -> Tensor:
    """Non-padding tokens of each sequence of ``x 'b t'``, ``'b'`` (padding only ever follows a sequence)."""
    return (x != pad_id).sum(dim=1)


def row_chunks(rows: int, per_row: int) -> list[slice]:
    """Slices covering ``rows`` rows of ``per_row`` numbers each: one slice with gradients on, else chunks of at
    most ``ROW_ELEMENTS`` numbers (at least one row each)."""
    size = rows if torch.is_grad_enabled() else max(1, ROW_ELEMENTS // max(per_row, 1))
    return [slice(start, start + size) for start in range(0, rows, size)]


def initialise_he2019(module: nn.Module, embedding: nn.Embedding) -> None:
    """He et al.'s initialisation: every parameter of ``module`` from U(-0.01, 0.01), then ``embedding``'s from
    U(-0.1, 0.1)."""
    for parameter in module.parameters():
        nn.init.uniform_(parameter, -0.01, 0.01)
    nn.init.uniform_(embedding.weight, -0.1, 0.1)


@attrs.frozen
class LSTMEncoderParams:
    embed_dim: int = param(512, ge=1, le=4096, help="word embedding size (He et al.: 512)")
    hidden: int = param(1024, ge=1, le=2048, help="LSTM hidden size (He et al.: 1024)")
    arch: str = param("vaezoo", choices=ARCHS, help=ARCH_HELP)


class LSTMEncoder(Encoder):
    """x -> N(mu, diag sigma^2) from the last hidden state of a single-layer LSTM over the embedded tokens."""

    name = "lstm"
    description = "single-layer LSTM over the tokens to a diagonal Gaussian posterior"
    Params = LSTMEncoderParams

    def __init__(self, params: LSTMEncoderParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        vocab_size, self.pad_id, _, _ = token_ids(spec, "lstm encoder")
        self.embed = nn.Embedding(vocab_size, params.embed_dim)
        self.lstm = nn.LSTM(params.embed_dim, params.hidden, batch_first=True)
        self.he2019 = params.arch == "he2019"
        self.head = nn.Linear(params.hidden, 2 * latent_dim, bias=not self.he2019)
        if self.he2019:
            initialise_he2019(self, self.embed)

    def forward(self, x: Tensor) -> Distribution:
        lengths = sequence_lengths(x, self.pad_id)  # 'b'
        x = x[:, : int(lengths.max())]
        chunks = row_chunks(x.shape[0], x.shape[1] * 4 * self.params.hidden)
        last = torch.cat([self._last_state(x[rows], lengths[rows]) for rows in chunks])  # 'b h'
        return diagonal_normal_from(self.head(last), log_variance=self.he2019)

    def _last_state(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The LSTM's hidden state after each sequence's last real token: ``x 'r t' -> 'r h'``."""
        states, _ = self.lstm(self.embed(x))  # 'r t h'
        return states[torch.arange(x.shape[0], device=x.device), lengths - 1]


@attrs.frozen
class LSTMDecoderParams:
    embed_dim: int = param(512, ge=1, le=4096, help="word embedding size (He et al.: 512)")
    hidden: int = param(1024, ge=1, le=2048, help="LSTM hidden size (He et al.: 1024)")
    dropout: float = param(
        0.5, ge=0, lt=1, help="training only: dropout on the word embeddings and the LSTM outputs (He et al.: 0.5)"
    )
    word_dropout: float = param(
        0.0, ge=0, le=1, help="training only: probability of replacing each input word by the unknown token"
    )
    temperature: float = param(
        1.0,
        ge=1e-6,
        le=10**6,
        help="sampling: logits are divided by this (1: the model's own distribution; also for noise)",
    )
    greedy: bool = param(False, help="sampling: take the most probable token at every step (also for noise)")
    arch: str = param("vaezoo", choices=ARCHS, help=ARCH_HELP)


class LSTMDecoder(Decoder):
    """Autoregressive p(x|z): a single-layer LSTM fed [word embedding; z], its initial state a linear map of z."""

    name = "lstm"
    description = "single-layer LSTM language model conditioned on z at every step and in its initial state"
    Params = LSTMDecoderParams

    def __init__(self, params: LSTMDecoderParams, spec: DataSpec, latent_dim: int) -> None:
        super().__init__(params, spec, latent_dim)
        vocab_size, self.pad_id, self.bos_id, self.eos_id = token_ids(spec, f"{self.name} decoder")
        self.unk_id = spec.unk_id
        if params.word_dropout > 0 and self.unk_id is None:
            raise UsageError("decoder.word_dropout needs data that names its unknown token (unk_id)")
        self.max_len = spec.shape[0]
        self.embed = nn.Embedding(vocab_size, params.embed_dim)
        self.lstm = nn.LSTM(params.embed_dim + latent_dim, params.hidden, batch_first=True)
        biased = params.arch != "he2019"
        self.initial = nn.Linear(latent_dim, params.hidden, bias=biased)
        self.out = nn.Linear(self.output_features(), vocab_size, bias=biased)
        self.dropout = nn.Dropout(params.dropout)
        never = torch.zeros(vocab_size)
        never[[self.pad_id, self.bos_id]] = float("-inf")
        self.register_buffer("never_predicted", never, persistent=False)
        if not biased:
            initialise_he2019(self, self.embed)

    # -- the network ------------------------------------------------------------------------------
    def output_features(self) -> int:
        """Inputs of the output layer: the LSTM's hidden size (:class:`SkipLSTMDecoder` adds z)."""
        return self.params.hidden

    def initial_state(self, z: Tensor) -> State:
        """(h0, c0), each ``'1 r h'``, from ``z 'r d'``: c0 = W z (+ b in the vaezoo arch), h0 = tanh(c0)."""
        cell = einops.rearrange(self.initial(z), "r h -> 1 r h")
        return torch.tanh(cell), cell

    def hidden_states(self, inputs: Tensor, z: Tensor, state: State, regularise: bool) -> tuple[Tensor, State]:
        """The output layer's inputs ``'r t f'`` (here the LSTM outputs, ``f = h``) and the LSTM's last state, for
        ``inputs 'r t'`` with z ``'r d'`` appended to every embedding and ``state`` the LSTM's state before them."""
        embedded = self.embed(inputs)  # 'r t e'
        if regularise:
            embedded = self.dropout(embedded)
        conditioned = torch.cat([embedded, einops.repeat(z, "r d -> r t d", t=inputs.shape[1])], dim=-1)
        return self.lstm(conditioned, state)

    def logits(self, hidden: Tensor, regularise: bool) -> Tensor:
        """Next-token logits ``'... v'`` from the output layer's inputs ``'... f'`` (as :meth:`hidden_states` gives
        them); padding and start are impossible."""
        if regularise:
            hidden = self.dropout(hidden)
        bias = self.never_predicted if self.out.bias is None else self.out.bias + self.never_predicted
        return F.linear(hidden, self.out.weight, bias)

    # -- likelihood -------------------------------------------------------------------------------
    def teacher_forcing(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(inputs, targets), each ``'b t-1'``: ``x`` without its last column, and ``x`` shifted left by one."""
        return x[:, :-1], x[:, 1:]

    def drop_words(self, inputs: Tensor) -> Tensor:
        """``inputs 'b t'`` with each word (no padding, start or end token) replaced by UNK w.p. word_dropout."""
        droppable = ~torch.isin(inputs, inputs.new_tensor([self.pad_id, self.bos_id, self.eos_id]))
        hit = droppable & (torch.rand(inputs.shape, device=inputs.device) < self.params.word_dropout)
        return inputs.masked_fill(hit, self.unk_id)

    def token_log_probs(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(target i | inputs 0..i, z) for every target position: ``x 'b t'``, ``z 'k b d'`` -> ``'k b t-1'``
        (``t`` after cutting padding columns beyond the longest sequence); 0 where the target is padding."""
        x = x[:, : int(sequence_lengths(x, self.pad_id).max())]
        inputs, targets = self.teacher_forcing(x)
        if self.training and self.params.word_dropout > 0:
            inputs = self.drop_words(inputs)
        k = z.shape[0]
        inputs, targets = (einops.repeat(a, "b t -> (k b) t", k=k) for a in (inputs, targets))
        z_rows = einops.rearrange(z, "k b d -> (k b) d")
        per_row = targets.shape[1] * 4 * self.params.hidden
        parts = [self._chunk_log_probs(inputs[s], targets[s], z_rows[s]) for s in row_chunks(len(z_rows), per_row)]
        return einops.rearrange(torch.cat(parts), "(k b) t -> k b t", k=k)

    def _chunk_log_probs(self, inputs: Tensor, targets: Tensor, z: Tensor) -> Tensor:
        """``'r t'`` log-probabilities of ``targets`` given ``inputs`` and ``z 'r d'``, 0 at padding."""
        hidden, _ = self.hidden_states(inputs, z, self.initial_state(z), regularise=self.training)  # 'r t h'
        predicted = targets != self.pad_id  # 'r t'
        picked = self.predicted_log_probs(hidden[predicted], targets[predicted])  # 'n'
        return torch.zeros(predicted.shape, dtype=picked.dtype, device=picked.device).masked_scatter(predicted, picked)

    def predicted_log_probs(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """log p(target) from the output layer's inputs ``hidden 'n f'`` for ``targets 'n'``, at most
        ``LOGIT_ELEMENTS`` logits at a time; float32 (cross-entropy runs in float32 under autocast)."""
        size = max(1, LOGIT_ELEMENTS // self.out.out_features)
        parts = [
            -F.cross_entropy(self.logits(states, regularise=self.training), wanted, reduction="none")
            for states, wanted in zip(hidden.split(size), targets.split(size), strict=True)
        ]
        return torch.cat(parts)

    def log_prob(self, x: Tensor, z: Tensor) -> Tensor:
        return self.token_log_probs(x, z).sum(dim=-1)

    # -- sampling ---------------------------------------------------------------------------------
    def next_tokens(self, logits: Tensor, temperature: float, greedy: bool) -> Tensor:
        """One token per row of ``logits 'b v'``: the most probable, or a draw from softmax(logits / temperature)."""
        if greedy:
            return logits.argmax(dim=-1)
        probabilities = torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1)  # 'b v'
        # An inverse-CDF draw, written here because torch's own samplers are slow over a large vocabulary: for
        # 32 rows of 20k tokens on one CPU thread torch.multinomial takes 21 ms and the Gumbel-max trick 18 ms
        # (Tensor.exponential_ alone), this 1 ms, and a document takes one draw per token. The first token
        # whose cumulative probability exceeds u ~ U(0, total) is drawn, so a token of probability 0 never is;
        # float64 keeps the rounding of a 20k-term cumulative sum far below any probability that matters.
        cumulative = probabilities.cumsum(dim=-1, dtype=torch.float64)  # 'b v'
        u = torch.rand(cumulative.shape[0], 1, dtype=torch.float64, device=logits.device) * cumulative[:, -1:]
        drawn = torch.searchsorted(cumulative, u, right=True)  # 'b 1'
        return einops.rearrange(drawn, "b 1 -> b").clamp(max=logits.shape[-1] - 1)

    @torch.no_grad()
    def sample(
        self, z: Tensor, temperature: float | None = None, greedy: bool | None = None, max_len: int | None = None
    ) -> Tensor:
        """Sequences ``'b max_len'`` drawn from p(x|z) for ``z 'b d'`` (see the module docstring); ``temperature``
        and ``greedy`` default to the decoder's parameters, ``max_len`` (start and end tokens included, at least 2)
        to the data's."""
        temperature = self.params.temperature if temperature is None else temperature
        greedy = self.params.greedy if greedy is None else greedy
        max_len = self.max_len if max_len is None else max_len
        if not temperature > 0:
            raise UsageError(f"sampling temperature must be > 0, got {temperature}")
        if not 2 <= max_len <= self.max_len:
            raise UsageError(f"sampling max_len must be between 2 and the data's {self.max_len}, got {max_len}")
        b = z.shape[0]
        tokens = torch.full((b, max_len), self.pad_id, dtype=torch.long, device=z.device)
        tokens[:, 0] = self.bos_id
        # Only the open sequences are stepped: rows leave the batch at their EOS, so a batch costs its documents'
        # total length rather than the longest one's times the batch size. 'o' indexes the open rows.
        rows = torch.arange(b, device=z.device)  # 'o': each open row's index in the batch
        z_open, state, previous = z, self.initial_state(z), tokens[:, :1]  # 'o d', 2 x '1 o h', 'o 1'
        for t in range(1, max_len):
            if t == max_len - 1:
                chosen = torch.full_like(rows, self.eos_id)
            else:
                hidden, state = self.hidden_states(previous, z_open, state, regularise=False)  # 'o 1 h'
                chosen = self.next_tokens(self.logits(hidden[:, 0], regularise=False), temperature, greedy)
            tokens[rows, t] = chosen
            still_open = chosen != self.eos_id  # 'o'
            if not still_open.all():
                if not still_open.any():
                    break
                rows, z_open, chosen = rows[still_open], z_open[still_open], chosen[still_open]
                state = (state[0][:, still_open], state[1][:, still_open])
            previous = einops.rearrange(chosen, "o -> o 1")
        return tokens


class SkipLSTMDecoder(LSTMDecoder):
    """Skip-VAE's LSTM decoder: the ``lstm`` decoder with z also fed straight to the output layer, logits =
    W dropout(h_t) + V z (+ b in the vaezoo arch), with no nonlinearity (see the module docstring).

    The teacher forcing, masking, chunking and sampling of :class:`LSTMDecoder` run unchanged on what
    :meth:`hidden_states` returns here: the LSTM outputs with z appended, ``'r t f'`` with ``f = h + d``.
    """

    name = "skip_lstm"
    description = "Skip-VAE: the lstm decoder with z also fed straight to its output layer (logits W h + V z)"

    def output_features(self) -> int:
        return self.params.hidden + self.latent_dim

    def hidden_states(self, inputs: Tensor, z: Tensor, state: State, regularise: bool) -> tuple[Tensor, State]:
        """The LSTM outputs for ``inputs 'r t'`` with ``z 'r d'`` appended at every step, ``'r t f'``, and the
        LSTM's last state."""
        hidden, state = super().hidden_states(inputs, z, state, regularise)  # 'r t h'
        return torch.cat([hidden, einops.repeat(z, "r d -> r t d", t=hidden.shape[1])], dim=-1), state

    def logits(self, hidden: Tensor, regularise: bool) -> Tensor:
        """Next-token logits ``'... v'`` from ``hidden '... f'`` = [LSTM output; z]; dropout acts on the LSTM part
        only, so that the direct path from z is never cut."""
        lstm_part, z = hidden.split([self.params.hidden, self.latent_dim], dim=-1)
        if regularise:
            lstm_part = self.dropout(lstm_part)
        return super().logits(torch.cat([lstm_part, z], dim=-1), regularise=False)
