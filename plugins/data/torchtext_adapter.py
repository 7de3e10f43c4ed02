"""A torchtext vocabulary and dataset iterables as vaezoo text data (the optional extra ``torchtext``).

torchtext 0.18.0, its last release, runs only with torch 2.3.x: ``pip install 'vaezoo[torchtext]'`` installs both.
torchtext is imported here only, and only when the adapter is used; a missing torchtext (ImportError) or one
whose compiled extension does not match the installed torch (OSError) is a UsageError saying what to install.
Nothing else in vaezoo imports torchtext.

From Python, ``text_data_from_torchtext(vocab, train, valid, test)`` returns the same :class:`TextData` as the
``yahoo`` and ``ptb`` sources (sequences ``BOS w1 .. wn EOS``, padding, length-bucketed batches):

- ``vocab`` is a ``torchtext.vocab.Vocab`` holding the padding, start, end and unknown tokens of ``specials``
  (e.g. ``build_vocab_from_iterator(tokens, specials=["<pad>", "<bos>", "<eos>", "<unk>"])``); its ids are kept.
- ``train``, ``valid`` and ``test`` are iterables of documents, each a string (split into words by ``tokenizer``,
  whitespace by default; e.g. ``torchtext.data.utils.get_tokenizer("basic_english")``), a list of words, or a
  ``(label, text)`` pair as torchtext's datasets yield (the label, which must not be a string, is dropped).

From the command line, data ``torchtext`` calls ``data.factory``, a ``module:function`` taking the data directory
(``--data-dir`` or ``$VAEZOO_DATA``, a Path) and returning a :class:`TorchtextCorpus`. The default factory,
``ptb_corpus``, builds the shipped Penn Treebank through torchtext's own API; it demonstrates the adapter and tests
it. This source is registered only when torchtext is installed (looked up without importing it), so an environment
without torchtext lists no source it cannot load.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import torch

from vaezoo.api import DataSource, UsageError, param
from vaezoo_plugins.data.text import (
    PTB,
    SPLITS,
    Documents,
    SequenceParams,
    Specials,
    TextData,
    Vocabulary,
    build_text_data,
)

INSTALL = "pip install 'vaezoo[torchtext]' (torchtext 0.18.0, its last release, needs torch 2.3.x)"
DEFAULT_SPECIALS = Specials()
DEFAULT_SEQUENCES = SequenceParams()
Tokenizer = Callable[[str], list[str]]


class TorchtextUnavailable(UsageError):
    """torchtext cannot be imported: it is missing, or built for another torch."""


def import_torchtext() -> ModuleType:
    """``torchtext``, its ``vocab`` and ``data.utils`` loaded; raises TorchtextUnavailable when it cannot be."""
    try:
        import torchtext

        getattr(torchtext, "disable_torchtext_deprecation_warning", lambda: None)()
        importlib.import_module("torchtext.vocab")
        importlib.import_module("torchtext.data.utils")
    except ImportError as error:
        raise TorchtextUnavailable(
            f"the torchtext adapter needs torchtext, not installed ({error}): {INSTALL}"
        ) from None
    except OSError as error:
        raise TorchtextUnavailable(
            f"torchtext is installed but cannot load its compiled extension with torch {torch.__version__} "
            f"({error}); {INSTALL}"
        ) from None
    return torchtext


@attrs.frozen
class TorchtextCorpus:
    """What a ``data.factory`` returns: a torchtext vocabulary, the splits' documents and how to split strings."""

    vocab: Any
    train: Iterable[Any]
    valid: Iterable[Any]
    test: Iterable[Any]
    tokenizer: Tokenizer | None = None
    specials: Specials = attrs.field(factory=Specials)


def vocabulary_from_torchtext(vocab: Any, specials: Specials = DEFAULT_SPECIALS) -> Vocabulary:
    """A :class:`Vocabulary` with the ids of the ``torchtext.vocab.Vocab`` ``vocab``, which must hold ``specials``."""
    torchtext = import_torchtext()
    if not isinstance(vocab, torchtext.vocab.Vocab):
        raise UsageError(f"expected a torchtext.vocab.Vocab, got {type(vocab).__name__}")
    try:
        return Vocabulary(vocab.get_itos(), specials)
    except ValueError as error:
        hint = f"build it with build_vocab_from_iterator(..., specials={list(specials.all())})"
        raise UsageError(f"torchtext vocabulary: {error}; {hint}") from None


