"""Timestamps of the files vaezoo writes (run histories, lock files, a suite's job records).

They are read by people (``vaezoo_bench.status`` shows them as written) and never parsed back, so one format
serves every writer: ISO 8601 to the second, in local time with its UTC offset, e.g.
``2026-12-03T01:00:00+01:00`` (RFC 3339; ``datetime.fromisoformat`` reads it back).
"""

from __future__ import annotations

import datetime


def local_timestamp() -> str:
    """Now, in local time with its UTC offset, to the second: ``YYYY-MM-DDTHH:MM:SS+HH:MM``."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
