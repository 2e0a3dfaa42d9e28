"""MySQL / MariaDB: SKIP LOCKED where the server has it, else the Ruby gem's read-ahead form.

MySQL refuses `UPDATE ... WHERE id IN (SELECT ... LIMIT n)`, so a claim takes two steps.
With SKIP LOCKED (MariaDB 10.6+, MySQL 8.0.1+): in one short READ COMMITTED transaction,
select up to `limit` ready ids `FOR UPDATE SKIP LOCKED`, lock them with one UPDATE, read the
rows back. Without it: read `read_ahead` candidate ids, then claim each with a conditional
UPDATE that repeats the ready predicate; an UPDATE that touches no row lost the race to
another worker and is skipped. Deadlocks and lock-wait timeouts count as an empty pickup.

With PyMySQL, the worker's SKIP LOCKED claim and a batch of one worker's successes go to the
driver directly: the claim reads the whole rows in its `SELECT ... FOR UPDATE SKIP LOCKED`
(in JobRecord order) instead of reading them again after the UPDATE, so three round trips
(SELECT, UPDATE, COMMIT) instead of four, and none of SQLAlchemy's statement building and
result set-up, which cost more CPU than the driver itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..record import JobRecord
from ..timeutil import utcnow
from .base import RECORD_COLUMNS, Backend, ClaimFilter, Outcome, plain_deletes

log = logging.getLogger("delayed.backend")

_RETRYABLE = {1205, 1213}  # lock wait timeout, deadlock
_MISSING = {1146: "table", 1049: "database"}  # ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR
_CLAIM_TRIES = 5


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


class MySQLBackend(Backend):
    name = "mysql"

    def db_now_utc(self) -> sa.ColumnElement[Any]:
        """UTC_TIMESTAMP(6): UTC whatever the session time zone, with microseconds."""
        return sa.func.utc_timestamp(6, type_=sa.DateTime())

    def __init__(self, engine: sa.Engine, table: sa.Table, skip_locked: bool | None = None) -> None:
        super().__init__(engine, table)
        self._skip_locked = skip_locked
        self._direct = engine.dialect.driver == "pymysql"
        # The table as SQL text, schema-qualified and quoted by SQLAlchemy (never by hand);
        # % doubled for PyMySQL's placeholders.
        self._name = str(engine.dialect.identifier_preparer.format_table(table)).replace("%", "%%")
        self._claim_raw: dict[tuple[Any, ...], str] = {}

    def connect(self, durable_claims: bool = False) -> Connection:
        return self.engine.connect().execution_options(isolation_level="READ COMMITTED")

    def write_connection(self) -> Connection:
        """READ COMMITTED for every multi-statement write (outcomes, cron ticks).

        At REPEATABLE READ a DELETE or UPDATE keeps a lock on every row it reads, whether it
        matches or not; when the optimizer scans the whole table (it does for a few ids of a
        small table), the completer's transaction locks every ready row, a claim's SKIP
        LOCKED skips them all and comes back empty although jobs are ready (an
        --exit-on-complete worker then exited early). READ COMMITTED releases the rows that
        do not match at once, and takes no next-key locks on what an INSERT ... SELECT reads.
        """
        return self.engine.connect().execution_options(isolation_level="READ COMMITTED")

    def insert_or_skip(self, table: sa.Table) -> Any:
        """INSERT IGNORE: a taken key is a warning, not an error (ON DUPLICATE KEY UPDATE would
        report a found row, since SQLAlchemy sets CLIENT.FOUND_ROWS)."""
        return table.insert().prefix_with("IGNORE")

    def lock_keys(self, conn: Connection, keys: list[str]) -> list[str]:
        """GET_LOCK on names made from the table and each key (64 characters at most), all in
        one statement, evaluated left to right in the sorted order: named locks this session
        holds until `unlock_keys`, after the commit, so the next holder counts the leases this
        one committed. A key not locked within 10 s is left out (its rows are given back)."""
        names = {f"n{i}": self._lock_name(key) for i, key in enumerate(keys)}
        got = conn.execute(
            sa.text("SELECT " + ", ".join(f"GET_LOCK(:{param}, 10)" for param in names)), names
        ).one()
        return [key for key, value in zip(keys, got, strict=True) if value == 1]

    def unlock_keys(self, conn: Connection, keys: list[str]) -> None:
        names = {f"n{i}": self._lock_name(key) for i, key in enumerate(keys)}
        conn.execute(sa.text("SELECT " + ", ".join(f"RELEASE_LOCK(:{param})" for param in names)), names)

    def _lock_name(self, key: str) -> str:
        digest = hashlib.sha256(f"{self.table.name}\0{key}".encode()).hexdigest()[:40]
        return f"delayed_ck:{digest}"

    def unique_insert(self, table: sa.Table) -> Any:
        """Unused on MySQL: insert_or_skip_keyed writes its own statement."""
        raise NotImplementedError

    def insert_or_skip_keyed(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> dict[str, tuple[int, bool]]:
        """`INSERT ... ON DUPLICATE KEY UPDATE id = id RETURNING id, handler` per row (MariaDB
        10.5+): a taken key updates nothing and returns the existing row, told apart from a
        new one by its handler (every handler holds a fresh job uuid). Not INSERT IGNORE: it
        would also turn real errors (a too long value) into warnings."""
        answered: dict[str, tuple[int, bool]] = {}
        for row in rows:
            stmt = self._odku_sql(tuple(row))
            found = conn.execute(stmt, row).first()
            if found is not None:
                answered[row["unique_key"]] = (int(found[0]), found[1] == row["handler"])
        return answered

    def _odku_sql(self, columns: tuple[str, ...]) -> Any:
        quote = self.engine.dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in columns)
        values = ", ".join(f":{c}" for c in columns)
        return sa.text(
            f"INSERT INTO {quote(self.table.name)} ({names}) VALUES ({values}) "
            "ON DUPLICATE KEY UPDATE id = id RETURNING id, handler"
        )

    def missing(self, exc: BaseException) -> str | None:
        return _MISSING.get(_mysql_code(exc) or 0)

    def supports_skip_locked(self, conn: Connection) -> bool:
        if self._skip_locked is None:
            version = conn.dialect.server_version_info or (0,)
            if getattr(conn.dialect, "is_mariadb", False):
                self._skip_locked = tuple(version[:2]) >= (10, 6)
            else:
                self._skip_locked = tuple(version[:3]) >= (8, 0, 1)
        return self._skip_locked

    def claim_rows(
        self,
        conn: Connection,
        worker_name: str,
        limit: int,
        flt: ClaimFilter,
        lock_timeout: float,
        read_ahead: int,
    ) -> list[JobRecord]:
        # A deadlock or lock-wait timeout rolls the claim back although jobs may be ready;
        # reporting that as "nothing ready" would end an --exit-on-complete worker early, so
        # try again a few times before answering empty.
        for attempt in range(1, _CLAIM_TRIES + 1):
            try:
                if self.supports_skip_locked(conn):
                    return self._claim_skip_locked(conn, worker_name, limit, flt, lock_timeout)
                return self._claim_read_ahead(conn, worker_name, limit, flt, lock_timeout, read_ahead)
            except sa.exc.OperationalError as exc:
                if _mysql_code(exc) not in _RETRYABLE:
                    raise
                log.debug("pickup lost a lock race (%s), try %d of %d", exc.orig, attempt, _CLAIM_TRIES)
                if conn.in_transaction():
                    conn.rollback()
        return []

    def _claim_skip_locked(
        self, conn: Connection, worker_name: str, limit: int, flt: ClaimFilter, lock_timeout: float
    ) -> list[JobRecord]:
        if self._direct and not conn.in_transaction():
            return self._claim_direct(conn.connection.dbapi_connection, worker_name, limit, flt, lock_timeout)
        t = self.table
        now = utcnow()
        with conn.begin():
            ids = list(
                conn.execute(
                    sa.select(t.c.id)
                    .where(self.ready_clause(now, lock_timeout, flt))
                    .order_by(*self.order())
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            if not ids:
                return []
            conn.execute(t.update().where(t.c.id.in_(ids)).values(locked_at=now, locked_by=worker_name))
            rows = conn.execute(sa.select(t).where(t.c.id.in_(ids))).mappings().all()
        return self._sorted(rows)

    def _claim_direct(
        self, driver: Any, worker_name: str, limit: int, flt: ClaimFilter, lock_timeout: float
    ) -> list[JobRecord]:
        """The SKIP LOCKED claim on the PyMySQL connection itself (see the module docstring)."""
        now = utcnow()
        stale = now - timedelta(seconds=lock_timeout)
        params: list[Any] = [now, stale, stale, *flt.raw_params(), limit]
        sql = self._claim_sql(flt)
        rows = self._run(driver, [(sql, params)], claim=(now, worker_name))
        records = [JobRecord(*row[:8], now, worker_name, *row[10:]) for row in rows]
        records.sort(key=lambda r: (r.priority, r.run_at, r.id))
        return records

    def _claim_sql(self, flt: ClaimFilter) -> str:
        key = flt.shape()
        sql = self._claim_raw.get(key)
        if sql is None:
            filters = flt.raw_conditions("%s")
            sql = self._claim_raw[key] = (
                f"SELECT {RECORD_COLUMNS} FROM {self._name} "
                "WHERE failed_at IS NULL AND finished_at IS NULL AND run_at <= %s "
                f"AND (locked_at IS NULL OR locked_at < %s) AND {self.capacity_sql(self._name, '%s')}"
                f"{filters} ORDER BY priority, run_at, id "
                "LIMIT %s FOR UPDATE SKIP LOCKED"
            )
        return sql

    def _run(
        self, driver: Any, statements: list[tuple[str, Sequence[Any]]], claim: tuple[Any, str] | None = None
    ) -> list[Any]:
        """One transaction on the PyMySQL connection: the statements, then (for a claim) the
        UPDATE locking the rows the first one read, then COMMIT; the first one's rows.
        Errors are rolled back and raised as SQLAlchemy would (a deadlock is an
        OperationalError the claim loop retries)."""
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        sql = ""
        try:
            with driver.cursor() as cursor:
                rows: list[Any] = []
                for index, (sql, params) in enumerate(statements):
                    cursor.execute(sql, params)
                    if index == 0:
                        rows = list(cursor.fetchall())
                if claim is not None and rows:
                    ids = [row[0] for row in rows]
                    sql = (
                        f"UPDATE {self._name} SET locked_at = %s, locked_by = %s "
                        f"WHERE id IN ({', '.join(['%s'] * len(ids))})"
                    )
                    cursor.execute(sql, (*claim, *ids))
            driver.commit()
        except dbapi_error as exc:
            with contextlib.suppress(Exception):
                driver.rollback()
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, dbapi_error, dialect=self.engine.dialect
            ) from exc
        return rows

    def complete(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Successes of one worker (nearly every batch): one DELETE and COMMIT on the driver.

        Anything else (retries, failures, several workers' outcomes), or a connection in a
        SQLAlchemy transaction, goes through the transactional path.
        """
        if not outcomes or not self._direct or conn.in_transaction():
            return super().complete(conn, outcomes)
        ids = plain_deletes(outcomes)
        if ids is None:
            return super().complete(conn, outcomes)
        locked_by = outcomes[0].locked_by
        marks = ", ".join(["%s"] * len(ids))
        sql = f"DELETE FROM {self._name} WHERE id IN ({marks}) AND locked_by = %s"
        self._run(conn.connection.dbapi_connection, [(sql, [*ids, locked_by])])

    def _claim_read_ahead(
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
        ready = self.ready_clause(now, lock_timeout, flt)
        with conn.begin():
            candidates = list(
                conn.execute(
                    sa.select(t.c.id).where(ready).order_by(*self.order()).limit(max(read_ahead, limit))
                ).scalars()
            )
        won: list[int] = []
        for job_id in candidates:
            if len(won) >= limit:
                break
            with conn.begin():
                result = conn.execute(
                    t.update().where(ready, t.c.id == job_id).values(locked_at=now, locked_by=worker_name)
                )
            if result.rowcount == 1:
                won.append(job_id)
        if not won:
            return []
        with conn.begin():
            rows = conn.execute(sa.select(t).where(t.c.id.in_(won))).mappings().all()
        return self._sorted(rows)

    @staticmethod
    def _sorted(rows: object) -> list[JobRecord]:
        records = [JobRecord.from_mapping(row) for row in rows]  # type: ignore[attr-defined]
        records.sort(key=lambda r: (r.priority, r.run_at, r.id))
        return records
