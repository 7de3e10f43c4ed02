"""What the data sources that read files (:mod:`vaezoo_plugins.data.images`, :mod:`vaezoo_plugins.data.text`)
share beyond reading them: the check of their held-out fractions, the seeds of their random streams, and how a
trained run evaluated on a test file had its shipped files divided.
"""

from __future__ import annotations

import numpy as np

from vaezoo.api import TrainedData, UsageError

#: Domain tags of the streams derived from a seed (:func:`derived_seed`), one per use so that no two share a stream
#: (SeedSequence pads entropy with zeros, so without them (s,) and (s, 0, 0) would give the same stream): an
#: image's fixed bits, the bits of a training batch of images, the order of an epoch's batches of text.
FIXED_BITS, TRAINING_BITS, BATCH_ORDER = 1, 2, 3


def derived_seed(domain: int, *parts: int) -> int:
    """A 63-bit seed mixing ``domain`` and the integers ``parts`` by hashing, so neighbouring tuples give unrelated
    streams; distinct domains never share a stream for any ``parts``."""
    state = np.random.SeedSequence([domain, *(p % 2**64 for p in parts)]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


class HeldOutFractions:
    """Base of the parameters of a source that holds out ``valid_fraction`` and ``test_fraction`` of one file:
    building them raises ValueError unless the two leave part of the file to train on."""

    __slots__ = ()

    def __attrs_post_init__(self) -> None:
        if self.valid_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"valid_fraction + test_fraction must be < 1, got {self.valid_fraction} + {self.test_fraction}"
            )


def run_test_from_file(trained: TrainedData | None, standard_source: str, now: bool) -> bool:
    """Whether the test split of a trained run came from a file of its own, which decides how the run divided the
    shipped files (their test part joined train, see :func:`vaezoo.api.share_parts`): set by ``data.test_file`` or
    read by ``data.source=STANDARD_SOURCE``, not by another source than ``auto``, and with ``auto`` as the run
    recorded it (read from another file than train and valid). ``now`` says whether the data being loaded has a
    test file: the answer when no trained run is evaluated (``trained`` None), or with ``auto`` when the run
    recorded no sources. A run whose test split came from a file evaluated without one is a UsageError: its
    training split holds the shipped test part."""
    if trained is None:
        return now
    recorded, source = trained.sources, trained.params.source
    if trained.params.test_file or source != "auto":
        from_file = bool(trained.params.test_file) or source == standard_source
    elif "test" in recorded:
        from_file = recorded["test"]["file"] not in {recorded[s]["file"] for s in ("train", "valid") if s in recorded}
    else:
        from_file = now
    if from_file and not now:
        raise UsageError(
            "the run evaluated took its test split from a file, so its training split holds the shipped test part: "
            "name a test file (data.test_file)"
        )
    return from_file
