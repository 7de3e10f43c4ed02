"""vaezoo: a plugin-based zoo of variational autoencoders for studying posterior collapse."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vaezoo")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from vaezoo.plugins.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
