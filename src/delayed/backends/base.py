"""The one small interface between the worker and the database.

A Backend claims ready jobs, writes outcomes (delete / retry / fail), releases locks and
inserts rows. Everything that differs by dialect lives in a subclass (postgres, mysql,
sqlite); the worker never asks which database it talks to.

Every outcome is written only where the row is still locked by the worker that ran it
(`id` and `locked_by` both match): a worker that finishes after its lock expired and
another worker took the job changes nothing.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..record import JobRecord, Outcome
from ..schema import leases_table, qualified
from ..timeutil import utcnow
from .dedupe import has_unique, insert_deduplicated, without_unset

log = logging.getLogger("delayed.backend")

_CLAIM_ROUNDS = 3  # one claim plus two more when keyed rows lost their slot race

AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
# A claim's RETURNING (or SELECT) list in JobRecord's field order, so the hand-written claims
# build each JobRecord from a row tuple positionally.
RECORD_COLUMNS = (
    "id, priority, attempts, handler, name, run_at, queue, last_error, locked_at, locked_by, "
    "failed_at, created_at, updated_at, unique_key, concurrency_key, concurrency_limit"
)


@dataclass(frozen=True)
class ClaimFilter:
    """Which jobs a worker may take: its queues (empty = all) and priority range (inclusive).

    `names` (job names; empty = any) with `exclude_names` splits a worker's claims by lane:
    the async lane claims only the names of async job classes, the thread lane every other.
    """

    queues: tuple[str, ...] = ()
    min_priority: int | None = None
    max_priority: int | None = None
    names: tuple[str, ...] = ()
    exclude_names: bool = False

    def shape(self) -> tuple[Any, ...]:
        """What a raw claim statement's text depends on (its cache key)."""
        return (
            len(self.queues),
            self.min_priority is not None,
            self.max_priority is not None,
            len(self.names),
            self.exclude_names,
        )

    def raw_conditions(self, mark: str) -> str:
        """The filter as ` AND ...` SQL text with `mark` placeholders (the driver's own), for
        the claims that go straight to the driver; values from `raw_params`, in order."""
        sql = ""
        if self.queues:
            sql += f" AND queue IN ({', '.join([mark] * len(self.queues))})"
        if self.min_priority is not None:
            sql += f" AND priority >= {mark}"
        if self.max_priority is not None:
            sql += f" AND priority <= {mark}"
        if self.names:  # a worker lane's job names (delayed.worker)
            marks = ", ".join([mark] * len(self.names))
            sql += f" AND name {'NOT IN' if self.exclude_names else 'IN'} ({marks})"
        return sql

    def raw_params(self) -> list[Any]:
        """The values of `raw_conditions`' placeholders, in order."""
        values: list[Any] = list(self.queues)
        if self.min_priority is not None:
            values.append(self.min_priority)
        if self.max_priority is not None:
            values.append(self.max_priority)
        values.extend(self.names)
        return values


def plain_deletes(outcomes: Sequence[Outcome]) -> list[int] | None:
    """The ids when every outcome is a success of one worker holding no concurrency lease
    (nearly every batch: the direct drivers' one DELETE serves it); else None."""
    locked_by = outcomes[0].locked_by
    for outcome in outcomes:
        if outcome.kind != "delete" or outcome.locked_by != locked_by or outcome.leased:
            return None
    return [outcome.id for outcome in outcomes]


class Waiter:
    """Blocks an idle worker until `timeout` passes or `wake_fd` becomes readable.

    Backends with push notification (PostgreSQL LISTEN) return early when jobs arrive.
    """

    def wait(self, timeout: float, wake_fd: int) -> bool:
        """Wait; True when woken by the database (new jobs), False otherwise."""
        if timeout > 0:
            select.select([wake_fd], [], [], timeout)
        return False

    def close(self) -> None:
        """Release any connection held for waiting."""


