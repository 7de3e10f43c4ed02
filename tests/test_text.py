"""Text: corpora, vocabularies, batches, the LSTM encoder and decoder, sampling, metrics, and the torchtext adapter.

Axis legend: ``b`` batch, ``k`` samples per example, ``d`` latent, ``t`` tokens, ``v`` vocabulary.

Tests that need the real torchtext (the ``legacy-text`` tox environment) have ``torchtext_real`` in their names;
they are skipped where torchtext cannot be imported, unless ``VAEZOO_REQUIRE_TORCHTEXT=1`` makes that a failure.
"""

from __future__ import annotations

import gzip
import importlib.abc
import json
import math
import os
import re
import shutil
import sys
import time
import types

import pytest
import torch

import vaezoo_plugins.data as data_plugin
from tests.conftest import run_cli
from vaezoo.api import Specials, random_parts, read_lines, train_vocabulary, vocabulary_from_lines
from vaezoo.base.errors import UsageError
from vaezoo.components.distributions import isotropic_normal
from vaezoo.components.interfaces import DataSpec
from vaezoo.config.run_config import merge_raw, resolve
from vaezoo.evaluation.evaluation_pass import evaluate, predicted_tokens
from vaezoo.model.assembly import build_model
from vaezoo.training.trainer import Trainer
from vaezoo_plugins.data import torchtext_adapter
from vaezoo_plugins.data.text import PTB, YAHOO_VALID, PTBParams, SequenceParams, Yahoo, YahooParams, pad_sequences
from vaezoo_plugins.networks import lstm
from vaezoo_plugins.networks.lstm import (
    LSTMDecoder,
    LSTMDecoderParams,
    LSTMEncoder,
    LSTMEncoderParams,
    sequence_lengths,
)
from vaezoo_plugins.noise.samplers import GaussianNoise, GaussianNoiseParams

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPEC = DataSpec((12,), "tokens", vocab_size=12, pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK)
D = 3


def small_decoder(spec: DataSpec = SPEC, **params) -> LSTMDecoder:
    values = {"embed_dim": 8, "hidden": 16, "dropout": 0.0, **params}
    return LSTMDecoder(LSTMDecoderParams(**values), spec, D)


def small_encoder(spec: DataSpec = SPEC) -> LSTMEncoder:
    return LSTMEncoder(LSTMEncoderParams(embed_dim=8, hidden=16), spec, D)


def sequences(*words: list[int], width: int | None = None) -> torch.Tensor:
    """Rows BOS w.. EOS padded to ``width`` (default: the longest): ``'b t'``."""
    width = width or max(len(w) for w in words) + 2
    rows = [[BOS, *w, EOS] + [PAD] * (width - len(w) - 2) for w in words]
    return torch.tensor(rows)


# ----------------------------------------------------------------------------------------------- vocabulary

LINES = ["the cat sat on the mat", "a dog sat", "", "the dog ate the cat food"]


def test_vocabulary_round_trip_through_ids_and_files():
    vocabulary = train_vocabulary(LINES, Specials(), min_freq=1, max_size=100)
    documents = [line.split() for line in LINES]
    ids = pad_sequences(*vocabulary.encode(documents), 50, vocabulary)
    assert vocabulary.decode(ids) == LINES
    again = vocabulary_from_lines(vocabulary.lines(), Specials())
    assert again.tokens == vocabulary.tokens and again.ids == vocabulary.ids
    bare = vocabulary_from_lines(vocabulary.tokens, Specials())  # one token per line: ids are line numbers
    assert bare.tokens == vocabulary.tokens
    # Words outside the vocabulary, and the padding, start and end spellings inside a document, are unknown.
    flat, lengths = vocabulary.encode([["the", "zebra", "<eos>", "<pad>", "<bos>", "<unk>"]])
    assert flat.tolist() == [vocabulary.ids["the"]] + [vocabulary.unk_id] * 5 and lengths.tolist() == [6]


