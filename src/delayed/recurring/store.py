"""The cron tables: record a tick and enqueue its job in one transaction, read and set state.

Exactly once per (key, tick), with no leader and no lock held between statements: every
scheduler that sees a tick due runs, in one short transaction,

    INSERT INTO delayed_cron_runs (cron_key, run_at, kind, enqueued_at)
        SELECT :key, :tick, :kind, :now
        WHERE NOT EXISTS (SELECT 1 FROM delayed_cron_entries WHERE cron_key = :key AND paused)
        ON CONFLICT DO NOTHING          -- MySQL/MariaDB: INSERT IGNORE
    -- one row inserted: this scheduler won the tick
    INSERT INTO delayed_jobs (...) VALUES (...)            -- run_at = the tick
    UPDATE delayed_cron_runs SET job_id = :id WHERE cron_key = :key AND run_at = :tick

and commits. The primary key (cron_key, run_at) lets one insert through; the others insert
nothing, raise nothing and log nothing (a lost race is the expected answer, not an error).
A scheduler that loses waits for the winner's commit at most (the database queues the second
insert of a key behind the first), and the winner's transaction is three statements. A
paused entry inserts nothing either, so a pause holds for every host without any host
reading the pause state before each tick.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..admin import is_locked
from ..backends import Backend, backend_for
from ..config import Config
from ..db import engine_for
from ..enqueue import EnqueueRequest, enqueue_many
from ..record import JobRecord
from ..schema import cron_tables, get_table
from ..timeutil import utcnow
from .entries import CronEntry

log = logging.getLogger("delayed.cron")

PRUNE_BATCH = 1_000
_DEADLOCK_TRIES = 3
_MYSQL_RETRYABLE = {1205, 1213}  # lock wait timeout, deadlock
_PG_RETRYABLE = {"40P01", "40001"}  # deadlock detected, serialization failure

KINDS = ("schedule", "catch_up", "manual")


@dataclass(frozen=True)
class EntryState:
    """What operators set on an entry, as stored (the defaults when no row exists)."""

    paused: bool = False
    paused_at: datetime | None = None
    resumed_at: datetime | None = None


@dataclass(frozen=True)
class Run:
    """One row of delayed_cron_runs: a tick that was enqueued."""

    key: str
    run_at: datetime
    kind: str
    job_id: int | None
    enqueued_at: datetime


def _retryable(exc: sa.exc.DBAPIError) -> bool:
    """A deadlock or lock-wait timeout: the transaction was rolled back and may simply be retried."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "args", (None,))[0] if orig is not None else None
    if isinstance(code, int) and code in _MYSQL_RETRYABLE:
        return True
    return getattr(orig, "sqlstate", None) in _PG_RETRYABLE