class Backend:
    """Shared SQLAlchemy Core implementation; dialects override `claim` and friends."""

    name = "generic"

    def __init__(self, engine: Engine, table: sa.Table) -> None:
        self.engine = engine
        self.table = table
        self.leases = leases_table(qualified(table))

    # -- connections -------------------------------------------------------------------
    def connect(self, durable_claims: bool = False) -> Connection:
        """A connection for single-statement work (claims), in autocommit mode.

        `durable_claims`: only PostgreSQL makes claims non-durable by default (see there).
        """
        return self.engine.connect().execution_options(**AUTOCOMMIT)

    def write_connection(self) -> Connection:
        """A connection for short write transactions: the completer's outcomes, releases and
        reclaims, the cron scheduler's ticks (MySQL overrides it: READ COMMITTED, so an UPDATE
        that scans rows other workers hold never waits on them)."""
        return self.engine.connect()

    def waiter(self, listen: bool) -> Waiter:
        """How an idle worker waits for new jobs; polling by default."""
        return Waiter()

    # -- predicates ----------------------------------------------------------------------
    def ready_clause(self, now: datetime, lock_timeout: float, flt: ClaimFilter) -> Any:
        """Ready: live, due, not locked (or locked longer ago than the lock timeout), filtered."""
        t = self.table
        stale = now - timedelta(seconds=lock_timeout)
        clauses = [
            t.c.failed_at.is_(None),
            t.c.finished_at.is_(None),
            t.c.run_at <= now,
            sa.or_(t.c.locked_at.is_(None), t.c.locked_at < stale),
        ]
        if flt.queues:
            clauses.append(t.c.queue.in_(flt.queues))
        if flt.min_priority is not None:
            clauses.append(t.c.priority >= flt.min_priority)
        if flt.max_priority is not None:
            clauses.append(t.c.priority <= flt.max_priority)
        clauses.append(self.capacity_clause(stale))
        if flt.names:
            clauses.append(t.c.name.not_in(flt.names) if flt.exclude_names else t.c.name.in_(flt.names))
        return sa.and_(*clauses)

    # -- concurrency limits ---------------------------------------------------------------
    # A keyed row runs only while it holds a lease. A claim takes keyed rows whose key looks
    # free (capacity_clause: rows of a key at its limit are skipped in the same statement,
    # so they never hold up other rows nor make a worker spin), then `_admit` grants the
    # leases atomically per key (lock_keys, count live leases, INSERT what fits),
    # and gives back at once, unchanged, a row that lost the race for the last slot.
    def live_leases(self, key: Any, stale: datetime) -> Any:
        """SELECT count(*) of the live leases of `key`: the lease's job is still locked by the
        lease's holder and that lock is not older than the lock timeout. A lease of a finished,
        failed, reclaimed, rescued or timed-out job is dead at once, whether deleted or not."""
        lease = self.leases
        held = self.table.alias("held")
        return (
            sa.select(sa.func.count())
            .select_from(
                lease.join(held, sa.and_(held.c.id == lease.c.job_id, held.c.locked_by == lease.c.locked_by))
            )
            .where(lease.c.concurrency_key == key, held.c.locked_at >= stale)
            .scalar_subquery()
        )

    def capacity_clause(self, stale: datetime) -> Any:
        """Keyless rows, or keyed rows whose key has a free slot."""
        t = self.table
        return sa.or_(
            t.c.concurrency_key.is_(None),
            self.live_leases(t.c.concurrency_key, stale) < t.c.concurrency_limit,
        )

    def capacity_sql(self, jobs_sql: str, placeholder: str) -> str:
        """capacity_clause as SQL text for a dialect's hand-written claim (`jobs_sql`: the jobs
        table as quoted SQL text, unaliased in the claim; `placeholder`: the stale time)."""
        leases = str(self.engine.dialect.identifier_preparer.format_table(self.leases))
        return (
            f"(concurrency_key IS NULL OR (SELECT count(*) FROM {leases} l JOIN {jobs_sql} held "
            "ON held.id = l.job_id AND held.locked_by = l.locked_by "
            f"WHERE l.concurrency_key = {jobs_sql}.concurrency_key AND held.locked_at >= {placeholder}) "
            "< concurrency_limit)"
        )

    def lock_keys(self, conn: Connection, keys: list[str]) -> list[str]:
        """Serialise lease grants of `keys` (sorted) until the transaction ends; returns the
        keys locked. Dialects override; SQLite needs nothing: its writer holds the database
        from the transaction's first write on."""
        return keys

    def unlock_keys(self, conn: Connection, keys: list[str]) -> None:
        """After the commit, release what `lock_keys` took when it outlives transactions."""

    def _admit(
        self, claim_conn: Connection, records: list[JobRecord], worker_name: str, lock_timeout: float
    ) -> list[JobRecord]:
        """Grant each claimed keyed row a lease, within its key's limit; unlock the others.

        One transaction on a write connection, a fixed number of statements whatever the
        number of keys: the keys' locks; the leases a previous claim of these rows left (dead)
        and the keys' other dead leases deleted; the live leases counted per key; the rows
        that fit (pickup order) granted in one INSERT; the others given back. Deciding in
        Python between the count and the INSERT is safe only because every grant of these keys
        happens under the same locks (`claim_conn` is the claim's, which a dialect may use
        when it can carry the transaction cheaply)."""
        keyed = [r for r in records if r.concurrency_key is not None]
        if not keyed:
            return records
        lease = self.leases
        now = utcnow()
        stale = now - timedelta(seconds=lock_timeout)
        keys = sorted({r.concurrency_key for r in keyed if r.concurrency_key is not None})
        granted: list[dict[str, Any]] = []
        locked: list[str] = []
        with self.write_connection() as conn:
            try:
                with conn.begin():
                    ids = [r.id for r in keyed]
                    locked = self.lock_keys(conn, keys)  # before touching any lease row
                    if locked:
                        # A write before any read (SQLite takes its writer lock here). A row's
                        # key never changes, so its old lease is under the same lock.
                        conn.execute(lease.delete().where(lease.c.job_id.in_(ids)))
                        self._drop_dead_leases(conn, locked, stale)
                        live = self._count_live(conn, locked, stale)
                        for record in keyed:  # pickup order
                            key = record.concurrency_key
                            if key in live and live[key] < (record.concurrency_limit or 1):
                                live[key] += 1
                                granted.append(
                                    {
                                        "job_id": record.id,
                                        "concurrency_key": key,
                                        "locked_by": worker_name,
                                        "created_at": now,
                                    }
                                )
                        if granted:
                            conn.execute(lease.insert(), granted)
                    rejected = sorted(set(ids) - {g["job_id"] for g in granted})
                    if rejected:
                        self._give_back(conn, worker_name, rejected)
            finally:
                if locked:
                    self.unlock_keys(conn, locked)
        admitted = {g["job_id"] for g in granted}
        return [r for r in records if r.concurrency_key is None or r.id in admitted]

    def _count_live(self, conn: Connection, keys: list[str], stale: datetime) -> dict[str, int]:
        """Live leases per key (every key of `keys` present, 0 when none)."""
        lease = self.leases
        held = self.table.alias("held")
        query = (
            sa.select(lease.c.concurrency_key, sa.func.count())
            .select_from(
                lease.join(held, sa.and_(held.c.id == lease.c.job_id, held.c.locked_by == lease.c.locked_by))
            )
            .where(lease.c.concurrency_key.in_(keys), held.c.locked_at >= stale)
            .group_by(lease.c.concurrency_key)
        )
        live = dict.fromkeys(keys, 0)
        live.update({key: int(n) for key, n in conn.execute(query)})
        return live

    def _drop_dead_leases(self, conn: Connection, keys: list[str], stale: datetime) -> None:
        """Delete the keys' dead leases (under their locks), so the table stays the running set."""
        lease, t = self.leases, self.table
        alive = sa.select(t.c.id).where(
            t.c.id == lease.c.job_id, t.c.locked_by == lease.c.locked_by, t.c.locked_at >= stale
        )
        conn.execute(lease.delete().where(lease.c.concurrency_key.in_(keys), ~alive.exists()))

    def _give_back(self, conn: Connection, worker_name: str, ids: list[int]) -> None:
        """Unlock rows that got no slot: no attempt counted, ready again for later."""
        t = self.table
        conn.execute(
            t.update()
            .where(t.c.id.in_(ids), t.c.locked_by == worker_name)
            .values(locked_at=None, locked_by=None)
        )

    def release_leases(self, conn: Connection, job_ids: Sequence[int], locked_by: str | None = None) -> int:
        """Delete the leases of `job_ids` (held by `locked_by`, when given) on `conn`, in the
        caller's transaction if any.

        Every path that unlocks a row frees its slot by itself (a lease counts only while its
        job is locked by the holder), so this is housekeeping; releasing twice is harmless.
        Pass `locked_by` when the rows may have changed hands since: another worker's live
        lease on the same job must stay. The worker registry's dead-host rescue calls it with
        the rows it unlocks and the dead worker's name."""
        if not job_ids:
            return 0
        lease = self.leases
        stmt = lease.delete().where(lease.c.job_id.in_(list(job_ids)))
        if locked_by is not None:
            stmt = stmt.where(lease.c.locked_by == locked_by)
        return conn.execute(stmt).rowcount

    def order(self) -> tuple[Any, ...]:
        t = self.table
        return (t.c.priority, t.c.run_at, t.c.id)

    # -- the interface -----------------------------------------------------------------
    def claim(
        self,
        conn: Connection,
        worker_name: str,
        limit: int,
        flt: ClaimFilter,
        lock_timeout: float,
        read_ahead: int,
    ) -> list[JobRecord]:
        """Lock up to `limit` ready jobs for `worker_name`, in pickup order.

        Keyed rows that lost the race for their key's last slot are given back and the free
        capacity claimed again, at most twice (the capacity filter then skips that key)."""
        claimed: list[JobRecord] = []
        for _ in range(_CLAIM_ROUNDS):
            records = self.claim_rows(conn, worker_name, limit - len(claimed), flt, lock_timeout, read_ahead)
            admitted = self._admit(conn, records, worker_name, lock_timeout)
            claimed.extend(admitted)
            if len(admitted) == len(records) or len(claimed) >= limit:
                break
        if len(claimed) > 1:
            claimed.sort(key=lambda r: (r.priority, r.run_at, r.id))
        return claimed

    def claim_rows(
        self,
        conn: Connection,
        worker_name: str,
        limit: int,
        flt: ClaimFilter,
        lock_timeout: float,
        read_ahead: int,
    ) -> list[JobRecord]:
        """The dialect's claim statement(s): lock up to `limit` ready rows, in pickup order."""
        raise NotImplementedError

    def complete(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of outcomes in one transaction on `conn`."""
        with conn.begin():
            self.write_outcomes(conn, outcomes)

    def write_outcomes(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Write outcomes inside the transaction the caller holds on `conn` (the rescue writes
        them in the same transaction that locks the dead worker's registry row)."""
        t = self.table
        now = utcnow()
        deletes: dict[str, list[int]] = {}
        retries: list[dict[str, Any]] = []
        fails: list[dict[str, Any]] = []
        held: list[dict[str, Any]] = []  # failures that keep their unique key
        leased: dict[str, list[int]] = {}
        for outcome in outcomes:
            if outcome.leased:
                leased.setdefault(outcome.locked_by, []).append(outcome.id)
        finishes: list[dict[str, Any]] = []
        for outcome in outcomes:
            if outcome.kind == "delete":
                deletes.setdefault(outcome.locked_by, []).append(outcome.id)
            elif outcome.kind == "retry":
                retries.append(
                    {
                        "b_id": outcome.id,
                        "b_locked_by": outcome.locked_by,
                        "attempts": outcome.attempts,
                        "run_at": outcome.run_at,
                        "last_error": outcome.last_error,
                        "updated_at": now,
                    }
                )
            elif outcome.kind == "finish":
                finishes.append(
                    {
                        "b_id": outcome.id,
                        "b_locked_by": outcome.locked_by,
                        "result": outcome.result,
                        "now": now,
                    }
                )
            else:
                (fails if not outcome.hold_unique_key else held).append(
                    {
                        "b_id": outcome.id,
                        "b_locked_by": outcome.locked_by,
                        "attempts": outcome.attempts,
                        "last_error": outcome.last_error,
                        "failed_at": now,
                        "updated_at": now,
                    }
                )
        for locked_by, ids in deletes.items():
            conn.execute(t.delete().where(t.c.id.in_(ids), t.c.locked_by == locked_by))
        if retries:
            conn.execute(self._unlocking_update("run_at"), retries)
        if fails:
            conn.execute(self._unlocking_update("failed_at", free_unique_key=True), fails)
        if held:
            conn.execute(self._unlocking_update("failed_at"), held)
        if finishes:
            conn.execute(self._finishing_update(), finishes)
        for holder, ids in leased.items():
            self.release_leases(conn, ids, holder)
        if retries:
            self.notify(conn)

    def _finishing_update(self) -> Any:
        """Keep a success: finished_at and result set, the lock cleared, where still ours."""
        t = self.table
        return (
            t.update()
            .where(t.c.id == sa.bindparam("b_id"), t.c.locked_by == sa.bindparam("b_locked_by"))
            .values(
                finished_at=sa.bindparam("now"),
                updated_at=sa.bindparam("now"),
                result=sa.bindparam("result"),
                locked_at=None,
                locked_by=None,
            )
        )

    def _unlocking_update(self, column: str, free_unique_key: bool = False) -> Any:
        """UPDATE attempts, last_error and `column`, clearing the lock, where still ours.

        Retries set run_at, failures set failed_at; both match on id and locked_by. A failure
        frees its unique key in the same UPDATE (`free_unique_key`), unless the class's
        Unique(failed_holds_key=True): the one place a unique key is given up without a delete.
        """
        t = self.table
        extra = {"unique_key": None} if free_unique_key else {}
        return (
            t.update()
            .where(t.c.id == sa.bindparam("b_id"), t.c.locked_by == sa.bindparam("b_locked_by"))
            .values(
                {
                    "attempts": sa.bindparam("attempts"),
                    "last_error": sa.bindparam("last_error"),
                    "updated_at": sa.bindparam("updated_at"),
                    column: sa.bindparam(column),
                    "locked_at": None,
                    "locked_by": None,
                    **extra,
                }
            )
        )

    def release(
        self,
        conn: Connection,
        locked_by: str,
        ids: Sequence[int] | None = None,
        exclude: Sequence[int] = (),
    ) -> int:
        """Clear the locks `locked_by` holds on live rows (all, or just `ids`, minus `exclude`).

        Without `ids`, the rows are first found by a plain read, then updated by primary key:
        an UPDATE that searched by `locked_by` (no index serves it) would lock, or on MySQL wait
        on, every row it scans, including rows other workers' transactions hold (issue 11
        item 7). The UPDATE re-checks `locked_by`, so a row that changed hands is left alone.
        The rows' concurrency leases are deleted in the same transaction.
        """
        t = self.table
        mine = sa.and_(t.c.locked_by == locked_by, t.c.failed_at.is_(None))
        with conn.begin():
            if ids is None:
                ids = list(conn.execute(sa.select(t.c.id).where(mine)).scalars())
            ids = sorted(set(ids) - set(exclude))
            if not ids:
                return 0
            stmt = (
                t.update()
                .where(t.c.id.in_(ids), mine)
                .values(locked_at=None, locked_by=None, updated_at=utcnow())
            )
            count = conn.execute(stmt).rowcount
            # Their leases go too (a lease of an unlocked row is dead anyway: housekeeping).
            self.release_leases(conn, ids, locked_by)
            if count:
                self.notify(conn)
        return count

    def locked_rows(self, conn: Connection, locked_by: str) -> list[JobRecord]:
        """The live rows `locked_by` holds (the supervisor reclaims a dead child's with this)."""
        t = self.table
        query = sa.select(t).where(t.c.locked_by == locked_by, t.c.failed_at.is_(None)).order_by(t.c.id)
        with conn.begin():
            return [JobRecord.from_mapping(row) for row in conn.execute(query).mappings()]

    def lock_dead_workers(
        self, conn: Connection, workers: sa.Table, cutoff: datetime, limit: int
    ) -> list[str]:
        """Inside the caller's transaction: lock up to `limit` registry rows whose heartbeat is
        older than `cutoff` (the database's clock), skipping rows another rescuer holds; their names.

        `FOR UPDATE SKIP LOCKED` (PostgreSQL, MySQL 8 / MariaDB 10.6): two rescuers on two hosts
        take disjoint dead workers, and a worker's own heartbeat UPDATE waits for the rescue's
        commit, then finds its row gone. SQLite overrides it (one writer at a time).
        """
        query = (
            sa.select(workers.c.name)
            .where(workers.c.heartbeat_at < cutoff)
            .order_by(workers.c.heartbeat_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(conn.execute(query).scalars())

    def upkeep_warnings(self) -> list[str]:
        """What the database's own upkeep of the jobs table lacks, as messages a worker logs
        once at start-up. A queue table turns over every row it holds many times an hour, so
        upkeep left off there slows every claim long before anything fails. Dialects override."""
        return []

    def missing(self, exc: BaseException) -> str | None:
        """What `exc` says is missing for good: "table" (ours) or "database"; else None.

        A lost or refused connection, a wrong password, a timeout are not "missing": those
        may pass. Each dialect knows its own error codes.
        """
        return None

    def unusable_reason(self, exc: BaseException) -> str | None:
        """A one-line message saying what to do when the jobs table or its database is missing."""
        kind = self.missing(exc)
        if kind == "table":
            return f"table {self.table.name} does not exist: run `delayed migrate`"
        if kind == "database":
            return (
                f"database {self.engine.url.database!r} does not exist (or cannot be opened): "
                "create it, then run `delayed migrate`"
            )
        return None

    def notify(self, conn: Connection) -> None:
        """Wake idle workers (only PostgreSQL has a way); called inside a transaction."""

    def db_now_utc(self) -> Any:
        """A SQL expression for the database's clock as naive UTC (the monitor's ages use it)."""
        return sa.func.current_timestamp(type_=sa.DateTime())

    def insert_or_skip(self, table: sa.Table) -> Any:
        """An INSERT into `table` that does nothing (rowcount 0, no error) when the primary key
        is taken: PostgreSQL and SQLite `ON CONFLICT DO NOTHING`, MySQL `INSERT IGNORE`.

        Used where a duplicate is the expected answer of a race (a cron tick another host
        enqueued), so it must not raise, roll back or log anything."""
        raise NotImplementedError

    # -- enqueue -----------------------------------------------------------------------
    def insert_now(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert and commit at once (enqueue without `using=`); ids in input order."""
        with self.engine.begin() as conn:
            return self.insert(conn, rows)

    def insert(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows on `conn` (the caller owns the transaction); ids in input order.

        Rows with a unique_key go through the dialect's insert-or-skip (delayed.backends.dedupe):
        the answer is then an EnqueueResult saying which were duplicates."""
        if has_unique(rows):
            return insert_deduplicated(
                rows,
                lambda plain: self._insert_plain(conn, plain),
                lambda keyed: self.insert_or_skip_keyed(conn, keyed),
                lambda keys: self.find_keys(conn, keys),
            )
        return self._insert_plain(conn, rows)

    def insert_or_skip_keyed(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> dict[str, tuple[int, bool]]:
        """Offer rows with distinct unique keys; {key: (id, True)} for those inserted.

        `INSERT ... ON CONFLICT (unique_key) DO NOTHING RETURNING id` (PostgreSQL and SQLite;
        MySQL overrides it): a taken key is no error and returns no row."""
        t = self.table
        stmt = self.unique_insert(t).returning(t.c.id)
        answered: dict[str, tuple[int, bool]] = {}
        for row in rows:
            found = conn.execute(stmt.values(**row)).first()
            if found is not None:
                answered[row["unique_key"]] = (int(found[0]), True)
        return answered

    def unique_insert(self, table: sa.Table) -> Any:
        """INSERT that skips a row whose unique_key is taken (dialects provide it)."""
        raise NotImplementedError

    def find_keys(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        """The ids of the rows holding `keys` (those a skipped insert ran into)."""
        t = self.table
        query = sa.select(t.c.unique_key, t.c.id).where(t.c.unique_key.in_(list(keys)))
        return {key: int(job_id) for key, job_id in conn.execute(query)}

    def _insert_plain(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """Insert rows without unique keys; ids in input order."""
        t = self.table
        rows = without_unset(rows)
        if len(rows) == 1:
            result = conn.execute(t.insert().values(**rows[0]))
            return [int(result.inserted_primary_key[0])]
        if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            # SQLAlchemy's "insertmanyvalues": multi-row INSERTs from one cached statement.
            stmt = t.insert().returning(t.c.id, sort_by_parameter_order=True)
            return [int(r[0]) for r in conn.execute(stmt, rows)]
        return [self._insert_plain(conn, [row])[0] for row in rows]
