"""The Skip-VAE decoders ``skip_lstm`` and ``skip_pixelcnn``: z reaches every layer and the output, directly.

Each skip decoder is tested as the plain decoder plus the paths from z it adds: with those paths zeroed it is the
plain decoder (same log-likelihood on real data, same samples), and with the plain decoder's own paths cut the
logits still follow z exactly through the added ones. The plain decoders keep their parameters and the order in
which they are drawn.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``t`` tokens, ``v`` vocabulary, ``h w`` image,
``c`` channels.
"""

from __future__ import annotations

from pathlib import Path

import einops
import pytest
import torch
import torch.nn.functional as F

from tests.test_pixelcnn import calibrate_norms, dependency, fast_and_naive, stack_pattern
from vaezoo.base.errors import UsageError
from vaezoo.components.interfaces import DataSpec
from vaezoo_plugins.data.images import Omniglot, OmniglotParams
from vaezoo_plugins.data.text import PTB, PTBParams
from vaezoo_plugins.networks.lstm import LSTMDecoder, LSTMDecoderParams, SkipLSTMDecoder
from vaezoo_plugins.networks.pixelcnn import PixelCNN, PixelCNNDecoder, PixelCNNParams, SkipPixelCNNDecoder

D = 4
TEXT = {"embed_dim": 8, "hidden": 16}
IMAGE = PixelCNNParams(kernels=(5, 3, 3), channels=8, z_channels=2)
SMALL_IMAGES = DataSpec((1, 6, 7), "binary")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ptb(data_dir: Path):
    return PTB(PTBParams(limit=200, max_len=30)).load(data_dir, seed=0)


@pytest.fixture(scope="module")
def omniglot(data_dir: Path):
    return Omniglot(OmniglotParams(limit=64)).load(data_dir, seed=0)


def text_pair(spec: DataSpec, **params) -> tuple[LSTMDecoder, SkipLSTMDecoder]:
    """A plain and a skip LSTM decoder drawn from the same seed."""
    values = LSTMDecoderParams(**{**TEXT, **params})
    torch.manual_seed(0)
    plain = LSTMDecoder(values, spec, D)
    torch.manual_seed(0)
    return plain, SkipLSTMDecoder(values, spec, D)


def direct_weight(decoder: SkipLSTMDecoder) -> torch.Tensor:
    """V of logits = W h + V z + b, ``'v d'``: the output layer's columns that read z."""
    return decoder.out.weight[:, decoder.params.hidden :]


def cut_lstm(decoder: LSTMDecoder) -> None:
    """Zero the LSTM and the map of z to its initial state, so that every LSTM output is exactly 0."""
    with torch.no_grad():
        for parameter in [*decoder.lstm.parameters(), *decoder.initial.parameters()]:
            parameter.zero_()


