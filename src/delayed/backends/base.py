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
from ..timeutil import utcnow

log = logging.getLogger("delayed.backend")

AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


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
        if flt.names:
            clauses.append(t.c.name.not_in(flt.names) if flt.exclude_names else t.c.name.in_(flt.names))
        return sa.and_(*clauses)

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
        """Lock up to `limit` ready jobs for `worker_name`, in pickup order."""
        raise NotImplementedError

    def complete(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of outcomes in one transaction on `conn`."""
        t = self.table
        now = utcnow()
        deletes: dict[str, list[int]] = {}
        retries: list[dict[str, Any]] = []
        fails: list[dict[str, Any]] = []
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
                fails.append(
                    {
                        "b_id": outcome.id,
                        "b_locked_by": outcome.locked_by,
                        "attempts": outcome.attempts,
                        "last_error": outcome.last_error,
                        "failed_at": now,
                        "updated_at": now,
                    }
                )
        with conn.begin():
            for locked_by, ids in deletes.items():
                conn.execute(t.delete().where(t.c.id.in_(ids), t.c.locked_by == locked_by))
            if retries:
                conn.execute(self._unlocking_update("run_at"), retries)
            if fails:
                conn.execute(self._unlocking_update("failed_at"), fails)
            if finishes:
                conn.execute(self._finishing_update(), finishes)
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

    def _unlocking_update(self, column: str) -> Any:
        """UPDATE attempts, last_error and `column`, clearing the lock, where still ours.

        Retries set run_at, failures set failed_at; both match on id and locked_by.
        """
        t = self.table
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
            if count:
                self.notify(conn)
        return count

    def locked_rows(self, conn: Connection, locked_by: str) -> list[JobRecord]:
        """The live rows `locked_by` holds (the supervisor reclaims a dead child's with this)."""
        t = self.table
        query = sa.select(t).where(t.c.locked_by == locked_by, t.c.failed_at.is_(None)).order_by(t.c.id)
        with conn.begin():
            return [JobRecord.from_mapping(row) for row in conn.execute(query).mappings()]

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
        """Insert rows on `conn` (the caller owns the transaction); ids in input order."""
        t = self.table
        if len(rows) == 1:
            result = conn.execute(t.insert().values(**rows[0]))
            return [int(result.inserted_primary_key[0])]
        if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            # SQLAlchemy's "insertmanyvalues": multi-row INSERTs from one cached statement.
            stmt = t.insert().returning(t.c.id, sort_by_parameter_order=True)
            return [int(r[0]) for r in conn.execute(stmt, rows)]
        return [self.insert(conn, [row])[0] for row in rows]
