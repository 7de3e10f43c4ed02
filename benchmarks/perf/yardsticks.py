"""Plain PyTorch training steps that vaezoo's own (``vaezoo.training.step.TrainingStep``) is measured against.

No vaezoo code: each yardstick is a network and its training step written directly in torch, the way a careful
reference implementation does it, for the networks, batch and optimiser of vaezoo's configuration
(:mod:`vaezoo_bench.perf.yardstick` times the two interleaved). The networks follow He et al. (2019)'s reference
implementation (jxhe/vae-lagging-encoder: ``text.py``, ``image.py``, ``modules/``):

- :class:`TextVAE`: the Yahoo LSTM VAE. Embedding -> LSTM -> last hidden state -> linear (no bias) -> mean and log
  variance of q(z|x); the decoder embeds the inputs (its own embedding), applies dropout, concatenates z to every
  input, runs an LSTM from c0 = linear(z) (no bias), h0 = tanh(c0), applies dropout and maps to the vocabulary
  (linear, no bias); cross-entropy summed over the tokens. Every parameter U(-0.01, 0.01), embeddings
  U(-0.1, 0.1). ``bias=True`` puts biases on the three linear maps (the shape of vaezoo's ``arch = "vaezoo"``).
  The batch is of equal-length documents, as He et al.'s bucketed batches are: no padding, no masks.
- :class:`OmniglotVAE`: ResNetEncoderV2 (three residual blocks of stride 2, 1 -> 64 -> 64 -> 64 channels, a 4x4
  convolution to 512 channels, linear to mean and log variance) and PixelCNNDecoderV2 "large" (z -> 4 maps of
  28x28 concatenated to the image; a masked type-A 7x7 convolution, 12 residual bottleneck blocks of masked type-B
  convolutions, 11 "direct connect" bottleneck blocks from block i-3 to block i, two 1x1 convolutions to one logit
  per pixel). The reference masks its kernels in place before each convolution and computes the Bernoulli
  likelihood from sigmoid probabilities; here the kernels are masked in place alike and the likelihood is
  ``binary_cross_entropy_with_logits`` (the same matrix products, less elementwise work and no log of 0). The
  weights are kept channels-last (NHWC), the layout oneDNN's CPU convolutions run fastest in (the reference keeps
  torch's default NCHW, with which one step on one thread took 11 % longer in fp32 and 28 % in bf16).
- :class:`MLPVAE`: perceptrons with ELU between layers, ``features -> hidden -> 2 latent`` and
  ``latent -> hidden -> features``, Bernoulli pixels (the shape of vaezoo's ``mlp`` encoder and decoder).

Each model's ``loss(x)`` is the negative ELBO averaged over the batch, with one reparameterised sample of z and
the analytic KL against N(0, I); every encoder's output is read as (mean, log variance), as He et al. do (vaezoo's
own archs read a log standard deviation: the same arithmetic but for a factor of 2). :class:`YardstickStep` is one
optimisation step: the forward pass and loss under ``torch.autocast`` in bfloat16 for ``bf16`` (parameters and
gradients stay float32), the backward pass outside it, the gradient norm clipped, the optimiser's step (torch's
fused implementation).

Axis legend: ``b`` batch, ``t`` tokens, ``v`` vocabulary, ``e`` word embedding, ``u`` LSTM units, ``d`` latent,
``c h w`` image (``c`` also the channels of a hidden layer), ``f`` flattened features.
"""

from __future__ import annotations

import itertools
import math

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: He et al.'s Omniglot PixelCNN ("large"): the kernel of each main block, block 0 (type A) first.
PIXELCNN_KERNELS = (7, 7, 7, 7, 7, 5, 5, 5, 5, 3, 3, 3, 3)
#: Maps of 28x28 that the Omniglot decoder makes of z, and the channels of its hidden layers.
Z_MAPS = 4
CHANNELS = 64


def reparameterise(features: Tensor) -> tuple[Tensor, Tensor]:
    """A sample of z ``'b d'`` from q(z|x) read from ``features 'b (2 d)'`` as (mean, log variance), and
    KL(q || N(0, I)) per example ``'b'``; both float32 whatever the dtype of ``features``."""
    mean, log_variance = einops.rearrange(features.float(), "b (two d) -> two b d", two=2)
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_variance)
    kl = 0.5 * (mean.square() + log_variance.exp() - log_variance - 1).sum(dim=-1)
    return z, kl