def copy_into_leading_slices(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Each tensor of ``source``'s state into the leading part of ``target``'s tensor of the same name (the
    skip decoders' tensors extend the plain ones' along their input or output axes)."""
    targets = target.state_dict()
    with torch.no_grad():
        for name, value in source.state_dict().items():
            targets[name][tuple(slice(0, n) for n in value.shape)].copy_(value)


# -- skip_lstm --------------------------------------------------------------------------------------------------


def test_plain_lstm_keeps_its_parameters_and_skip_lstm_adds_only_the_direct_columns():
    spec = DataSpec((12,), "tokens", vocab_size=50, pad_id=0, bos_id=1, eos_id=2, unk_id=3)
    for arch in ("vaezoo", "he2019"):
        plain, skip = text_pair(spec, arch=arch)
        shapes = {name: tuple(p.shape) for name, p in plain.state_dict().items()}
        expected = {"embed.weight": (50, 8), "lstm.weight_ih_l0": (64, 12), "lstm.weight_hh_l0": (64, 16)}
        expected |= {"lstm.bias_ih_l0": (64,), "lstm.bias_hh_l0": (64,), "initial.weight": (16, 4)}
        expected |= {"out.weight": (50, 16)} | ({"initial.bias": (16,), "out.bias": (50,)} if arch == "vaezoo" else {})
        assert shapes == expected
        skipped = {name: tuple(p.shape) for name, p in skip.state_dict().items()}
        assert skipped == {**shapes, "out.weight": (50, 16 + D)}
        if arch == "vaezoo":  # drawn in the same order: every tensor before the output layer is the plain one's
            for name in ("embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "initial.weight"):
                assert torch.equal(plain.state_dict()[name], skip.state_dict()[name]), name


def test_skip_lstm_with_its_direct_path_zeroed_is_the_lstm_decoder_on_ptb(ptb):
    """Same log-likelihoods in training mode (the same dropout masks) and evaluation, and the same samples."""
    x = next(ptb.batches("valid", 8))
    z = torch.randn(2, 8, D)
    for arch in ("vaezoo", "he2019"):
        plain, skip = text_pair(ptb.spec, arch=arch, word_dropout=0.3)
        with torch.no_grad():
            copy_into_leading_slices(plain, skip)
            direct_weight(skip).zero_()
        for mode in (True, False):
            plain.train(mode), skip.train(mode)
            torch.manual_seed(1)
            expected = plain.log_prob(x, z)
            torch.manual_seed(1)
            torch.testing.assert_close(skip.log_prob(x, z), expected, rtol=1e-6, atol=1e-5)
        torch.manual_seed(2)
        expected_samples = plain.sample(z[0])
        torch.manual_seed(2)
        assert torch.equal(skip.sample(z[0]), expected_samples)


def test_with_the_lstm_cut_skip_lstm_still_reads_z_at_every_token_and_lstm_does_not(ptb):
    """Every LSTM output 0: the skip decoder's log p(x|z) is then exactly that of logits V z + b at every
    predicted token; the plain decoder's no longer depends on z."""
    x = next(ptb.batches("valid", 8))
    z = torch.randn(2, 8, D)
    plain, skip = (decoder.eval() for decoder in text_pair(ptb.spec))
    cut_lstm(plain), cut_lstm(skip)
    with torch.no_grad():
        assert torch.equal(plain.log_prob(x, z), plain.log_prob(x, torch.randn(2, 8, D)))
        log_probs = torch.log_softmax(F.linear(z, direct_weight(skip), skip.out.bias + skip.never_predicted), -1)
        x = x[:, : int((x != ptb.spec.pad_id).sum(dim=1).max())]
        targets = einops.repeat(x[:, 1:], "b t -> k b t", k=2)
        picked = log_probs.gather(-1, targets)  # 'k b t': p(token | z) whatever the position
        expected = picked.masked_fill(targets == ptb.spec.pad_id, 0).sum(dim=-1)
        got = skip.log_prob(x, z)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, skip.log_prob(x, torch.randn(2, 8, D)))


def test_the_gradient_of_the_last_logits_wrt_z_is_the_lstm_path_plus_the_direct_weight(ptb):
    """d logits_t / dz = W dh_t/dz + V at the last token of a real sentence, V non-zero, with the LSTM intact."""
    _, skip = text_pair(ptb.spec)
    skip = skip.double().eval()
    inputs = next(ptb.batches("valid", 1))[:, :-1]
    hidden = skip.params.hidden

    def run(z: torch.Tensor) -> torch.Tensor:
        features, _ = skip.hidden_states(inputs, z, skip.initial_state(z), regularise=False)
        return features[:, -1]  # 'b f'

    z = torch.randn(1, D, dtype=torch.float64)
    total = torch.autograd.functional.jacobian(lambda z: skip.logits(run(z), regularise=False), z)[0, :, 0]
    through_lstm = torch.autograd.functional.jacobian(lambda z: run(z)[:, :hidden], z)[0, :, 0]  # 'h d'
    possible = torch.isfinite(skip.never_predicted)
    expected = skip.out.weight[:, :hidden] @ through_lstm + direct_weight(skip)  # 'v d'
    torch.testing.assert_close(total[possible], expected[possible].detach())
    assert direct_weight(skip).abs().min() > 0 and through_lstm.abs().max() > 0


def test_output_dropout_never_drops_z():
    """In training, dropout (here 0.9) reaches the LSTM outputs and never the direct path from z."""
    spec = DataSpec((12,), "tokens", vocab_size=50, pad_id=0, bos_id=1, eos_id=2, unk_id=3)
    _, skip = text_pair(spec, dropout=0.9)
    features = torch.randn(64, skip.params.hidden + D)
    with torch.no_grad():
        lstm_columns = skip.out.weight[:, : skip.params.hidden].clone()
        skip.out.weight[:, : skip.params.hidden] = 0
        direct_only = skip.logits(features, regularise=True)
        skip.out.weight[:, : skip.params.hidden] = lstm_columns
        direct = F.linear(features[:, skip.params.hidden :], direct_weight(skip), skip.out.bias + skip.never_predicted)
        torch.testing.assert_close(direct_only, direct)
        assert not torch.allclose(skip.logits(features, regularise=True), skip.logits(features, regularise=False))


