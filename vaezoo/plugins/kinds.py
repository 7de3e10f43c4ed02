"""The kinds of component, by name. Free of torch, so that the command line can list them without loading it;
:mod:`vaezoo.components.interfaces` holds the interface of each kind."""

from __future__ import annotations

#: Kinds of which a run chooses exactly one (``noise``: at most one); each is a config section.
KINDS = ("data", "encoder", "decoder", "prior", "regularizer", "noise")
#: Kinds of which a run chooses any number, in the config section ``callbacks`` (``--callback NAME``).
MULTI_KINDS = ("callback",)
ALL_KINDS = (*KINDS, *MULTI_KINDS)
