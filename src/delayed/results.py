"""Kept results (`keep_finished`): which successes keep their row, the stored value, pruning.

By default a successful job's row is deleted (the Ruby gem's way). With `keep_finished`
(a job class attribute, else `[delayed] keep_finished`; a duration, 0 = off) the row stays
with `finished_at` and `result`, its return value as JSON text, for that long, so
`delayed jobs show`, `delayed jobs list --finished` and Django's `get_result` can read it.

A kept row is out of pickup: every claim requires `finished_at IS NULL`, and the pickup
index leaves finished rows out (partial index on PostgreSQL and SQLite; on MySQL/MariaDB
`finished_at` is its second column, after `failed_at`, so the ready range (NULL, NULL, ...)
holds none), so pickup cost does not grow with the kept rows. Workers delete expired rows
in batches (`prune`, every PRUNE_INTERVAL seconds, at most PRUNE_BATCH rows a statement).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from .config import Config
from .registry import registered_jobs
from .timeutil import to_seconds, utcnow

log = logging.getLogger("delayed.worker")

# The largest stored result, in characters of JSON: a row stays cheap to write with the
# outcomes and to read in a listing; a bigger value is not kept (NULL) and says so.
RESULT_LIMIT = 64 * 1024
PRUNE_INTERVAL = 300.0  # seconds between a worker's prunes
PRUNE_BATCH = 1000  # rows per DELETE (short transactions, short locks)
PRUNE_MAX_BATCHES = 20  # per prune: a big backlog goes over several prunes

_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def keep_seconds(job_class: type | None, config: Config) -> float:
    """How long a success of `job_class` keeps its row; 0: deleted at once."""
    own = getattr(job_class, "keep_finished", None) if job_class is not None else None
    if own is not None:
        return to_seconds(own)
    return float(config.keep_finished)


def encode_result(value: Any, job_name: str) -> str | None:
    """The JSON text stored for a return value: its repr (a JSON string) when it is not JSON.

    None (NULL, with a warning) when even that passes RESULT_LIMIT characters.
    """
    try:
        text = _encode(value)
    except (TypeError, ValueError):
        log.warning(
            "job %s returned %s, which is not JSON: its repr is kept as the result",
            job_name,
            type(value).__qualname__,
        )
        text = _encode(_safe_repr(value))
    if len(text) > RESULT_LIMIT:
        log.warning(
            "job %s returned %d characters of JSON, over the %d kept: no result is stored",
            job_name,
            len(text),
            RESULT_LIMIT,
        )
        return None
    return text


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)[: RESULT_LIMIT - 2]
    except Exception:
        return f"<{type(value).__qualname__} whose repr failed>"


def decode_result(text: str | None) -> Any:
    """The stored result as a Python value (None when none was kept)."""
    return None if text is None else json.loads(text)


def prune(engine: sa.Engine, table: sa.Table, config: Config, now: datetime | None = None) -> int:
    """Delete kept rows past their keep time, in batches; returns how many went.

    Each job class with its own `keep_finished` is pruned by its name; every other row by
    the configured keep (rows of a class no longer registered included). With the setting
    0, rows of classes without their own keep are left alone only if none was ever kept
    under it: 0 means "keep none", so they go too.
    """
    now = utcnow() if now is None else now
    t = table
    own = {
        name: to_seconds(cls.keep_finished)
        for name, cls in registered_jobs().items()
        if getattr(cls, "keep_finished", None) is not None
    }
    rules = [(t.c.name == name, seconds) for name, seconds in own.items()]
    others = t.c.name.not_in(list(own)) if own else sa.true()
    rules.append((others, float(config.keep_finished)))
    total = 0
    for condition, seconds in rules:
        cutoff = now - timedelta(seconds=seconds)
        total += _delete_batches(
            engine, t, sa.and_(t.c.finished_at.is_not(None), t.c.finished_at < cutoff, condition)
        )
    if total:
        log.info("pruned %d kept job result(s)", total)
    return total


def _delete_batches(engine: sa.Engine, t: sa.Table, where: Any) -> int:
    """Select ids then delete them, a batch at a time: the same two statements on every database."""
    deleted = 0
    for _ in range(PRUNE_MAX_BATCHES):
        with engine.begin() as conn:
            ids = list(conn.execute(sa.select(t.c.id).where(where).limit(PRUNE_BATCH)).scalars())
            if ids:
                conn.execute(t.delete().where(t.c.id.in_(ids), t.c.finished_at.is_not(None)))
        deleted += len(ids)
        if len(ids) < PRUNE_BATCH:
            break
    return deleted