def test_greedy_samples_of_a_cut_lstm_follow_z_through_the_direct_path(ptb):
    """With the LSTM cut, every step's logits are V z + b: a greedy sample's first word is their argmax."""
    _, skip = text_pair(ptb.spec, greedy=True)
    cut_lstm(skip)
    z = torch.randn(16, D) * 3
    tokens = skip.sample(z)
    with torch.no_grad():
        wanted = F.linear(z, direct_weight(skip), skip.out.bias + skip.never_predicted).argmax(dim=-1)
    assert torch.equal(tokens[:, 1], wanted) and len(wanted.unique()) > 1
    assert tokens.shape == (16, ptb.spec.shape[0]) and (tokens[:, 0] == ptb.spec.bos_id).all()


# -- skip_pixelcnn ----------------------------------------------------------------------------------------------


def image_pair(spec: DataSpec, params: PixelCNNParams = IMAGE) -> tuple[PixelCNNDecoder, SkipPixelCNNDecoder]:
    torch.manual_seed(0)
    plain = PixelCNNDecoder(params, spec, D)
    torch.manual_seed(0)
    return plain, SkipPixelCNNDecoder(params, spec, D)


def conv_inputs(decoder: PixelCNNDecoder, x: torch.Tensor, z: torch.Tensor) -> list[torch.Tensor]:
    """The input of every masked convolution, then of the output conv, in one forward pass."""
    seen: list[torch.Tensor] = []
    convs = [*decoder.net.convs, decoder.net.out]
    hooks = [conv.register_forward_pre_hook(lambda _, args: seen.append(args[0])) for conv in convs]
    try:
        decoder.logits(x, z)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_every_masked_layer_and_the_output_conv_read_their_own_maps_of_z():
    """Layer i reads its hidden channels then group i of z maps; the output conv the last group. In the plain
    decoder only the first layer reads z."""
    plain, skip = image_pair(SMALL_IMAGES)
    x, z = torch.bernoulli(torch.full((3, 1, 6, 7), 0.4)), torch.randn(3, D)
    cz, layers = IMAGE.z_channels, len(IMAGE.kernels)
    groups = skip.condition(z).split(cz, dim=1)
    assert len(groups) == layers + 1
    inputs = conv_inputs(skip, x, z)
    for i, seen in enumerate(inputs):
        own = 1 if i == 0 else IMAGE.channels
        assert seen.shape[1] == own + cz
        assert torch.equal(seen[:, own:], groups[i]), f"conv {i} does not read its own maps of z"
    assert not any(torch.equal(groups[0], group) for group in groups[1:])
    plain_inputs = conv_inputs(plain, x, z)
    assert [seen.shape[1] for seen in plain_inputs] == [1 + cz] + [IMAGE.channels] * layers


def test_with_every_masked_layer_cut_the_logits_follow_z_through_the_output_conv():
    """Masked convolutions zeroed: every hidden unit is ELU(0) = 0, so the logits are the output conv applied to
    the last group of z maps alone; the plain decoder's logits no longer depend on z."""
    plain, skip = (decoder.eval() for decoder in image_pair(SMALL_IMAGES))
    x = torch.bernoulli(torch.full((3, 1, 6, 7), 0.4))
    z = torch.randn(3, D)
    with torch.no_grad():
        for decoder in (plain, skip):
            for conv in decoder.net.convs:
                conv.weight.zero_()
        assert torch.equal(plain.logits(x, z), plain.logits(x, torch.randn(3, D)))
        last = skip.condition(z)[:, -IMAGE.z_channels :]
        expected = F.conv2d(last, skip.net.out.weight[:, IMAGE.channels :], skip.net.out.bias)
        got = skip.logits(x, z)
    torch.testing.assert_close(got, expected)
    assert got.std() > 0


