"""What a component is: the base every component class derives from, and the kinds of component by name.

The interface of each kind (:mod:`vaezoo.components.interfaces`, :mod:`vaezoo.components.metric`,
:mod:`vaezoo.training.callbacks`, :mod:`vaezoo.training.strategy`) derives from
:class:`Component` and sets ``kind``; the registry files a class under its ``kind``.
"""

from __future__ import annotations

from typing import ClassVar

from vaezoo.base.params import NoParams

#: Kinds of which a run chooses exactly one (``noise`` and ``transform``: at most one); each is a config section.
#: ``transform`` is a posterior transform (between the encoder and sampling), ``strategy`` a training strategy (the
#: update rule of a training step).
KINDS = ("data", "encoder", "decoder", "prior", "regularizer", "noise", "transform", "strategy")
#: Kinds of which a run chooses any number, in the config section ``callbacks`` (``--callback NAME``).
MULTI_KINDS = ("callback",)
#: Kinds of which every registered component serves every run: each evaluation computes every metric that applies.
EVERY_KINDS = ("metric",)
ALL_KINDS = (*KINDS, *MULTI_KINDS, *EVERY_KINDS)


class Component:
    """Common to every component: its ``kind`` (set by the interface it derives from), a registered ``name``, a
    ``Params`` class (frozen attrs), and a one-line ``description``."""

    kind: ClassVar[str]
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    description: ClassVar[str] = ""