def test_trained_vocabulary_puts_specials_first_then_words_by_frequency():
    corpus = ["b b b a a c <unk> <unk>", "d"]
    vocabulary = train_vocabulary(corpus, Specials(), min_freq=1, max_size=100)
    # ids 0..3 are the specials even though the corpus spells <unk>; ties (a, <unk>: 2 each; c, d: 1) by spelling
    assert vocabulary.tokens == ("<pad>", "<bos>", "<eos>", "<unk>", "b", "a", "c", "d")
    assert (vocabulary.pad_id, vocabulary.bos_id, vocabulary.eos_id, vocabulary.unk_id) == (0, 1, 2, 3)
    assert train_vocabulary(corpus, Specials(), min_freq=2, max_size=100).tokens[4:] == ("b", "a")
    assert train_vocabulary(corpus, Specials(), min_freq=1, max_size=6).tokens[4:] == ("b", "a")


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (["<pad>\t0", "<bos>\t1", "<eos>\t2", "word\t3"], "special tokens ['_UNK'] are missing"),
        (["<pad>\t0", "<bos>\t1", "<eos>\t2", "_UNK\t3", "word\t5"], "ids are not 0..4"),
        (["<pad>\t0", "<bos>\t1", "<eos>\t2", "_UNK\t3", "_UNK\t4"], "listed more than once"),
        (["<pad>\t0", "<bos>\tone"], "expected token<TAB>id lines"),
    ],
)
def test_a_bad_vocabulary_file_is_a_usage_error_naming_it(tmp_path, data_dir, lines, problem):
    (tmp_path / "yahoo").mkdir()
    shutil.copy(YAHOO_VALID.path(data_dir), tmp_path / "yahoo")
    with gzip.open(tmp_path / "yahoo" / "vocab.txt.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match=re.escape(problem)) as raised:
        Yahoo(YahooParams(check_sha256=False)).load(tmp_path, seed=0)
    assert "vocab.txt.gz" in str(raised.value) and "data 'yahoo'" in str(raised.value)


# ----------------------------------------------------------------------------------------------- corpora


def timed_load(source, data_dir):
    """The source's data, with the seconds its load took as ``load_seconds``."""
    started = time.perf_counter()
    data = source.load(data_dir, seed=0)
    data.load_seconds = time.perf_counter() - started
    return data


@pytest.fixture(scope="module")
def yahoo(data_dir):
    return timed_load(Yahoo(YahooParams()), data_dir)


@pytest.fixture(scope="module")
def ptb(data_dir):
    return timed_load(PTB(PTBParams()), data_dir)


def assert_data_layout(x: torch.Tensor, lengths: torch.Tensor) -> None:
    """Every row is BOS, words, EOS at ``length - 1``, then padding only; no special token among the words."""
    positions = torch.arange(x.shape[1])
    assert (x[:, 0] == BOS).all()
    assert (x[torch.arange(len(x)), lengths - 1] == EOS).all()
    assert (x[positions >= lengths[:, None]] == PAD).all()
    words = (positions > 0) & (positions < lengths[:, None] - 1)
    assert (x[words] > EOS).all(), "padding, start or end token inside a sequence"


def test_yahoo_shipped_split_vocabulary_and_sequences(yahoo):
    assert [yahoo.size(name) for name in ("train", "valid", "test")] == [8000, 1000, 1000]
    assert len(yahoo.vocabulary) == 20000 and yahoo.spec.vocab_size == 20000 and yahoo.spec.shape == (202,)
    assert (yahoo.spec.pad_id, yahoo.spec.bos_id, yahoo.spec.eos_id, yahoo.spec.unk_id) == (PAD, BOS, EOS, UNK)
    assert yahoo.vocabulary.tokens[:4] == ("<pad>", "<bos>", "<eos>", "_UNK")
    for name, x in yahoo.splits.items():
        assert_data_layout(x, yahoo.lengths[name])
    # The counts of yahoo/PROVENANCE.md: 790,680 words, 33,582 of them _UNK (the vocabulary covers the split).
    assert sum(int((lengths - 2).sum()) for lengths in yahoo.lengths.values()) == 790_680
    assert sum(int((x == UNK).sum()) for x in yahoo.splits.values()) == 33_582
    assert yahoo.load_seconds < 10


def test_yahoo_documents_come_back_from_their_ids(yahoo, data_dir):
    lines = read_lines(YAHOO_VALID, data_dir, check_sha256=False)
    _, valid_rows, test_rows = random_parts(len(lines), (0.1, 0.1), seed=123)
    for split, rows in (("valid", valid_rows), ("test", test_rows)):
        expected = [" ".join(lines[i].split()) for i in rows]
        assert yahoo.decode(yahoo.splits[split]) == expected


def test_ptb_vocabulary_is_trained_with_its_own_unknown_token(ptb):
    assert [ptb.size(name) for name in ("train", "valid", "test")] == [42068, 1685, 1685]
    # 9,999 word types (one of them the corpus's own <unk>) and padding, start, end.
    assert len(ptb.vocabulary) == 10_002 and ptb.vocabulary.tokens[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert sum(int((lengths - 2).sum()) for lengths in ptb.lengths.values()) == 887_521 + 70_390
    for name, x in ptb.splits.items():
        assert_data_layout(x, ptb.lengths[name])
    assert any("<unk>" in text.split() for text in ptb.decode(ptb.splits["train"][:50]))
    assert ptb.load_seconds < 15


def test_splits_depend_on_the_split_seed_not_on_the_run_seed(data_dir, yahoo):
    again = Yahoo(YahooParams()).load(data_dir, seed=7)
    assert torch.equal(again.splits["test"], yahoo.splits["test"])
    other = Yahoo(YahooParams(split_seed=5)).load(data_dir, seed=0)
    assert not torch.equal(other.splits["test"][:100, :20], yahoo.splits["test"][:100, :20])


def test_the_full_corpus_is_read_when_the_user_adds_its_files(tmp_path, data_dir):
    (tmp_path / "yahoo").mkdir()
    for name in ("yahoo.valid.txt.gz", "vocab.txt.gz"):
        (tmp_path / "yahoo" / name).symlink_to(data_dir / "yahoo" / name)
    (tmp_path / "yahoo" / "yahoo.train.txt").write_text("what is love ?\nbaby do n't hurt me\n")
    with gzip.open(tmp_path / "yahoo" / "yahoo.test.txt.gz", "wt") as handle:
        handle.write("no more\n")
    data = Yahoo(YahooParams()).load(tmp_path, seed=0)
    assert (data.size("train"), data.size("valid"), data.size("test")) == (2, 10_000, 1)
    assert sorted(data.decode(data.splits["train"])) == ["baby do n't hurt me", "what is love ?"]
    shipped = Yahoo(YahooParams(source="shipped")).load(tmp_path, seed=0)
    assert shipped.size("train") == 8000
    (tmp_path / "yahoo" / "yahoo.test.txt.gz").unlink()
    assert Yahoo(YahooParams()).load(tmp_path, seed=0).size("train") == 8000, "auto: the full corpus is incomplete"
    with pytest.raises(UsageError, match=r"yahoo\.test\.txt\.gz' \(or 'yahoo/yahoo\.test\.txt'\) is missing"):
        Yahoo(YahooParams(source="full")).load(tmp_path, seed=0)


def test_missing_and_corrupt_files_are_usage_errors(tmp_path, data_dir):
    with pytest.raises(UsageError, match=r"data 'ptb': data file '.*ptb\.train\.txt\.gz' is missing"):
        PTB(PTBParams()).load(tmp_path, seed=0)
    (tmp_path / "ptb").mkdir()
    for name in ("ptb.train.txt.gz", "ptb.valid.txt.gz"):
        shutil.copy(data_dir / "ptb" / name, tmp_path / "ptb")
    corrupt = bytearray((tmp_path / "ptb" / "ptb.valid.txt.gz").read_bytes())
    corrupt[100] ^= 0xFF
    (tmp_path / "ptb" / "ptb.valid.txt.gz").write_bytes(bytes(corrupt))
    with pytest.raises(UsageError, match="fails its checksum"):
        PTB(PTBParams()).load(tmp_path, seed=0)
    with pytest.raises(UsageError, match=r"ptb\.valid\.txt\.gz' is corrupt"):
        PTB(PTBParams(check_sha256=False)).load(tmp_path, seed=0)
    with pytest.raises(UsageError, match="has no vocabulary file"):
        PTB(PTBParams(vocab="file")).load(data_dir, seed=0)


def test_long_documents_keep_their_first_words_then_end(data_dir, yahoo):
    short = Yahoo(YahooParams(max_len=12)).load(data_dir, seed=0)
    assert short.spec.shape == (12,) and short.splits["valid"].shape[1] == 12
    assert_data_layout(short.splits["valid"], short.lengths["valid"])
    cut = yahoo.lengths["valid"] > 12
    assert cut.any() and (short.lengths["valid"][cut] == 12).all()
    assert torch.equal(short.splits["valid"][cut, :11], yahoo.splits["valid"][cut, :11])


def test_training_batches_are_bucketed_by_length_pure_and_cover_every_epoch(data_dir, ptb):
    per_epoch = ptb.steps_per_epoch(64)
    assert per_epoch == math.ceil(42068 / 64)
    for epoch in (0, 1):
        rows = torch.cat(ptb.epoch_batches(seed=3, epoch=epoch, batch_size=64))
        assert torch.equal(rows.sort().values, torch.arange(42068)), "every document once per epoch"
    fresh = PTB(PTBParams()).load(data_dir, seed=0)
    for epoch, index in ((1, 5), (0, 7), (1, 5)):  # out of order, on another instance
        batch = ptb.train_batch(epoch, index, 64, seed=3)
        assert torch.equal(batch, fresh.train_batch(epoch, index, 64, seed=3))
        assert batch.shape[1] == int((batch != PAD).sum(1).max()), "padded to the batch's own longest sequence"
    assert not torch.equal(ptb.train_batch(0, 0, 64, seed=3), ptb.train_batch(1, 0, 64, seed=3))
    unbucketed = PTB(PTBParams(bucket_batches=1)).load(data_dir, seed=0)

    def mean_padding(data) -> float:
        batches = [data.train_batch(0, i, 64, seed=3) for i in range(100)]
        return sum((b == PAD).float().mean().item() for b in batches) / len(batches)

    assert mean_padding(ptb) < 0.05 < 0.3 < mean_padding(unbucketed)


def test_evaluation_batches_keep_split_order_padded_per_batch(yahoo):
    batches = list(yahoo.batches("valid", 300))
    assert [len(b) for b in batches] == [300, 300, 300, 100]
    for i, batch in enumerate(batches):
        lengths = yahoo.lengths["valid"][300 * i : 300 * i + len(batch)]
        assert batch.shape[1] == int(lengths.max())
        assert torch.equal(batch, yahoo.splits["valid"][300 * i : 300 * i + len(batch), : batch.shape[1]])
    assert sum(len(b) for b in yahoo.batches("valid", 300, limit=450)) == 450


# ----------------------------------------------------------------------------------------------- teacher forcing


class LeakyDecoder(LSTMDecoder):
    """The classic bug: the input at each position is the token it must predict."""

    def teacher_forcing(self, x):
        return x[:, 1:], x[:, 1:]


def next_token_mass(decoder: LSTMDecoder, prefix: list[int], z: torch.Tensor) -> float:
    """Sum over every token w of p(w | BOS prefix, z), each read from the log-likelihood of BOS prefix w EOS."""
    candidates = [w for w in range(SPEC.vocab_size) if w != PAD]
    x = torch.tensor([[BOS, *prefix, w, EOS] for w in candidates])
    with torch.no_grad():
        log_probs = decoder.token_log_probs(x, z.expand(1, len(candidates), D))  # 'k b t'
    return log_probs[0, :, len(prefix)].exp().sum().item()


@pytest.mark.parametrize("prefix", [[], [4], [5, 9, 7]])
def test_each_position_predicts_a_distribution_over_the_next_token(prefix):
    """Teacher forcing is shifted right: p(. | tokens before it) sums to one over what comes next. A decoder that
    sees token t while predicting token t scores every candidate as if it were given, which breaks this."""
    torch.manual_seed(0)
    z = torch.randn(D)
    assert next_token_mass(sharpened(small_decoder()), prefix, z) == pytest.approx(1.0, abs=1e-5)
    torch.manual_seed(0)
    leaky = sharpened(LeakyDecoder(LSTMDecoderParams(embed_dim=8, hidden=16, dropout=0.0), SPEC, D))
    assert abs(next_token_mass(leaky, prefix, z) - 1.0) > 0.1  # 0.30, 0.43, 0.33 with these weights


def sharpened(decoder: LSTMDecoder) -> LSTMDecoder:
    """``decoder`` in eval mode with its weights times 5: a random decoder whose predictions depend strongly on
    its inputs (with small weights a leak changes the sums by under 1%)."""
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.mul_(5.0)
    return decoder.eval()


def test_a_prediction_never_depends_on_later_tokens():
    torch.manual_seed(1)
    decoder = small_decoder().eval()
    x = sequences([4, 5, 6, 7, 8, 9], [6, 6, 6, 6, 6, 6])
    z = torch.randn(2, 2, D)
    with torch.no_grad():
        base = decoder.token_log_probs(x, z)
        for j in range(1, 7):  # change the word at position j: targets before it (index < j - 1) must not move
            changed = x.clone()
            changed[:, j] = 10
            moved = decoder.token_log_probs(changed, z)
            torch.testing.assert_close(moved[..., : j - 1], base[..., : j - 1], atol=1e-6, rtol=0)
            assert not torch.allclose(moved[..., j - 1 :], base[..., j - 1 :])


# ----------------------------------------------------------------------------------------------- padding


def test_padding_never_changes_likelihoods_or_posteriors():
    torch.manual_seed(2)
    decoder, encoder = small_decoder().eval(), small_encoder().eval()
    x = sequences([4, 5, 6, 7, 8], [9], [], [10, 11, 4])
    z = torch.randn(3, 4, D)
    with torch.no_grad():
        log_px, posterior = decoder.log_prob(x, z), encoder(x)
        padded = torch.cat([x, torch.full((4, 5), PAD)], dim=1)
        torch.testing.assert_close(decoder.log_prob(padded, z), log_px)
        torch.testing.assert_close(encoder(padded).mean, posterior.mean)
        for i, row in enumerate(x):  # alone, cut to its own length, as in a batch with longer sequences
            alone = row[row != PAD][None]
            torch.testing.assert_close(decoder.log_prob(alone, z[:, i : i + 1]), log_px[:, i : i + 1])
            torch.testing.assert_close(encoder(alone).stddev, posterior.stddev[i : i + 1])
        per_token = decoder.token_log_probs(x, z)
    targets = x[:, 1:]
    assert (per_token[:, targets == PAD] == 0).all() and (per_token[:, targets != PAD] < 0).all()


def test_predicted_tokens_are_the_words_and_the_end_token():
    x = sequences([4, 5, 6], [], [7], width=9)
    assert predicted_tokens(x, SPEC).tolist() == [4, 1, 2]


def test_chunked_evaluation_gives_the_same_likelihoods(monkeypatch):
    torch.manual_seed(3)
    decoder, encoder = small_decoder().eval(), small_encoder().eval()
    x = sequences([4, 5, 6, 7], [8, 9], [10])
    z = torch.randn(5, 3, D)
    whole, posterior = decoder.log_prob(x, z), encoder(x)  # gradients on: one chunk
    monkeypatch.setattr(lstm, "ROW_ELEMENTS", 10)  # gradients off: a row per chunk
    monkeypatch.setattr(lstm, "LOGIT_ELEMENTS", 30)  # logits of 2 or 3 tokens at a time
    with torch.no_grad():
        torch.testing.assert_close(decoder.log_prob(x, z), whole.detach())
        torch.testing.assert_close(encoder(x).mean, posterior.mean.detach())


def test_word_dropout_replaces_input_words_by_unknown_in_training_only():
    torch.manual_seed(4)
    decoder = small_decoder(word_dropout=1.0)
    seen: list[torch.Tensor] = []
    decoder.embed.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    x = sequences([4, 5, 6, 7], [8])
    decoder.log_prob(x, torch.randn(1, 2, D))
    assert seen[-1].tolist() == [[BOS, UNK, UNK, UNK, UNK], [BOS, UNK, EOS, PAD, PAD]]
    decoder.eval()
    decoder.log_prob(x, torch.randn(1, 2, D))
    assert torch.equal(seen[-1], x[:, :-1])
    with pytest.raises(UsageError, match="unknown token"):
        LSTMDecoder(LSTMDecoderParams(word_dropout=0.1), DataSpec((5,), "tokens", 9, 0, 1, 2), D)


# ----------------------------------------------------------------------------------------------- sampling


def test_samples_end_once_with_eos_and_are_padded_after():
    torch.manual_seed(5)
    decoder = small_decoder().eval()
    samples = decoder.sample(torch.randn(300, D))
    assert samples.shape == (300, 12) and samples.dtype == torch.long
    lengths = (samples != PAD).sum(dim=1)
    assert_data_layout(samples, lengths)
    assert ((samples == EOS).sum(dim=1) == 1).all()
    assert lengths.min() < 6 and (lengths == 12).any(), "lengths vary, some reach max_len"
    assert torch.isfinite(decoder.log_prob(samples, torch.randn(1, 300, D))).all()
    with torch.no_grad():
        decoder.out.bias[EOS] = -50.0  # the model never ends: every sequence is closed at max_len
    closed = decoder.sample(torch.randn(20, D))
    assert ((closed != PAD).sum(dim=1) == 12).all() and (closed[:, -1] == EOS).all()


def test_each_sample_is_its_own_row_alone_while_others_end():
    """Rows leave the sampled batch at their end token: a greedy batch of sequences of different lengths must equal
    each row sampled by itself (a row paired with another's state or code after the batch shrinks would not)."""
    torch.manual_seed(12)
    decoder = small_decoder().eval()
    z = 3 * torch.randn(40, D)
    together = decoder.sample(z, greedy=True)
    lengths = (together != PAD).sum(dim=1)
    assert len(lengths.unique()) >= 4, f"lengths must vary for the test to bite: {lengths.tolist()}"
    alone = torch.cat([decoder.sample(row, greedy=True) for row in z.split(1)])
    assert torch.equal(together, alone)


def test_greedy_decoding_and_temperature():
    torch.manual_seed(6)
    decoder = small_decoder().eval()
    z = torch.randn(50, D)
    greedy = decoder.sample(z, greedy=True)
    assert torch.equal(greedy, decoder.sample(z, greedy=True))
    by_parameter = small_decoder(greedy=True).eval()
    by_parameter.load_state_dict(decoder.state_dict())
    assert torch.equal(by_parameter.sample(z), greedy)
    assert torch.equal(decoder.sample(z, temperature=1e-4), greedy), "a temperature near 0 is greedy"
    hot, cold = decoder.sample(z, temperature=5.0), decoder.sample(z, temperature=1.0)
    assert not torch.equal(hot, cold)
    with pytest.raises(UsageError, match="temperature"):
        decoder.sample(z, temperature=0.0)


def test_token_draws_over_a_large_vocabulary_follow_the_softmax_and_skip_impossible_tokens():
    """The sampler's inverse-CDF draw: zero-probability ids (padding, start, wherever they sit) never come out,
    and the frequencies of the likeliest tokens match softmax(logits / T)."""
    torch.manual_seed(11)
    decoder = small_decoder()
    logits = (3 * torch.randn(4, 3_000)).repeat(2_000, 1)  # 4 distinct rows, 2000 draws each
    impossible = [0, 1, 1_777, 2_999]
    logits[:, impossible] = float("-inf")
    for temperature in (1.0, 0.5):
        drawn = decoder.next_tokens(logits, temperature, greedy=False)
        assert not torch.isin(drawn, torch.tensor(impossible)).any()
        expected = torch.softmax(logits[:4] / temperature, dim=-1)  # 'r v'
        rows = drawn.view(2_000, 4).T  # 'r draws'
        for row, counts in zip(expected, rows, strict=True):
            top = row.topk(3).indices
            for token in top.tolist():
                p = row[token].item()
                frequency = (counts == token).float().mean().item()
                assert abs(frequency - p) < 4 * math.sqrt(p * (1 - p) / 2_000) + 1e-3


def test_ancestral_samples_follow_the_decoders_likelihood():
    """With words {3, 4} and max_len 4, the sequences shorter than max_len are BOS EOS, BOS 3 EOS, BOS 4 EOS:
    their frequencies among samples must match exp(log p(x|z))."""
    torch.manual_seed(7)
    spec = DataSpec((4,), "tokens", vocab_size=5, pad_id=PAD, bos_id=BOS, eos_id=EOS, unk_id=UNK)
    decoder = small_decoder(spec).eval()
    z = torch.randn(1, D)
    n = 40_000
    samples = decoder.sample(z.expand(n, D))
    candidates = torch.tensor([[BOS, EOS, PAD], [BOS, 3, EOS], [BOS, 4, EOS]])
    with torch.no_grad():
        probabilities = decoder.log_prob(candidates, z.expand(1, 3, D))[0].exp()
    for candidate, p in zip(candidates, probabilities, strict=True):
        frequency = (samples[:, :3] == candidate).all(dim=1).float().mean().item()
        assert abs(frequency - p.item()) < 4 * math.sqrt(p.item() * (1 - p.item()) / n) + 1e-3


# ----------------------------------------------------------------------------------------------- metrics


def test_perplexity_of_a_uniform_decoder_is_the_number_of_predictable_tokens():
    """A decoder with zero output weights predicts uniformly over the 10 tokens that are not padding or start, and
    an encoder with zero head gives q(z|x) = N(0, I): then -ELBO = IW-NLL = (predicted tokens) * log 10."""
    torch.manual_seed(8)
    decoder, encoder = small_decoder().eval(), small_encoder().eval()
    with torch.no_grad():
        decoder.out.weight.zero_()
        decoder.out.bias.zero_()
        encoder.head.weight.zero_()
        encoder.head.bias.zero_()
    batches = [sequences([4, 5, 6], [7], width=10), sequences([], [8, 9, 10, 11, 4])]
    metrics = evaluate(encoder, decoder, isotropic_normal(D, 1.0), batches, iw_samples=4, iw_chunk=3)
    tokens = (4 + 2 + 1 + 6) / 4
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["neg_elbo"] == pytest.approx(tokens * math.log(10), rel=1e-5)
    assert metrics["ppl_elbo"] == pytest.approx(10.0, rel=1e-5)
    assert metrics["ppl_iw"] == pytest.approx(10.0, rel=1e-5)
    assert "ppl_iw" not in evaluate(encoder, decoder, isotropic_normal(D, 1.0), batches)


# ----------------------------------------------------------------------------------------------- noise and runs


def text_raw(**sections) -> dict:
    """A raw config for a run of a few seconds on PTB with small LSTMs; sections override it."""
    raw = {
        "data": {"name": "ptb", "limit": 48, "max_len": 20},
        "model": {"latent_dim": 4},
        "encoder": {"name": "lstm", "embed_dim": 16, "hidden": 16},
        "decoder": {"name": "lstm", "embed_dim": 16, "hidden": 16, "dropout": 0.0},
        "train": {"steps": 8, "batch_size": 16, "eval_every": 4, "progress": False},
        "eval": {"iw_samples": 3, "iw_chunk": 2, "batch_size": 32, "limit": 32},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def test_he2019_text_vae_has_the_reference_parameters_and_initialisation(registry, yahoo):
    """He et al.'s Yahoo VAE: 53,788,672 parameters (encoder 16,605,184, decoder 37,183,488), no bias on the linear
    maps, weights in U(-0.01, 0.01) and embeddings in U(-0.1, 0.1), the head read as (mean, log variance)."""
    he2019 = {"name": "lstm", "arch": "he2019"}
    raw = {"encoder": he2019, "decoder": he2019, "model": {"latent_dim": 32}}
    torch.manual_seed(0)
    model = build_model(resolve(merge_raw(raw), registry), registry, yahoo.spec)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert (count(model.encoder), count(model.decoder), count(model)) == (16_605_184, 37_183_488, 53_788_672)
    encoder, decoder = model.encoder, model.decoder
    assert encoder.head.bias is None and decoder.initial.bias is None and decoder.out.bias is None
    for name, parameter in model.named_parameters():
        bound = 0.1 if "embed" in name else 0.01
        assert parameter.abs().max() <= bound and parameter.abs().max() > 0.9 * bound, name
    x = yahoo.splits["valid"][:4]
    features = encoder.head(encoder._last_state(x, sequence_lengths(x, PAD)))
    torch.testing.assert_close(encoder(x).stddev, (features[:, 32:] / 2).exp())
    vaezoo_arch = {"encoder": {"name": "lstm"}, "decoder": {"name": "lstm"}, "model": {"latent_dim": 32}}
    default = build_model(resolve(merge_raw(vaezoo_arch), registry), registry, yahoo.spec)
    assert count(default) - count(model) == 2 * 32 + 1024 + 20_000, "the default arch adds the three biases only"


def test_decoder_noise_draws_documents_from_the_current_decoder(registry):
    config = resolve(merge_raw(text_raw(regularizer={"name": "ncvae"})), registry)
    assert config.noise.name == "decoder", "decoder noise is the default for text"
    torch.manual_seed(9)
    model = build_model(config, registry, SPEC)
    x = sequences([4, 5], [6])
    noise = model.noise(x, model.decoder, model.prior, None, step=0)
    assert noise.shape == (2, 4), "by default documents are cut at the data batch's width (4 tokens)"
    assert not noise.requires_grad and model.decoder.training
    assert_data_layout(noise, (noise != PAD).sum(dim=1))
    record = model.forward_step(x, step=0)
    assert record.noise_posterior.batch_shape == (2,)
    assert GaussianNoise(GaussianNoiseParams(), SPEC).incompatibility(types.SimpleNamespace(spec=SPEC))


def test_decoder_noise_on_text_is_drawn_in_bfloat16_by_default(registry):
    model = build_model(resolve(merge_raw(text_raw(regularizer={"name": "ncvae"})), registry), registry, SPEC)
    x = sequences([4, 5], [6])
    torch.manual_seed(1)
    noise = model.noise(x, model.decoder, model.prior, None, step=0)
    torch.manual_seed(1)
    z = model.prior().sample((2,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(noise, model.decoder.sample(z, max_len=x.shape[1]))


def test_decoder_noise_cut_at_the_batch_length(registry):
    """lengths = batch (the default): documents no wider than the data batch (which holds 4 tokens: BOS w w EOS),
    ended with EOS there when the decoder would go on; with lengths = decoder the full length."""
    config = resolve(merge_raw(text_raw(regularizer={"name": "ncvae"})), registry)
    torch.manual_seed(10)
    model = build_model(config, registry, SPEC)
    with torch.no_grad():
        model.decoder.out.bias[EOS] = -50.0  # never ends by itself
    x = sequences([4, 5], [6])
    noise = model.noise(x, model.decoder, model.prior, None, step=0)
    assert noise.shape == (2, 4)
    assert_data_layout(noise, torch.tensor([4, 4]))
    uncut = text_raw(regularizer={"name": "ncvae"}, noise={"name": "decoder", "lengths": "decoder"})
    free = build_model(resolve(merge_raw(uncut), registry), registry, SPEC)
    free.load_state_dict(model.state_dict())
    assert free.noise(x, free.decoder, free.prior, None, step=1).shape == (
        2,
        12,
    )  # step 1: the loaded pool of step 0 is stale
    with pytest.raises(UsageError, match="max_len must be between 2 and the data's 12, got 13"):
        model.decoder.sample(torch.randn(1, 4), max_len=13)


@pytest.mark.slow
def test_ncvae_with_decoder_noise_trains_on_text_and_resumes_exactly(registry, data_dir, tmp_path):
    """Bucketed batches over almost three epochs and a noise pool refreshed every 2 steps: stopped and resumed is
    the same run as straight through."""
    sections = {"regularizer": {"name": "ncvae"}, "noise": {"name": "decoder", "refresh_every": 2}}
    straight = Trainer(resolve(merge_raw(text_raw(**sections)), registry), registry, tmp_path / "a", data_dir).run()
    metrics = straight["metrics"]
    assert all(math.isfinite(metrics[name]) for name in ("neg_elbo", "iw_nll", "ppl_elbo", "ppl_iw"))
    stopped = text_raw(**sections)
    stopped["train"]["steps"] = 4
    Trainer(resolve(merge_raw(stopped), registry), registry, tmp_path / "b", data_dir).run()
    resumed = Trainer(resolve(merge_raw(text_raw(**sections)), registry), registry, tmp_path / "b", data_dir)
    assert resumed.run(resume=True)["metrics"] == metrics


@pytest.mark.slow
def test_gaussian_noise_on_token_ids_is_refused_before_training(data_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--data", "ptb", "--encoder", "lstm", "--decoder", "lstm", "--regularizer", "ncvae", "--noise", "gaussian"]
    result = run_cli("run", *args, "--data-dir", str(data_dir), "--out", str(out), "--no-progress")
    assert result.returncode == 2, result.stderr
    assert "noise 'gaussian' cannot be used with data 'ptb'" in result.stderr
    assert "Gaussian noise cannot be added to token ids" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "checkpoint.pt").exists()


SHORT_YAHOO = [
    "--data", "yahoo", "--encoder", "lstm", "--decoder", "lstm", "--latent-dim", "8",
    "--set", "encoder.embed_dim=32", "--set", "encoder.hidden=32",
    "--set", "decoder.embed_dim=32", "--set", "decoder.hidden=64", "--set", "decoder.dropout=0",
    "--set", "data.limit=1500", "--set", "data.max_len=32", "--set", "eval.limit=200",
    "--set", "eval.iw_samples=4", "--set", "eval.iw_chunk=4", "--set", "train.eval_every=20",
    "--steps", "80", "--batch-size", "16", "--no-progress",
]  # fmt: skip
#: Small LSTMs run thousands of tiny sequential operations; with two intra-op threads each one synchronises them,
#: which on a busy 2-core machine made this run 4 times slower (76 s against 18 s with one thread).
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_short_yahoo_run_lowers_the_validation_loss_and_prints_samples(data_dir, tmp_path):
    out = tmp_path / "run"
    started = time.perf_counter()
    result = run_cli("run", *SHORT_YAHOO, "--data-dir", str(data_dir), "--out", str(out), env=ONE_THREAD)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["valid"]["neg_elbo"], lines[-1]["valid"]["neg_elbo"]
    assert last < first - 30, f"validation -ELBO went from {first:.1f} to {last:.1f}"
    test = json.loads((out / "results.json").read_text())["metrics"]
    assert 1 < test["ppl_iw"] < 1.01 * test["ppl_elbo"] < 5000, test
    print(f"yahoo short run: {seconds:.1f} s, valid -ELBO {first:.1f} -> {last:.1f}, test {test}")

    sampled = run_cli("sample", str(out), "--count", "4", "--data-dir", str(data_dir), env=ONE_THREAD)
    assert sampled.returncode == 0, sampled.stderr
    text = (out / "samples.txt").read_text()
    assert sampled.stdout == f"{text}{out / 'samples.txt'}\n"
    prior, pairs = text.split("\n\n", 1)
    assert prior.splitlines()[0] == "samples from the prior:" and len(prior.splitlines()) == 5
    assert pairs.splitlines()[0] == "test documents (>) and reconstructions (<):"
    assert sum(line.startswith("> ") for line in pairs.splitlines()) == 2
    assert sum(line.startswith("< ") for line in pairs.splitlines()) == 2


# ----------------------------------------------------------------------------------------------- torchtext


class _RefuseImport(importlib.abc.MetaPathFinder):
    """Makes ``import torchtext`` raise ``error``, as a torchtext built for another torch does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "torchtext" or name.startswith("torchtext."):
            raise self.error
        return None


@pytest.fixture
def no_torchtext_modules(monkeypatch):
    for name in [n for n in sys.modules if n == "torchtext" or n.startswith("torchtext.")]:
        monkeypatch.delitem(sys.modules, name)


def test_torchtext_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchtext", None)  # import torchtext raises ImportError
    with pytest.raises(UsageError, match=r"needs torchtext, not installed .*pip install 'vaezoo\[torchtext\]'"):
        torchtext_adapter.import_torchtext()


def test_torchtext_built_for_another_torch_is_a_clear_error(monkeypatch, no_torchtext_modules):
    error = OSError("Could not load this library: .../torchtext/lib/libtorchtext.so")
    monkeypatch.setattr(sys, "meta_path", [_RefuseImport(error), *sys.meta_path])
    message = rf"cannot load its compiled extension with torch {re.escape(torch.__version__)}"
    with pytest.raises(UsageError, match=message) as raised:
        torchtext_adapter.text_data_from_torchtext(object(), [], [], [])
    assert "torch 2.3.x" in str(raised.value) and "libtorchtext.so" in str(raised.value)


def stand_in_torchtext() -> dict[str, types.ModuleType]:
    """A minimal module tree with torchtext's names, for the adapter's own logic where torchtext is absent."""

    class Vocab:
        def __init__(self, itos):
            self.itos = list(itos)

        def get_itos(self):
            return self.itos

    modules = {name: types.ModuleType(name) for name in ("torchtext", "torchtext.vocab", "torchtext.data")}
    modules["torchtext.data.utils"] = types.ModuleType("torchtext.data.utils")
    modules["torchtext.vocab"].Vocab = Vocab
    modules["torchtext"].vocab = modules["torchtext.vocab"]
    return modules


def test_torchtext_vocabulary_and_iterables_become_text_data(monkeypatch):
    modules = stand_in_torchtext()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    itos = ["<unk>", "<pad>", "<bos>", "<eos>", "the", "cat", "sat"]
    vocab = modules["torchtext.vocab"].Vocab(itos)
    data = torchtext_adapter.text_data_from_torchtext(
        vocab,
        iter(["the cat sat", (3, "the dog"), ["sat", "the", "cat"]]),  # a string, a (label, text) pair, words
        ["cat"],
        [(1, "the cat")],
        params=SequenceParams(max_len=10, limit=2),
    )
    assert (data.spec.pad_id, data.spec.bos_id, data.spec.eos_id, data.spec.unk_id) == (1, 2, 3, 0)
    assert data.splits["train"].tolist() == [[2, 4, 5, 6, 3], [2, 4, 0, 3, 1]]  # ids of itos; "dog" unknown
    assert data.decode(data.splits["test"]) == ["the cat"]
    with pytest.raises(UsageError, match=r"special tokens \['<eos>'\] are missing"):
        torchtext_adapter.vocabulary_from_torchtext(modules["torchtext.vocab"].Vocab(itos[:3]))
    with pytest.raises(UsageError, match=r"expected a torchtext\.vocab\.Vocab"):
        torchtext_adapter.vocabulary_from_torchtext(itos)
    with pytest.raises(UsageError, match="a document must be"):
        torchtext_adapter.text_data_from_torchtext(vocab, [3.5], ["cat"], ["cat"])


@pytest.mark.parametrize("installed", [False, True])
def test_the_torchtext_source_is_registered_only_with_torchtext_installed(monkeypatch, installed):
    """Whether torchtext is installed is looked up without importing it."""
    monkeypatch.setattr(data_plugin.importlib.util, "find_spec", lambda name: object() if installed else None)
    registered: list[type] = []
    data_plugin.vaezoo_register(register=registered.append)
    assert (torchtext_adapter.TorchtextSource in registered) is installed
    assert "torchtext" not in sys.modules or sys.modules["torchtext"] is None or installed


def real_torchtext():
    """The real torchtext module; skips (or, with VAEZOO_REQUIRE_TORCHTEXT=1, fails) where it cannot load."""
    try:
        return torchtext_adapter.import_torchtext()
    except UsageError as error:
        if os.environ.get("VAEZOO_REQUIRE_TORCHTEXT") == "1":
            pytest.fail(f"VAEZOO_REQUIRE_TORCHTEXT=1 but {error}")
        pytest.skip(str(error))


def test_torchtext_real_ptb_through_the_adapter_matches_the_ptb_source(data_dir, ptb, registry):
    real_torchtext()
    assert "torchtext" in registry.names("data")
    source = registry.get("data", "torchtext").cls
    data = source(source.Params()).load(data_dir, seed=0)
    # torchtext's build_vocab_from_iterator and the tokenizers trainer agree: frequency, then spelling.
    assert data.vocabulary.tokens == ptb.vocabulary.tokens
    for split in ("valid", "test"):
        assert torch.equal(data.splits[split], ptb.splits[split])
    assert torch.equal(data.splits["train"].sort(dim=0).values, ptb.splits["train"].sort(dim=0).values)


@pytest.mark.slow
def test_torchtext_real_vocabulary_with_its_own_tokenizer_trains(data_dir, registry, tmp_path):
    torchtext = real_torchtext()
    tokenizer = torchtext.data.utils.get_tokenizer("basic_english")
    lines = ["The cat sat.", "A dog sat!", "The dog ate the cat's food."]
    vocab = torchtext.vocab.build_vocab_from_iterator(map(tokenizer, lines), specials=list(Specials().all()))
    data = torchtext_adapter.text_data_from_torchtext(vocab, lines, lines[:1], lines[1:], tokenizer=tokenizer)
    assert data.decode(data.splits["valid"]) == ["the cat sat ."]
    config = resolve(merge_raw(text_raw(data={"name": "torchtext", "limit": 48, "max_len": 20})), registry)
    results = Trainer(config, registry, tmp_path / "run", data_dir).run()
    assert math.isfinite(results["metrics"]["ppl_iw"])