def test_skip_pixelcnn_depends_on_exactly_the_pixels_its_masks_allow():
    """z maps enter every layer unmasked, and the logit of pixel i still sees image pixels before i only."""
    torch.manual_seed(0)
    h, w, cz = 6, 7, 2
    net = PixelCNN(IMAGE.kernels, channels=4, condition_channels=cz, skip=True).double().eval()
    condition = torch.randn(1, cz * (len(IMAGE.kernels) + 1), h, w, dtype=torch.float64)
    got = dependency(lambda x: net(x, condition), h, w)
    assert torch.equal(got, stack_pattern(h, w, IMAGE.kernels, "A"))


@pytest.mark.parametrize("shape", [(1, 6, 7), (1, 28, 28)])
def test_fast_and_naive_sampling_agree_for_skip_pixelcnn(shape):
    """The fast sampler folds each layer's maps of z (the output conv's too) into per-position biases."""
    _, skip = image_pair(DataSpec(shape, "binary"))
    skip.eval()
    calibrate_norms(skip)
    fast_and_naive(skip, 3)


def test_skip_pixelcnn_with_its_added_maps_zeroed_is_the_pixelcnn_decoder_on_omniglot(omniglot):
    """The plain decoder's weights in the skip's leading slices and the later groups of z maps zero: the same
    log-likelihood of real Omniglot images, in training and evaluation mode."""
    x = next(omniglot.batches("test", 16))
    z = torch.randn(2, 16, D)
    plain, skip = image_pair(omniglot.spec)
    first = IMAGE.z_channels * 28 * 28
    with torch.no_grad():
        copy_into_leading_slices(plain, skip)
        skip.z_map.weight[first:] = 0
        skip.z_map.bias[first:] = 0
    for mode in (True, False):
        plain.train(mode), skip.train(mode)
        torch.testing.assert_close(skip.log_prob(x, z), plain.log_prob(x, z), rtol=1e-5, atol=1e-3)


def test_skip_pixelcnn_adds_one_linear_map_of_z_per_layer_and_the_z_channels_of_each_conv():
    plain, skip = image_pair(SMALL_IMAGES)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    layers, cz, c, hw = len(IMAGE.kernels), IMAGE.z_channels, IMAGE.channels, 6 * 7
    maps = layers * cz * hw * (D + 1)  # the z maps of layers 1.. and of the output conv
    convs = sum(c * cz * k * k for k in IMAGE.kernels[1:]) + cz
    assert count(skip) - count(plain) == maps + convs
    assert [name for name, _ in skip.named_parameters()] == [name for name, _ in plain.named_parameters()]


def test_skip_pixelcnn_refuses_the_he2019_arch_and_oversized_maps_of_z():
    with pytest.raises(UsageError, match="he2019"):
        SkipPixelCNNDecoder(PixelCNNParams(arch="he2019"), SMALL_IMAGES, D)
    wide = PixelCNNParams(kernels=(3,) * 64, channels=8, z_channels=64)
    with pytest.raises(UsageError, match="maps of z"):
        SkipPixelCNNDecoder(wide, DataSpec((1, 28, 28), "binary"), 32)
    PixelCNNDecoder(wide, DataSpec((1, 28, 28), "binary"), 32)  # the plain decoder makes 64 maps only


# -- the decoder contract on real data --------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["text", "images"])
def test_log_prob_and_sample_keep_the_decoder_contract_on_real_data(which, ptb, omniglot):
    """``log_prob(x 'b ...', z 'k b d') -> 'k b'`` float32 nats, also under bf16 autocast; ``sample(z 'b d')`` has
    the data's layout and a finite log-likelihood."""
    data = ptb if which == "text" else omniglot
    torch.manual_seed(0)
    decoder = SkipLSTMDecoder(LSTMDecoderParams(**TEXT), data.spec, D) if which == "text" else image_pair(data.spec)[1]
    x = next(data.batches("test", 5))
    z = torch.randn(3, 5, D)
    log_px = decoder.log_prob(x, z)
    assert log_px.shape == (3, 5) and log_px.dtype == torch.float32 and (log_px < 0).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert decoder.log_prob(x, z).dtype == torch.float32
    sample = decoder.sample(torch.randn(5, D))
    if which == "text":
        assert sample.shape == (5, data.spec.shape[0]) and (sample == data.spec.eos_id).any(dim=1).all()
    else:
        assert sample.shape == x.shape and set(sample.unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(decoder.log_prob(sample, z[:1])).all()
