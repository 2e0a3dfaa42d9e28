"""The overview's numbers: one run of the monitor's query set, cached and sampled.

The dashboard's overview, its charts and every Prometheus scrape read the same Snapshot,
so any number of browsers and scrapers cost one query set per `max_age` seconds. With a
sampling interval, a daemon thread refreshes it in the background, so no request waits for
the queries (on a million rows they take longer than a page should) and the charts get a
point per interval; the page says how old its numbers are.

The numbers are the monitor's (delayed.monitor): ready = workable_count, scheduled =
future_count, running = locked_count, failed = failed_count, erroring = erroring_count,
oldest age = max_age (seconds the oldest ready job has waited past its run_at, by the
database clock), oldest lock = max_lock_age.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..backends import backend_for
from ..config import Config
from ..db import describe_error
from ..priority import AlertThresholds
from ..schema import get_table
from .ops import Monitor

log = logging.getLogger("delayed.web")

STATES = ("ready", "scheduled", "running", "failed")


@dataclass(frozen=True)
class GroupCounts:
    """One (queue, priority name) row of the overview."""

    queue: str | None
    priority: str
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    failed: int = 0
    erroring: int = 0
    oldest_age: float = 0.0
    oldest_lock_age: float = 0.0
    thresholds: AlertThresholds = field(default_factory=AlertThresholds)

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.running + self.failed

    @property
    def age_percent(self) -> float | None:
        """The oldest ready job's wait as a % of the priority's alert age (None: no threshold)."""
        if not self.thresholds.age:
            return None
        return self.oldest_age / self.thresholds.age * 100.0

    @property
    def age_alert(self) -> bool:
        return bool(self.thresholds.age) and self.oldest_age >= (self.thresholds.age or 0)

    @property
    def run_time_alert(self) -> bool:
        """The oldest running job has run past its priority's alert run time."""
        limit = self.thresholds.run_time
        return bool(limit) and self.running > 0 and self.oldest_lock_age >= (limit or 0)

    @property
    def alert(self) -> str:
        """'ok', 'age' (waiting too long), 'run_time' (running too long) or 'age, run_time'."""
        reasons = [name for name, on in (("age", self.age_alert), ("run_time", self.run_time_alert)) if on]
        return ", ".join(reasons) or "ok"


@dataclass(frozen=True)
class Snapshot:
    """The table's state at `taken_at` (time.time()), and how long the queries took."""

    taken_at: float
    duration: float
    groups: list[GroupCounts]
    alerts: dict[str, AlertThresholds]

    def totals(self) -> dict[str, int]:
        out = {state: 0 for state in (*STATES, "erroring")}
        for group in self.groups:
            for state in out:
                out[state] += getattr(group, state)
        return out

    def queues(self) -> list[str | None]:
        seen: dict[str | None, None] = {}
        for group in self.groups:
            seen.setdefault(group.queue, None)
        return list(seen)

    def visible_groups(self) -> list[GroupCounts]:
        """Groups with at least one row (the monitor's zero baseline is left out)."""
        return [g for g in self.groups if g.total or g.erroring]

    def age(self) -> float:
        return max(time.time() - self.taken_at, 0.0)


@dataclass(frozen=True)
class Sample:
    """One point of the charts: when, the state totals, and the workers' counters if any."""

    at: float
    totals: dict[str, int]
    workers: dict[str, float] | None = None


