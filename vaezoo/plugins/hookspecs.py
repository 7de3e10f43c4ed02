"""The hooks of vaezoo: registering components, and the lifecycle of a run.

A plugin is a module (or object) found through the entry-point group ``vaezoo``. It implements
``vaezoo_register`` and adds its components to the registrar it is given::

    from vaezoo import hookimpl

    @hookimpl
    def vaezoo_register(register):
        register(MyRegularizer)

The built-in components in ``vaezoo_plugins`` register themselves in exactly this way.
"""

import pluggy

PROJECT = "vaezoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vaezoo_register(register) -> None:
    """Add this plugin's components to the registry.

    ``register(component_class)`` adds one component. The class must derive from one of the
    interfaces in :mod:`vaezoo.components.interfaces` (its base decides the kind: data, encoder, decoder, prior,
    regularizer or noise), carry a class attribute ``name`` unique within its kind, and a frozen attrs
    ``Params`` class. Registering a name that another plugin already registered for the same kind is an
    error that names both plugins.
    """


# -- evaluation ---------------------------------------------------------------------------------------------
# Implemented by plugin modules (like vaezoo_register): every loaded plugin is asked, and each answers for the
# sessions it knows about, returning None otherwise. ``session`` is a :class:`vaezoo.runs.session.Session`.


@hookspec
def vaezoo_test_priors(session):
    """Test priors this plugin offers for ``session``'s model: ``{name: function}``, each function building a
    :class:`vaezoo.evaluation.priors.TestPrior` when that name is asked for (``--test-prior NAME``); or
    None."""


@hookspec
def vaezoo_finish(session, run_dir):
    """A finished run's extra test metrics (``{name: float}``, added to results.json), after the test
    evaluation; files may be written into ``run_dir`` (a figure, say). None when the plugin has nothing to add."""


@hookspec
def vaezoo_finish_metrics(session):
    """The names of the metrics ``vaezoo_finish`` will add for ``session``'s run, declared before it trains (so
    that early stopping, a suite's columns and the like are checked against them); None for none."""
