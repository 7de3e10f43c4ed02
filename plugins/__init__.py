"""The built-in plugins of vaezoo, one package per kind of extension, each registered through the ``vaezoo``
entry-point group exactly as a third-party plugin is.

Every ``vaezoo`` invocation imports the package of each plugin, ``vaezoo --help`` included, so a package's
``__init__`` only declares what it offers: its hooks import the modules that implement it (and torch) when
they are called.
"""