class CronStore:
    """The SQL of recurring jobs, on the config's database (tables named after its jobs table)."""

    def __init__(self, config: Config, *, hold_connection: bool = False) -> None:
        self.config = config
        self.engine = engine_for(config.database_url, config.pooler)
        self.jobs = get_table(config.table_name)
        self.runs, self.entries = cron_tables(config.table_name)
        # A scheduler keeps one connection for its ticks: checking one out per tick costs
        # round trips of its own on MySQL (ping, isolation level set and reset, rollback).
        self.hold_connection = hold_connection
        self._held: Connection | None = None

    def _tick_connection(self) -> Connection:
        if not self.hold_connection:
            return self.backend.write_connection()
        if self._held is None or self._held.closed or self._held.invalidated:
            self._held = self.backend.write_connection()
        return self._held

    def close(self) -> None:
        """Give back the held connection (if any)."""
        if self._held is not None:
            held, self._held = self._held, None
            held.close()

    @property
    def backend(self) -> Backend:
        return backend_for(self.engine, self.jobs)

    # -- the tick ----------------------------------------------------------------------------
    def enqueue_tick(self, entry: CronEntry, run_at: datetime, kind: str = "schedule") -> int | None:
        """Record the tick and enqueue its job, once across every host.

        Returns the new job's id, or None when the tick was already recorded (another
        scheduler won it) or the entry is paused. `manual` ticks ignore the pause: an
        operator asked for them.
        """
        for attempt in range(1, _DEADLOCK_TRIES + 1):
            try:
                return self._enqueue_tick(entry, run_at, kind)
            except sa.exc.DBAPIError as exc:
                if self._held is not None and (exc.connection_invalidated or self._held.invalidated):
                    self.close()  # a held connection the server dropped: one retry on a new one
                    if attempt < _DEADLOCK_TRIES:
                        continue
                if attempt == _DEADLOCK_TRIES or not _retryable(exc):
                    raise
                log.debug("cron %s: tick %s lost a lock race (%s); trying again", entry.key, run_at, exc.orig)
        return None  # unreachable: the last attempt returns or raises

    def _record_statement(self, entry: CronEntry, run_at: datetime, kind: str, now: datetime) -> Any:
        runs, entries = self.runs, self.entries
        values = sa.select(
            sa.literal(entry.key, runs.c.cron_key.type),
            sa.literal(run_at, runs.c.run_at.type),
            sa.literal(kind, runs.c.kind.type),
            sa.literal(now, runs.c.enqueued_at.type),
        )
        if kind != "manual":
            paused = sa.select(entries.c.cron_key).where(
                entries.c.cron_key == entry.key, entries.c.paused == sa.true()
            )
            values = values.where(~sa.exists(paused))
        # preserve_rowcount: SQLAlchemy fetches an INSERT's rowcount only when asked.
        return (
            self.backend.insert_or_skip(runs)
            .from_select(["cron_key", "run_at", "kind", "enqueued_at"], values)
            .execution_options(preserve_rowcount=True)
        )

    def _enqueue_tick(self, entry: CronEntry, run_at: datetime, kind: str) -> int | None:
        request = entry.request(run_at)  # built first: a bad argument never leaves a run row
        conn = self._tick_connection()
        try:
            with conn.begin():
                return self._record_and_enqueue(conn, entry, run_at, kind, request)
        finally:
            if not self.hold_connection:
                conn.close()

    def _record_and_enqueue(
        self, conn: Connection, entry: CronEntry, run_at: datetime, kind: str, request: EnqueueRequest
    ) -> int | None:
        """The transaction's body: the run row; only when it is new, the job and its id."""
        runs = self.runs
        if conn.execute(self._record_statement(entry, run_at, kind, utcnow())).rowcount != 1:
            return None  # another scheduler has this tick, or the entry is paused
        job_id = enqueue_many([request], using=conn)[0]
        conn.execute(
            runs.update().where(runs.c.cron_key == entry.key, runs.c.run_at == run_at).values(job_id=job_id)
        )
        return job_id

    # -- reading -----------------------------------------------------------------------------
    def last_scheduled(self, keys: Iterable[str]) -> dict[str, datetime]:
        """Per key, the newest tick enqueued by a scheduler (manual runs do not count)."""
        keys = list(keys)
        if not keys:
            return {}
        runs = self.runs
        query = (
            sa.select(runs.c.cron_key, sa.func.max(runs.c.run_at))
            .where(runs.c.cron_key.in_(keys), runs.c.kind != "manual")
            .group_by(runs.c.cron_key)
        )
        with self.engine.connect() as conn:
            return {key: when for key, when in conn.execute(query)}

    def states(self, keys: Iterable[str]) -> dict[str, EntryState]:
        """Per key, its paused state (keys with no row are absent: not paused)."""
        keys = list(keys)
        if not keys:
            return {}
        t = self.entries
        query = sa.select(t.c.cron_key, t.c.paused, t.c.paused_at, t.c.resumed_at).where(
            t.c.cron_key.in_(keys)
        )
        with self.engine.connect() as conn:
            return {
                row.cron_key: EntryState(bool(row.paused), row.paused_at, row.resumed_at)
                for row in conn.execute(query)
            }

    def latest_runs(self, keys: Iterable[str]) -> dict[str, Run]:
        """Per key, its newest run of any kind (one indexed read per key)."""
        runs = self.runs
        found: dict[str, Run] = {}
        with self.engine.connect() as conn:
            for key in keys:
                row = conn.execute(
                    sa.select(runs).where(runs.c.cron_key == key).order_by(runs.c.run_at.desc()).limit(1)
                ).first()
                if row is not None:
                    found[key] = Run(row.cron_key, row.run_at, row.kind, row.job_id, row.enqueued_at)
        return found

    def runs_of(self, key: str, limit: int = 20) -> list[Run]:
        """The newest `limit` runs of one key, newest first (the dashboard's history)."""
        runs = self.runs
        query = sa.select(runs).where(runs.c.cron_key == key).order_by(runs.c.run_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [Run(r.cron_key, r.run_at, r.kind, r.job_id, r.enqueued_at) for r in conn.execute(query)]

    def job_states(self, ids: Iterable[int], now: datetime | None = None) -> dict[int, str]:
        """The state of each job id: waiting, scheduled, running, retrying, failed; absent ids
        are "finished" (the row is gone: the job succeeded, or was discarded or destroyed)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        now = now or utcnow()
        t = self.jobs
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.id.in_(wanted))).mappings().all()
        states = {job_id: "finished" for job_id in wanted}
        for row in rows:
            states[row["id"]] = _job_state(JobRecord.from_mapping(row), self.config, now)
        return states

    # -- pause and resume --------------------------------------------------------------------
    def set_paused(self, key: str, paused: bool, now: datetime | None = None) -> bool:
        """Pause or resume `key` for every host; True when it changed."""
        t = self.entries
        now = now or utcnow()
        stamp = {"paused_at": now} if paused else {"resumed_at": now}
        with self.backend.write_connection() as conn, conn.begin():
            conn.execute(self.backend.insert_or_skip(t).values(cron_key=key, paused=False, updated_at=now))
            changed = conn.execute(
                t.update()
                .where(t.c.cron_key == key, t.c.paused == (not paused))
                .values(paused=paused, updated_at=now, **stamp)
            ).rowcount
        return bool(changed)

    # -- pruning -----------------------------------------------------------------------------
    def prune(self, older_than: datetime, batch: int = PRUNE_BATCH) -> int:
        """Delete runs older than `older_than`, `batch` rows per transaction, oldest first.

        The newest run of each key and kind is kept whatever its age: it is what a scheduler
        starting after downtime reads to know which tick it missed. Batches walk forward by
        (run_at, cron_key), so rows that are kept never block the ones after them.
        """
        runs = self.runs
        order = (runs.c.run_at, runs.c.cron_key)
        after: tuple[datetime, str] | None = None
        deleted = 0
        while True:
            query = sa.select(*order).where(runs.c.run_at < older_than).order_by(*order).limit(batch)
            if after is not None:
                query = query.where(sa.tuple_(*order) > sa.tuple_(*after))
            with self.engine.begin() as conn:
                old = [(run_at, key) for run_at, key in conn.execute(query)]
                if not old:
                    return deleted
                keys = sorted({key for _, key in old})
                keep = {
                    (newest, key)
                    for key, newest in conn.execute(
                        sa.select(runs.c.cron_key, sa.func.max(runs.c.run_at))
                        .where(runs.c.cron_key.in_(keys))
                        .group_by(runs.c.cron_key, runs.c.kind)
                    )
                }
                doomed = [(key, run_at) for run_at, key in old if (run_at, key) not in keep]
                if doomed:
                    deleted += conn.execute(
                        runs.delete().where(sa.tuple_(runs.c.cron_key, runs.c.run_at).in_(doomed))
                    ).rowcount
            if len(old) < batch:
                return deleted
            after = old[-1]


def _job_state(record: JobRecord, config: Config, now: datetime) -> str:
    if record.failed_at is not None:
        return "failed"
    if is_locked(record, config, now):
        return "running"
    if record.attempts > 0:
        return "retrying"
    if record.run_at > now:
        return "scheduled"
    return "waiting"
