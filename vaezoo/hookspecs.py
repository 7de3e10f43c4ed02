"""The one hook every vaezoo plugin implements.

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
    interfaces in :mod:`vaezoo.interfaces` (its base decides the kind: data, encoder, decoder, prior,
    regularizer or noise), carry a class attribute ``name`` unique within its kind, and a frozen attrs
    ``Params`` class. Registering a name that another plugin already registered for the same kind is an
    error that names both plugins.
    """
