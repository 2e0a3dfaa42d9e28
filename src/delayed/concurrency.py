"""Concurrency limits: the key and limit an enqueue stores on its row.

`concurrency_key = "customer:{0}"` (str.format over perform's positional and keyword
arguments) or a callable taking perform's arguments, with `concurrency_limit = N`: at most N
rows sharing the key run at the same moment, across every worker, child and host. The
backends enforce it in the claim's own transaction (lease rows, see delayed.schema and
backends/base.py); this module only resolves what to store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

KEY_LIMIT = 255  # the column's width

ConcurrencyKey = str | Callable[..., Any]


def resolve_key(
    job_name: str, key: ConcurrencyKey | None, args: Sequence[Any], kwargs: dict[str, Any]
) -> str | None:
    """The key for one enqueue, or None (no limit). Errors name the job and what to fix."""
    if key is None:
        return None
    try:
        value = key(*args, **kwargs) if callable(key) else key.format(*args, **kwargs)
    except (IndexError, KeyError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{job_name}: concurrency_key {key!r} cannot be made from these arguments "
            f"({type(exc).__name__}: {exc}); it must format with perform's arguments, e.g. 'customer:{{0}}'"
        ) from None
    if value is None:
        return None
    value = str(value)
    if not value or len(value) > KEY_LIMIT:
        raise ValueError(f"{job_name}: concurrency_key {value[:40]!r}... must be 1 to {KEY_LIMIT} characters")
    return value


def check_limit(where: str, limit: Any) -> int:
    """A limit is an integer >= 1."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{where}: concurrency_limit must be an integer >= 1, got {limit!r}")
    return limit