def words_of(document: Any, tokenizer: Tokenizer) -> list[str]:
    """The words of one document: a string split by ``tokenizer``, a list of words, or a (label, text) pair."""
    if isinstance(document, str):
        return list(tokenizer(document))
    if isinstance(document, tuple | list):
        if len(document) == 2 and isinstance(document[1], str) and not isinstance(document[0], str):
            return list(tokenizer(document[1]))
        if all(isinstance(word, str) for word in document):
            return list(document)
    raise UsageError(
        f"a document must be a string, a list of words or a (label, text) pair, got {type(document).__name__} "
        f"{str(document)[:60]!r}"
    )


def text_data_from_torchtext(
    vocab: Any,
    train: Iterable[Any],
    valid: Iterable[Any],
    test: Iterable[Any],
    *,
    tokenizer: Tokenizer | None = None,
    specials: Specials = DEFAULT_SPECIALS,
    params: SequenceParams = DEFAULT_SEQUENCES,
) -> TextData:
    """:class:`TextData` from a torchtext vocabulary and the splits' documents (see the module docstring).

    ``params`` sets ``max_len``, ``bucket_batches`` and ``limit`` (the first ``limit`` training documents).
    """
    vocabulary = vocabulary_from_torchtext(vocab, specials)
    split = tokenizer or str.split
    iterables = {"train": itertools.islice(train, params.limit or None), "valid": valid, "test": test}
    documents: dict[str, Documents] = {name: [words_of(d, split) for d in iterables[name]] for name in SPLITS}
    return build_text_data(documents, vocabulary, params)


def ptb_corpus(data_dir: Path) -> TorchtextCorpus:
    """The shipped Penn Treebank through torchtext: the splits of data ``ptb`` (training in file order), split by
    ``get_tokenizer(None)`` (whitespace), and a vocabulary from ``build_vocab_from_iterator`` on the training split."""
    torchtext = import_torchtext()
    source = PTB(PTB.Params())
    lines = source.read(Path(data_dir), source.uses_full(Path(data_dir)))
    tokenizer = torchtext.data.utils.get_tokenizer(None)
    specials = Specials()
    vocab = torchtext.vocab.build_vocab_from_iterator(map(tokenizer, lines["train"]), specials=list(specials.all()))
    vocab.set_default_index(vocab[specials.unk])
    return TorchtextCorpus(vocab, lines["train"], lines["valid"], lines["test"], tokenizer, specials)


def resolve_factory(reference: str) -> Callable[[Path], Any]:
    """The function named by ``module:function``; a bad reference is a UsageError."""
    module_name, _, function_name = reference.partition(":")
    if not module_name or not function_name:
        raise UsageError(f"data.factory must be module:function, got {reference!r}")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"data.factory {reference!r} cannot be loaded: {error}") from None
    if not callable(function):
        raise UsageError(f"data.factory {reference!r} is not a function")
    return function


@attrs.frozen
class TorchtextParams(SequenceParams):
    factory: str = param(
        "vaezoo_plugins.data.torchtext_adapter:ptb_corpus",
        help="module:function(data_dir) returning a TorchtextCorpus (default: the shipped PTB through torchtext)",
    )


class TorchtextSource(DataSource):
    """Text data from a torchtext vocabulary and dataset iterables, returned by ``data.factory``."""

    name = "torchtext"
    description = "a torchtext vocabulary and dataset iterables from data.factory (needs the extra 'torchtext')"
    Params = TorchtextParams
    default_noise = "decoder"

    def load(self, data_dir: Path | None, seed: int) -> TextData:
        """The factory's corpus as :class:`TextData`; it does not depend on ``seed`` (only the batch order does)."""
        if data_dir is None:
            raise UsageError(f"data {self.name!r} reads files: pass --data-dir or set VAEZOO_DATA")
        try:
            corpus = resolve_factory(self.params.factory)(data_dir)
            if not isinstance(corpus, TorchtextCorpus):
                raise UsageError(f"data.factory returned {type(corpus).__name__}, not a TorchtextCorpus")
            return text_data_from_torchtext(
                corpus.vocab,
                corpus.train,
                corpus.valid,
                corpus.test,
                tokenizer=corpus.tokenizer,
                specials=corpus.specials,
                params=self.params,
            )
        except UsageError as error:
            raise type(error)(f"data {self.name!r}: {error}") from None
