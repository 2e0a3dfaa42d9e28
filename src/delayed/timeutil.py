"""Clock and duration helpers shared by enqueue, the worker and the config.

All timestamps in the table are naive UTC datetimes, as in the Ruby gem: the application
clock decides "now", so every host running workers needs a synchronised clock.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


def utcnow() -> datetime:
    """Naive UTC now: the form every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(value: datetime) -> datetime:
    """Store aware datetimes as naive UTC; naive ones are taken to be UTC already."""
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def to_seconds(value: object) -> float:
    """Read a duration: a timedelta, a number of seconds, or a string such as "20m" or "1.5h".

    Raises ValueError (with the value in the message) for anything else or a negative value.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got the boolean {value!r}")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise ValueError(f"expected a duration such as 30, '30s', '20m' or '1.5h', got {value!r}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration (seconds or timedelta), got {value!r}")
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"a duration must be zero or more seconds, got {value!r}")
    return seconds
