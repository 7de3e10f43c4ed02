"""The command line, ``vaezoo COMMAND``."""
