"""The built-in vaezoo components, each module a plugin registered through the ``vaezoo`` entry points."""
