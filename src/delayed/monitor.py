"""The monitor: every `interval`, the state of every queue and priority name, as gauges.

One pass runs three grouped queries (the Ruby gem's `Delayed::Monitor`), each an inner
`GROUP BY priority, queue` (which the indexes serve) and an outer query that buckets the
priority into its named range with a CASE and groups by (bucket, queue):

1. failed  -- `failed_at IS NOT NULL`: COUNT(*)
2. live    -- `failed_at IS NULL`: COUNT(*), future (run_at > now), erroring (attempts > 0)
3. pending -- `failed_at IS NULL AND run_at <= now`: claimed (locked within the lock
   timeout) and claimable counts, the oldest claimed lock and the oldest claimable run_at,
   plus the database's own clock, so that ages do not grow with query time and no host's
   clock skew leaks in. Ages are clamped at 0 (READ COMMITTED can see rows newer than the
   statement's clock).

`now` and `now - lock_timeout` (what counts as future, claimed or claimable) come from the
application clock, like the worker's pickup.

Metrics, per (priority name, queue), emitted as `delayed.job.<metric>` events with payload
`table, database, database_adapter, priority (name), queue, value`, all inside one
`delayed.monitor.run` event:

count, future_count, locked_count, erroring_count, failed_count, max_lock_age (s),
max_age (s, claimable rows only), working_count (= locked_count), workable_count,
alert_age_percent (max_age as a percentage of the name's alert age, capped at 100).

Zero baseline: every (name, queue) pair for the monitored queues (or the default queue
when none is set) reports 0 when it has no rows, so gauges fall back to 0 instead of
keeping their last value. Groups outside the baseline (another queue on an unfiltered
monitor) appear only in the metrics whose query found them. Negative priorities are
bucketed with the lowest name.

Concurrency limits (issue 13): each pass also reports, for the LIMITED_TOP keys at their
limit with the most ready rows waiting, a `delayed.concurrency.waiting` event (payload
`key`, `limit`, `value` = rows waiting); `Monitor.limited` keeps the last pass's list.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from . import events
from .backends import Backend, backend_for
from .config import Config, get_config
from .db import describe_error, engine_for, redact
from .priority import AlertThresholds, config_alerts, name_of
from .schema import get_table
from .timeutil import utcnow
from .wakeup import Wakeup

log = logging.getLogger("delayed.monitor")

METRICS: tuple[str, ...] = (
    "count",
    "future_count",
    "locked_count",
    "erroring_count",
    "failed_count",
    "max_lock_age",
    "max_age",
    "working_count",
    "workable_count",
    "alert_age_percent",
)

Group = tuple[str | None, str | None]  # (priority name, queue)


@dataclass(frozen=True)
class Metric:
    """One gauge: `delayed.job.<name>` for a priority name and a queue."""

    name: str
    priority: str | None
    queue: str | None
    value: int | float

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "priority": self.priority, "queue": self.queue, "value": self.value}


LIMITED_TOP = 10  # keys reported per pass: bounded, whatever the number of keys


@dataclass(frozen=True)
class LimitedKey:
    """A concurrency key at its limit and how many ready rows wait behind it."""

    key: str
    waiting: int
    limit: int


class Monitor:
    """Reports the table's state: `run_once()` for one pass, `run(stop)` until `stop` is set.

    `queues` and `interval` default to `[monitor]` (queues falling back to `[delayed]
    queues`). Bad priority alert settings raise ConfigError here, before any query.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        queues: Iterable[str] | None = None,
        interval: float | None = None,
    ) -> None:
        self.config = config if config is not None else get_config()
        section = self.config.monitor
        chosen = list(queues) if queues is not None else list(section.queues or self.config.queues)
        self.queues: list[str] = chosen
        self.interval = float(interval if interval is not None else section.interval)
        self.names: dict[str, int] = dict(sorted(self.config.priority_names.items(), key=lambda i: i[1]))
        self.alerts: dict[str, AlertThresholds] = config_alerts(self.config)
        self.table = get_table(self.config.table_name)
        self.passes = 0
        self.limited: list[LimitedKey] = []  # the last pass's keys at their limit

    # -- database ----------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        return backend_for(engine_for(self.config.database_url, self.config.pooler), self.table)

    def close(self) -> None:
        """Nothing to release: the engine is the process's own for this database (db.engine_for)."""

    # -- SQL ---------------------------------------------------------------------------------
    def _bucket(self, column: Any) -> Any:
        """CASE mapping a priority to the lower bound of its range (negatives: the lowest).

        Bounds are rendered inline (they are ints from the config), so the same text
        appears in SELECT and GROUP BY and PostgreSQL accepts the grouping.
        """
        bounds = sorted(set(self.names.values()))
        whens = [
            (column < sa.literal_column(str(int(upper))), sa.literal_column(str(int(lower))))
            for lower, upper in itertools.pairwise(bounds)
        ]
        last = sa.literal_column(str(int(bounds[-1])))
        if not whens:
            whens = [(column < last, last)]
        return sa.case(*whens, else_=last)

    def _base_where(self, *clauses: Any) -> list[Any]:
        where = list(clauses)
        if self.queues:
            where.append(self.table.c.queue.in_(self.queues))
        return where

    def _grouped(self, inner_columns: list[Any], where: list[Any], outer: dict[str, Any]) -> sa.Select[Any]:
        t = self.table
        inner = (
            sa.select(t.c.priority, t.c.queue, *inner_columns)
            .where(*where)
            .group_by(t.c.priority, t.c.queue)
            .subquery("grouped")
        )
        bucket = self._bucket(inner.c.priority)
        columns = [bucket.label("bucket"), inner.c.queue.label("queue")]
        columns += [make(inner).label(name) for name, make in outer.items()]
        return sa.select(*columns).group_by(bucket, inner.c.queue)

    def failed_query(self) -> sa.Select[Any]:
        t = self.table
        return self._grouped(
            [sa.func.count().label("failed_count")],
            self._base_where(t.c.failed_at.isnot(None)),
            {"failed_count": lambda s: sa.func.sum(s.c.failed_count)},
        )

    def live_query(self, now: datetime) -> sa.Select[Any]:
        t = self.table
        future = sa.func.sum(sa.case((t.c.run_at > now, 1), else_=0))
        erroring = sa.func.sum(sa.case((t.c.attempts > 0, 1), else_=0))
        return self._grouped(
            [sa.func.count().label("count"), future.label("future_count"), erroring.label("erroring_count")],
            self._base_where(t.c.failed_at.is_(None), t.c.finished_at.is_(None)),
            {
                "count": lambda s: sa.func.sum(s.c["count"]),
                "future_count": lambda s: sa.func.sum(s.c.future_count),
                "erroring_count": lambda s: sa.func.sum(s.c.erroring_count),
            },
        )

    def pending_query(self, now: datetime, stale: datetime, db_now: Any) -> sa.Select[Any]:
        t = self.table
        claimed = t.c.locked_at >= stale
        claimable = sa.or_(t.c.locked_at.is_(None), t.c.locked_at < stale)
        return self._grouped(
            [
                sa.func.sum(sa.case((claimed, 1), else_=0)).label("locked_count"),
                sa.func.sum(sa.case((claimable, 1), else_=0)).label("workable_count"),
                sa.func.min(sa.case((claimed, t.c.locked_at), else_=None)).label("locked_at"),
                sa.func.min(sa.case((claimable, t.c.run_at), else_=None)).label("run_at"),
            ],
            self._base_where(t.c.failed_at.is_(None), t.c.finished_at.is_(None), t.c.run_at <= now),
            {
                "locked_count": lambda s: sa.func.sum(s.c.locked_count),
                "workable_count": lambda s: sa.func.sum(s.c.workable_count),
                "locked_at": lambda s: sa.func.min(s.c.locked_at),
                "run_at": lambda s: sa.func.min(s.c.run_at),
                "db_now": lambda s: db_now,
            },
        )

    def limited_query(self, backend: Backend, now: datetime, stale: datetime) -> sa.Select[Any]:
        """Per concurrency key at its limit: how many claimable rows wait (top LIMITED_TOP)."""
        t = self.table
        waiting = sa.func.count().label("waiting")
        return (
            sa.select(t.c.concurrency_key, waiting, sa.func.max(t.c.concurrency_limit).label("limit"))
            .where(
                *self._base_where(
                    t.c.concurrency_key.isnot(None),
                    t.c.failed_at.is_(None),
                    t.c.run_at <= now,
                    sa.or_(t.c.locked_at.is_(None), t.c.locked_at < stale),
                    backend.live_leases(t.c.concurrency_key, stale) >= t.c.concurrency_limit,
                )
            )
            .group_by(t.c.concurrency_key)
            .order_by(waiting.desc(), t.c.concurrency_key)
            .limit(LIMITED_TOP)
        )

    def limited_keys(self, backend: Backend | None = None) -> list[LimitedKey]:
        """The keys at their concurrency limit with the most rows waiting, most first."""
        backend = backend or self.backend
        now = utcnow()
        stale = now - timedelta(seconds=self.config.lock_timeout)
        with backend.engine.connect() as conn:
            rows = conn.execute(self.limited_query(backend, now, stale)).all()
            conn.rollback()
        return [LimitedKey(key, int(waiting), int(limit or 1)) for key, waiting, limit in rows]

    def queries(self, backend: Backend | None = None, now: datetime | None = None) -> dict[str, Any]:
        """The three statements of one pass (for EXPLAIN and tests)."""
        backend = backend or self.backend
        now = now or utcnow()
        stale = now - timedelta(seconds=self.config.lock_timeout)
        return {
            "failed": self.failed_query(),
            "live": self.live_query(now),
            "pending": self.pending_query(now, stale, backend.db_now_utc()),
        }

    # -- one pass ----------------------------------------------------------------------------
    def _fetch(self, backend: Backend) -> dict[str, list[Any]]:
        statements = self.queries(backend)
        results: dict[str, list[Any]] = {}
        with backend.engine.connect() as conn:
            for name, statement in statements.items():
                results[name] = list(conn.execute(statement).mappings())
            conn.rollback()
        return results

    def _group(self, row: Any) -> Group:
        return (name_of(int(row["bucket"]), self.names), row["queue"])

    def compute(self, results: dict[str, list[Any]]) -> list[Metric]:
        """Turn the three queries' rows into metrics, zero baseline first."""
        baseline_queues: list[str | None] = list(self.queues) or [self.config.default_queue_name]
        values: dict[str, dict[Group, int | float]] = {m: {} for m in METRICS}
        for name in self.names:
            for queue in baseline_queues:
                for metric in METRICS:
                    values[metric][(name, queue)] = 0
        for row in results["failed"]:
            group = self._group(row)
            values["failed_count"][group] = int(row["failed_count"] or 0)
            values["count"][group] = values["count"].get(group, 0) + int(row["failed_count"] or 0)
        for row in results["live"]:
            group = self._group(row)
            values["count"][group] = values["count"].get(group, 0) + int(row["count"] or 0)
            values["future_count"][group] = int(row["future_count"] or 0)
            values["erroring_count"][group] = int(row["erroring_count"] or 0)
        for row in results["pending"]:
            group = self._group(row)
            locked = int(row["locked_count"] or 0)
            values["locked_count"][group] = locked
            values["working_count"][group] = locked
            values["workable_count"][group] = int(row["workable_count"] or 0)
            lock_age = _age(row["db_now"], row["locked_at"])
            max_age = _age(row["db_now"], row["run_at"])
            values["max_lock_age"][group] = lock_age
            values["max_age"][group] = max_age
            threshold = self.alerts.get(group[0] or "", AlertThresholds()).age
            if threshold:
                values["alert_age_percent"][group] = min(max_age / threshold * 100.0, 100.0)
        order = {name: index for index, name in enumerate(self.names)}

        def sort_key(group: Group) -> tuple[int, int, str]:
            name, queue = group
            return (order.get(name or "", -1), queue is None, queue or "")

        return [
            Metric(metric, group[0], group[1], values[metric][group])
            for metric in METRICS
            for group in sorted(values[metric], key=sort_key)
        ]

    def payload(self, backend: Backend) -> dict[str, Any]:
        return {
            "table": self.table.name,
            "database": backend.engine.url.database,
            "database_adapter": backend.name,
        }

    def run_once(self) -> list[Metric]:
        """One pass: query, emit every metric as an event, return them."""
        backend = self.backend
        base = self.payload(backend)
        with events.instrument("delayed.monitor.run", **base) as run_payload:
            metrics = self.compute(self._fetch(backend))
            for metric in metrics:
                events.emit(
                    f"delayed.job.{metric.name}",
                    **base,
                    priority=metric.priority,
                    queue=metric.queue,
                    value=metric.value,
                )
            run_payload["metrics"] = len(metrics)
            self.limited = self.limited_keys(backend)
            for limited in self.limited:
                events.emit(
                    "delayed.concurrency.waiting",
                    **base,
                    key=limited.key,
                    limit=limited.limit,
                    value=limited.waiting,
                )
        self.passes += 1
        return metrics

    def run(self, stop: threading.Event | Wakeup | None = None) -> None:
        """Run a pass every `interval` seconds until `stop` is set (waits after each pass).

        A failed pass (database down) is logged and retried at the next interval: the
        monitor outlives outages. A signal handler that stops it must set a `Wakeup`, not
        a threading.Event (Event.set takes a lock the interrupted wait may hold).
        """
        stop = stop if stop is not None else threading.Event()  # nothing will set it
        log.info(
            "Starting monitor on %s: queues=%s interval=%ss",
            redact(self.config.database_url),
            self.queues or "all",
            self.interval,
        )
        while not stop.is_set():
            started = time.monotonic()
            try:
                metrics = self.run_once()
                log.debug("monitor pass: %d metrics in %.3fs", len(metrics), time.monotonic() - started)
            except Exception as exc:
                log.error("monitor pass failed: %s; next try in %ss", describe_error(exc), self.interval)
            stop.wait(self.interval)
        log.info("Monitor stopped after %d passes", self.passes)
        self.close()


def _age(db_now: datetime | None, then: datetime | None) -> float:
    """Seconds from `then` to the database clock, never negative; 0 when either is missing."""
    if db_now is None or then is None:
        return 0
    return round(max((_naive(db_now) - _naive(then)).total_seconds(), 0.0), 3)


def _naive(value: datetime) -> datetime:
    """Drop any zone the driver attached; the values are UTC (the Ruby gem's parse_utc_time)."""
    if isinstance(value, str):  # a driver that did not convert
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.replace(tzinfo=None) - (value.utcoffset() or timedelta(0))
    return value
