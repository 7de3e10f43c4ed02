"""Errors a user can cause and fix. The CLI turns them into a message and exit code 2, never a traceback."""


class UsageError(Exception):
    """Bad input from the user: an unknown name, a bad parameter value, a missing file.

    The message must name the bad value and, where there is a closed set, the valid choices.
    """


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""
