"""SQLite: the claim is one UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING.

SQLite serialises writers on the whole database, so a single statement is atomic: two
worker processes can never claim the same row. WAL mode and a busy timeout (see db.py) make
concurrent processes queue for the write lock instead of failing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..record import JobRecord
from ..timeutil import utcnow
from .base import Backend, ClaimFilter


class SQLiteBackend(Backend):
    name = "sqlite"

    def db_now_utc(self) -> sa.ColumnElement[Any]:
        """UTC with milliseconds; 'now' is fixed for the whole statement."""
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now", type_=sa.DateTime())

    def missing(self, exc: BaseException) -> str | None:
        text = str(getattr(exc, "orig", None) or exc)
        if text.startswith("no such table"):
            return "table"
        if text.startswith("unable to open database file"):
            return "database"
        return None

    def claim(
        self,
        conn: Connection,
        worker_name: str,
        limit: int,
        flt: ClaimFilter,
        lock_timeout: float,
        read_ahead: int,
    ) -> list[JobRecord]:
        t = self.table
        now = utcnow()
        candidates = (
            sa.select(t.c.id)
            .where(self.ready_clause(now, lock_timeout, flt))
            .order_by(*self.order())
            .limit(limit)
        )
        stmt = (
            t.update()
            .where(t.c.id.in_(candidates.scalar_subquery()))
            .values(locked_at=now, locked_by=worker_name)
            .returning(*t.c)
        )
        rows = conn.execute(stmt).mappings().all()
        records = [JobRecord.from_mapping(row) for row in rows]
        records.sort(key=lambda r: (r.priority, r.run_at, r.id))
        return records

    def lock_dead_workers(
        self, conn: Connection, workers: sa.Table, cutoff: datetime, limit: int
    ) -> list[str]:
        """SQLite has no row locks but one writer: a no-op UPDATE ... RETURNING takes the
        database's write lock at once (a SELECT first could not upgrade its read snapshot once
        another process wrote), so the rest of the rescue's transaction runs alone."""
        dead = (
            sa.select(workers.c.name)
            .where(workers.c.heartbeat_at < cutoff)
            .order_by(workers.c.heartbeat_at)
            .limit(limit)
        )
        stmt = (
            workers.update()
            .where(workers.c.name.in_(dead.scalar_subquery()))
            .values(heartbeat_at=workers.c.heartbeat_at)
            .returning(workers.c.name)
        )
        return list(conn.execute(stmt).scalars())

    def insert_or_skip(self, table: sa.Table) -> Any:
        return sqlite_insert(table).on_conflict_do_nothing()
