"""The hooks of vaezoo: the one way to extend it.

A plugin is a module (or object) named by an entry point of the group ``vaezoo``::

    [project.entry-points.vaezoo]
    myplugin = "my_package.vaezoo_plugin"

It implements any of the hooks below. ``vaezoo_register`` adds components of every kind (data, networks, priors,
regularisers, noise, callbacks, metrics, the benchmark runner's executors...)::

    from vaezoo.api import hookimpl

    @hookimpl
    def vaezoo_register(register):
        from my_package.regularizer import MyRegularizer  # heavy imports inside the hook

        register(MyRegularizer)

Every ``vaezoo`` invocation, ``vaezoo --help`` included, imports every plugin module and calls
``vaezoo_commands``; ``vaezoo_register`` is called only when a command needs the components. So a plugin module
stays cheap to import (no torch at its top) and imports its implementation inside its hooks. A plugin that
implements a hook not listed here is refused when it is loaded, with the hook named.

The built-in plugins in ``vaezoo_plugins`` and the core's own commands register themselves in exactly this way.
The entry-point groups ``vaezoo.commands`` and ``vaezoo.executors`` are not read: a distribution that still
declares them is reported by name (see :mod:`vaezoo.plugins.loading`).
"""

import pluggy

PROJECT = "vaezoo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def vaezoo_register(register) -> None:
    """Add this plugin's components to the registry.

    ``register(component_class)`` adds one component. The class must derive from an interface of the public API
    (:class:`vaezoo.api.Component`'s subclasses; its ``kind`` decides where it is filed: data, encoder, decoder,
    prior, regularizer, noise, callback, metric, or a kind an installed package defines, like the runner's
    executor), carry a class attribute ``name`` unique within its kind, and a frozen attrs ``Params`` class.
    Registering a name that another plugin already registered for the same kind is an error that names both
    plugins. Called once per process, when a command first needs the components.
    """


@hookspec
def vaezoo_commands(register) -> None:
    """Add this plugin's subcommands of ``vaezoo``.

    ``register(name, module)`` adds ``vaezoo NAME``: ``module`` has ``HELP`` (one line), ``add_arguments(parser)``
    (argparse) and ``run(args) -> int`` (raising :class:`vaezoo.api.UsageError` for bad input). Every invocation,
    ``vaezoo --help`` included, calls this hook and ``add_arguments``: keep both cheap and import heavy
    libraries (torch, matplotlib) in ``run``. A name another plugin took first is an error naming both.
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
    """Write files about a finished run into ``run_dir`` (a figure, say), after its test evaluation. Metrics are
    components (:class:`vaezoo.api.Metric`), computed in the evaluation pass; this hook adds none."""
