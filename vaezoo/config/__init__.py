"""A run's configuration: attrs classes for each section, resolved from files, ``--set`` and the command line,
and the grammar of the settings that name no component. Free of torch."""