class TextVAE(nn.Module):
    """He et al.'s LSTM VAE for text (see the module docstring); ``loss(x 'b t')`` with ``x`` of equal-length
    documents ``BOS w1 .. wn EOS``."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 512,
        hidden: int = 1024,
        latent_dim: int = 32,
        dropout: float = 0.5,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.encoder_embed = nn.Embedding(vocab_size, embed_dim)
        self.encoder_lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2 * latent_dim, bias=bias)
        self.decoder_embed = nn.Embedding(vocab_size, embed_dim)
        self.decoder_lstm = nn.LSTM(embed_dim + latent_dim, hidden, batch_first=True)
        self.initial = nn.Linear(latent_dim, hidden, bias=bias)
        self.out = nn.Linear(hidden, vocab_size, bias=bias)
        self.dropout = nn.Dropout(dropout)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.01, 0.01)
        for embedding in (self.encoder_embed, self.decoder_embed):
            nn.init.uniform_(embedding.weight, -0.1, 0.1)

    def loss(self, x: Tensor) -> Tensor:
        _, (last, _) = self.encoder_lstm(self.encoder_embed(x))  # '1 b u'
        z, kl = reparameterise(self.head(einops.rearrange(last, "1 b u -> b u")))
        inputs, targets = x[:, :-1], x[:, 1:]  # 'b t' each
        embedded = self.dropout(self.decoder_embed(inputs))  # 'b t e'
        conditioned = torch.cat([embedded, einops.repeat(z.to(embedded.dtype), "b d -> b t d", t=inputs.shape[1])], -1)
        cell = einops.rearrange(self.initial(z), "b u -> 1 b u")
        hidden, _ = self.decoder_lstm(conditioned, (torch.tanh(cell), cell))  # 'b t u'
        logits = self.out(self.dropout(hidden))  # 'b t v'
        flat_logits = einops.rearrange(logits, "b t v -> (b t) v")
        recon = F.cross_entropy(flat_logits, einops.rearrange(targets, "b t -> (b t)"), reduction="sum")
        return recon / x.shape[0] + kl.mean()


def _he_init(module: nn.Module) -> None:
    """He et al.'s initialisation: convolutions N(0, 2 / (k k out)); batch norm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0, math.sqrt(2 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetBlock(nn.Module):
    """ELU(shortcut(x) + BN(conv3x3(ELU(BN(conv3x3(x)))))), stride 2, the shortcut a strided 1x1 conv and BN."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ELU(),
            nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels_out),
        )
        self.shortcut = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out)
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(self.body(x) + self.shortcut(x))


class MaskedConv2d(nn.Conv2d):
    """A same-size convolution without bias whose kernel sees, on its first ``masked`` input channels, only the
    positions before the centre in raster order (type A) or up to and including it (type B)."""

    def __init__(self, mask_type: str, masked: int, channels_in: int, channels_out: int, kernel: int) -> None:
        super().__init__(channels_in, channels_out, kernel, padding=kernel // 2, bias=False)
        mask = torch.ones_like(self.weight)  # 'c_out c_in y x'
        mask[:, :masked, kernel // 2, kernel // 2 + (mask_type == "B") :] = 0
        mask[:, :masked, kernel // 2 + 1 :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            self.weight.mul_(self.mask)  # as the reference: the kernel is masked in place before use
        return super().forward(x)


class Bottleneck(nn.Module):
    """ELU(x + BN(conv1x1(ELU(BN(masked conv B(ELU(BN(conv1x1(x))))))))), halving the channels inside."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        inner = channels // 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ELU(),
            MaskedConv2d("B", inner, inner, inner, kernel),
            nn.BatchNorm2d(inner),
            nn.ELU(),
            nn.Conv2d(inner, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.elu(self.body(x) + x)


class OmniglotVAE(nn.Module):
    """He et al.'s Omniglot VAE, ResNet encoder and PixelCNN decoder (see the module docstring);
    ``loss(x 'b 1 28 28')`` with binary pixels."""

    def __init__(self, latent_dim: int = 32, height: int = 28, width: int = 28) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            ResNetBlock(1, 64),
            ResNetBlock(64, 64),
            ResNetBlock(64, 64),
            nn.Conv2d(64, 512, 4, bias=False),  # 4x4 maps -> 1x1
            nn.BatchNorm2d(512),
            nn.ELU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(512, 2 * latent_dim)
        self.z_maps = nn.Linear(latent_dim, Z_MAPS * height * width)
        kernels = PIXELCNN_KERNELS
        masked_a = MaskedConv2d("A", 1, 1 + Z_MAPS, CHANNELS, kernels[0])
        first = nn.Sequential(masked_a, nn.BatchNorm2d(CHANNELS), nn.ELU())
        self.blocks = nn.ModuleList([first, *(Bottleneck(CHANNELS, k) for k in kernels[1:])])
        self.direct = nn.ModuleList(Bottleneck(CHANNELS, k) for k in kernels[1:-1])
        self.out = nn.Sequential(
            nn.Conv2d(CHANNELS, CHANNELS, 1, bias=False),
            nn.BatchNorm2d(CHANNELS),
            nn.ELU(),
            nn.Conv2d(CHANNELS, 1, 1, bias=False),
        )
        self.height, self.width = height, width
        _he_init(self)
        for linear in (self.head, self.z_maps):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        self.to(memory_format=torch.channels_last)  # convolutions take the layout of their weights

    def logits(self, x: Tensor, z: Tensor) -> Tensor:
        """Pixel logits ``'b 1 h w'``: the main blocks in turn, block i >= 3 also fed block i-3's output through
        direct connection i-3, and the last direct connection adding block 10's output after block 12."""
        maps = einops.rearrange(self.z_maps(z), "b (c h w) -> b c h w", c=Z_MAPS, h=self.height, w=self.width)
        h = torch.cat([x.to(maps.dtype), maps], dim=1)  # 'b (1 + Z_MAPS) h w'
        outputs = []
        for i, block in enumerate(self.blocks):
            if i >= 3:
                h = h + self.direct[i - 3](outputs[i - 3])
            h = block(h)
            outputs.append(h)
        return self.out(h + self.direct[-1](outputs[-3]))

    def loss(self, x: Tensor) -> Tensor:
        z, kl = reparameterise(self.head(self.encoder(x)))
        logits = self.logits(x, z).float()
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        return recon / x.shape[0] + kl.mean()


def perceptron(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ELU between them."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.ELU()] if i else []
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


class MLPVAE(nn.Module):
    """Perceptron encoder and Bernoulli decoder (see the module docstring); ``loss(x 'b ...')``, binary ``x``."""

    def __init__(self, features: int, hidden: tuple[int, ...] = (256, 256), latent_dim: int = 32) -> None:
        super().__init__()
        self.encoder = perceptron([features, *hidden, 2 * latent_dim])
        self.decoder = perceptron([latent_dim, *hidden, features])

    def loss(self, x: Tensor) -> Tensor:
        flat = einops.rearrange(x, "b ... -> b (...)")  # 'b f'
        z, kl = reparameterise(self.encoder(flat))
        recon = F.binary_cross_entropy_with_logits(self.decoder(z).float(), flat, reduction="sum")
        return recon / x.shape[0] + kl.mean()


class YardstickStep:
    """One optimisation step of ``model`` on the fixed batch ``x``: ``optimizer`` (``sgd`` without momentum or
    ``adam``, torch's fused implementation where it has one) at ``lr``, gradient norm clipped to ``grad_clip``
    (None: not clipped), forward pass at ``precision`` (``fp32``, or ``bf16`` under torch.autocast). Calling it
    returns the loss."""

    def __init__(
        self, model: nn.Module, x: Tensor, optimizer: str, lr: float, grad_clip: float | None, precision: str
    ) -> None:
        self.model, self.x, self.grad_clip = model, x, grad_clip
        self.bf16 = precision == "bf16"
        self.parameters = list(model.parameters())
        kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
        try:  # one fused kernel per step where this torch has it (the CPU from torch 2.4), the fastest torch offers
            self.optimizer = kind(self.parameters, lr=lr, fused=True)
        except RuntimeError:
            self.optimizer = kind(self.parameters, lr=lr)

    def __call__(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model.loss(self.x)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        return loss.item()


def parameter_count(model: nn.Module) -> int:
    """Number of trainable numbers of ``model``."""
    return sum(p.numel() for p in model.parameters())