class SnapshotSource:
    """Runs the monitor's queries at most once per `max_age` seconds, for every reader.

    `get()` returns the cached Snapshot while it is younger than `max_age`; otherwise one
    caller runs the queries while the others wait for its result (single flight). A failed
    refresh keeps the last good snapshot and remembers the error for the page to show.
    """

    def __init__(
        self,
        config: Config,
        engine: sa.Engine | Callable[[], sa.Engine],
        max_age: float,
        history_seconds: float = 3600.0,
        sample_every: float = 15.0,
        worker_totals: Callable[[], dict[str, float] | None] | None = None,
    ) -> None:
        self.config = config
        self._engine = engine
        self.max_age = max_age
        self.monitor = Monitor(config, queues=[])
        self.table = get_table(config.table_name)
        self.worker_totals = worker_totals
        points = max(int(history_seconds / sample_every), 2) if sample_every > 0 else 240
        self.history: deque[Sample] = deque(maxlen=points)
        self.sample_every = sample_every
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._snapshot: Snapshot | None = None
        self._invalid_before = 0.0
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    @property
    def engine(self) -> sa.Engine:
        """The engine given, or the one a factory (such as delayed.db.get_engine) makes now."""
        if isinstance(self._engine, sa.Engine):
            return self._engine
        return self._engine()

    def cached(self) -> Snapshot | None:
        return self._snapshot

    def _fresh(self, snapshot: Snapshot | None) -> bool:
        if snapshot is None:
            return False
        return snapshot.age() < self.max_age and snapshot.taken_at > self._invalid_before

    def get(self) -> Snapshot:
        """A snapshot no older than max_age (refreshing it if needed)."""
        if self._fresh(self._snapshot):
            return self._snapshot  # type: ignore[return-value]
        with self._refreshing:
            if self._fresh(self._snapshot):
                return self._snapshot  # type: ignore[return-value]  # refreshed while we waited
            return self._refresh_locked()

    def invalidate(self) -> None:
        """The table just changed (an operator's action): the next get() queries again."""
        self._invalid_before = time.time()

    def refresh(self) -> Snapshot:
        """Run the queries now (the sampler thread), unless another refresh is running."""
        with self._refreshing:
            return self._refresh_locked()

    def _refresh_locked(self) -> Snapshot:
        started = time.perf_counter()
        try:
            snapshot = self._query(started)
        except Exception as exc:
            self.last_error = describe_error(exc)
            self.last_error_at = time.time()
            log.error("dashboard counts failed: %s", self.last_error)
            if self._snapshot is None:
                raise
            return self._snapshot
        self.last_error = None
        self._snapshot = snapshot
        self._sample(snapshot)
        return snapshot

    def _query(self, started: float) -> Snapshot:
        engine = self.engine
        backend = backend_for(engine, self.table)
        statements = self.monitor.queries(backend)
        with engine.connect() as conn:
            results: dict[str, list[Any]] = {
                name: list(conn.execute(statement).mappings()) for name, statement in statements.items()
            }
            conn.rollback()
        metrics = self.monitor.compute(results)
        return Snapshot(
            time.time(), time.perf_counter() - started, self._groups(metrics), self.monitor.alerts
        )

    def _groups(self, metrics: list[Any]) -> list[GroupCounts]:
        fields = {
            "workable_count": "ready",
            "future_count": "scheduled",
            "locked_count": "running",
            "failed_count": "failed",
            "erroring_count": "erroring",
            "max_age": "oldest_age",
            "max_lock_age": "oldest_lock_age",
        }
        names = list(self.monitor.names)
        first = names[0]
        values: dict[tuple[str | None, str], dict[str, Any]] = {}
        for metric in metrics:
            name = fields.get(metric.name)
            if name is None:
                continue
            key = (metric.queue, metric.priority or first)
            values.setdefault(key, {})[name] = metric.value
        order = {name: index for index, name in enumerate(names)}
        keys = sorted(values, key=lambda k: (k[0] is None, k[0] or "", order.get(k[1], 0)))
        alerts = self.monitor.alerts
        return [
            GroupCounts(
                queue,
                priority,
                thresholds=alerts.get(priority, AlertThresholds()),
                **values[(queue, priority)],
            )
            for queue, priority in keys
        ]

    def _sample(self, snapshot: Snapshot) -> None:
        last = self.history[-1] if self.history else None
        if last is not None and self.sample_every > 0 and snapshot.taken_at - last.at < self.sample_every / 2:
            return  # an on-demand refresh right after a sampled one: one point is enough
        workers = None
        if self.worker_totals is not None:
            try:
                workers = self.worker_totals()
            except Exception as exc:  # unreadable metric files must not break the overview
                log.warning("reading the workers' metric files failed: %s", exc)
        self.history.append(Sample(snapshot.taken_at, snapshot.totals(), workers))


class Sampler:
    """A daemon thread refreshing a SnapshotSource every `interval` seconds until stopped."""

    def __init__(self, source: SnapshotSource, interval: float) -> None:
        self.source = source
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Start the thread once (called on the first request: works in any ASGI host)."""
        if self.interval <= 0 or (self._thread is not None and self._thread.is_alive()):
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="delayed-web-sampler", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):  # logged by the source; try again next interval
                self.source.refresh()
            self._stop.wait(self.next_wait(time.monotonic() - started))

    def next_wait(self, took: float) -> float:
        """The interval, stretched so that sampling keeps under a tenth of one database core.

        The monitor's queries read every live row (1.5 s on a million rows here); a sample
        that took `took` seconds waits at least ten times that before the next one.
        """
        return max(self.interval, took * 10.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
