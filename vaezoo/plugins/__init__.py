"""Plugin management: the hooks, finding and loading plugins of the entry-point group ``vaezoo``, and the
registry of the components they add. Free of torch."""
