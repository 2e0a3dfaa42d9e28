"""PostgreSQL: one-statement SKIP LOCKED pickup, LISTEN/NOTIFY wake-ups.

The claim is a single UPDATE whose target ids come from `ARRAY(SELECT ... FOR UPDATE SKIP
LOCKED)`: one round trip locks up to `limit` jobs, concurrent workers skip each other's
rows instead of waiting, and under READ COMMITTED a row another worker claimed meanwhile is
re-checked and dropped. The array form makes PostgreSQL run the sub-select exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
import select
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from ..db import describe_error, transaction_pooled
from ..errors import EnqueueError
from ..record import EnqueueResult, JobRecord
from ..schema import notify_channel
from ..timeutil import utcnow
from .base import RECORD_COLUMNS, Backend, ClaimFilter, Outcome, Waiter
from .dedupe import INSERT_COLUMNS, OPTIONAL_COLUMNS, has_unique

log = logging.getLogger("delayed.backend")

_OPTIONAL = frozenset(OPTIONAL_COLUMNS)  # left out when all NULL
_INSERT_TYPES = {
    "priority": "integer",
    "attempts": "integer",
    "handler": "text",
    "run_at": "timestamp",
    "queue": "varchar",
    "name": "varchar",
    "created_at": "timestamp",
    "updated_at": "timestamp",
    "unique_key": "varchar",
    "concurrency_key": "varchar",
    "concurrency_limit": "integer",
}
_NO_DATABASE = re.compile(r'FATAL:\s+database ".*" does not exist')
_INSERT_CHUNK = 10_000  # rows per INSERT statement
_UNIQUE_TRIES = 5
# The keys' advisory locks, in the (sorted) order given.
_LOCK_KEYS = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%(locks)s::bigint[]) AS u(k)"
_PIPELINE_CHUNK = 2_500  # rows per statement when a large enqueue is pipelined
_UNIFORM = frozenset(
    {"priority", "attempts", "queue", "name", "concurrency_key", "concurrency_limit"}
)  # sent once when equal in every row
_SAME_AS_CREATED = frozenset({"run_at", "updated_at"})  # usually equal to created_at: not sent then
# Text columns sent as one string, split by the server (`string_to_array`): psycopg dumps a
# list element by element in Python, ~40% of a bulk enqueue's client time for the handlers.
# The separator is a control character JSON text never holds unescaped (a handler is JSON).
_PACKED = frozenset({"handler"})
_SEPARATOR = "\x1e"


def _pack(values: list[Any]) -> str | None:
    """The strings joined by _SEPARATOR; None when one is not a string (a None) or holds it."""
    try:
        packed = _SEPARATOR.join(values)
    except TypeError:
        return None
    if not packed or packed.count(_SEPARATOR) != len(values) - 1:
        return None  # "" would split into no element at all
    return packed


def insert_statement(
    quoted_table: str, chunk: list[dict[str, Any]], binary: bool = True
) -> tuple[str, dict[str, Any]]:
    """`INSERT ... SELECT ... FROM unnest(arrays) RETURNING id` and its parameters, for any
    number of rows (the backend's inserts, and `using=` a caller's psycopg connection).

    One SQL text per shape, never compiled per call (SQLAlchemy compiled 8 bind parameters
    per row for a multi-row VALUES, which cost more than the insert itself), so psycopg
    reuses its parsed query. A column whose value is the same in every row (priority,
    attempts, queue and name usually are, in a bulk enqueue of one job class) travels as one
    value, run_at and updated_at as created_at when they match, and the handlers as one
    string (_PACKED): each array element costs the driver a Python-level dump. unnest()
    yields the rows in array order, and ids are drawn in that order. `binary`: arrays in
    psycopg's binary format (not with a ClientCursor, which binds on the client).
    """
    params: dict[str, Any] = {}
    # per column: "a" (array), "s" (one value), "=" (= created_at), "p" (one packed string)
    shape: list[str] = []
    created = [row["created_at"] for row in chunk]
    for column in INSERT_COLUMNS:
        values = created if column == "created_at" else [row.get(column) for row in chunk]
        if column in _SAME_AS_CREATED and values == created:
            shape.append("=")
        elif column in _OPTIONAL and values.count(None) == len(values):
            shape.append("n")  # a step-4 column NULL in every row: not sent
        elif column in _UNIFORM and values.count(values[0]) == len(values):
            shape.append("s")
            params[column] = values[0]
        elif column in _PACKED and (packed := _pack(values)) is not None:
            shape.append("p")
            params[column] = packed
        else:
            shape.append("a")
            params[column] = values
    return _insert_sql(quoted_table, "".join(shape), binary), params


def single_shape(row: dict[str, Any]) -> str:
    """The shape of a one-row INSERT: "1", then "v" per column sent, "n" per step-4 column
    left NULL (not sent, so a plain enqueue works on a table not yet migrated to step 4)."""
    return "1" + "".join("n" if c in _OPTIONAL and row.get(c) is None else "v" for c in INSERT_COLUMNS)


@functools.lru_cache(maxsize=256)
def _insert_sql(quoted_table: str, shape: str, binary: bool) -> str:
    """The INSERT for one row (shape "1...", see single_shape) or for arrays shaped as
    `insert_statement` says; `quoted_table`: the table as SQL text, quoted (and
    schema-qualified) by the caller. With a unique_key it skips a taken key (ON CONFLICT DO
    NOTHING) and returns the key too, since skipped rows leave holes in the returned ids."""
    name = quoted_table.replace("%", "%%")  # psycopg's placeholders
    single = shape.startswith("1")
    kinds = shape[1:] if single else shape
    sent = [(c, kind) for c, kind in zip(INSERT_COLUMNS, kinds, strict=True) if kind != "n"]
    columns = ", ".join(c for c, _ in sent)
    if single:
        source = "VALUES (" + ", ".join(f"%({c})s" for c, _ in sent) + ")"
    else:
        exprs, arrays, sources = [], [], []
        for column, kind in sent:
            cast = _INSERT_TYPES[column]
            if kind == "s":
                exprs.append(f"%({column})s::{cast}")
            elif kind == "=":
                exprs.append("u.created_at")
            else:
                exprs.append(f"u.{column}")
                arrays.append(column)
                if kind == "p":
                    sources.append(f"string_to_array(%({column})s::text, chr({ord(_SEPARATOR)}))::{cast}[]")
                else:
                    sources.append(f"%({column}){'b' if binary else 's'}::{cast}[]")
        source = f"SELECT {', '.join(exprs)} FROM unnest({', '.join(sources)}) AS u({', '.join(arrays)})"
    returning = "RETURNING id"
    if any(c == "unique_key" for c, _ in sent):
        returning = "ON CONFLICT (unique_key) DO NOTHING RETURNING id, unique_key"
    return f"INSERT INTO {name} ({columns}) {source} {returning}"


@functools.cache
def _pipeline_supported() -> bool:
    return bool(psycopg.Pipeline.is_supported())


def _pickup_order(record: JobRecord) -> tuple[Any, ...]:
    return (record.priority, record.run_at, record.id)


class PostgresWaiter(Waiter):
    """Waits on a LISTEN connection and the worker's wake pipe at once."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend
        self.raw: Any = None

    def _listen(self) -> Any:
        if self.raw is None:
            raw = self.backend.engine.raw_connection()
            try:
                driver = raw.driver_connection
                driver.autocommit = True
                preparer = self.backend.engine.dialect.identifier_preparer
                driver.execute(f"LISTEN {preparer.quote_identifier(notify_channel(self.backend.table))}")
            except Exception:
                raw.invalidate()
                raise
            self.raw = raw
        return self.raw.driver_connection

    def wait(self, timeout: float, wake_fd: int) -> bool:
        if timeout <= 0:
            return False
        try:
            conn = self._listen()
        except Exception as exc:  # database down: fall back to polling
            log.warning("LISTEN unavailable (%s); polling until it works again", describe_error(exc))
            return super().wait(timeout, wake_fd)
        readable, _, _ = select.select([conn.fileno(), wake_fd], [], [], timeout)
        if conn.fileno() not in readable:
            return False
        try:
            return any(True for _ in conn.notifies(timeout=0.0))
        except Exception as exc:
            log.warning("LISTEN connection lost (%s); reconnecting on next wait", describe_error(exc))
            self.close()
            return False

    def close(self) -> None:
        if self.raw is not None:
            raw, self.raw = self.raw, None
            with contextlib.suppress(Exception):  # a dead socket may refuse to close
                raw.invalidate()  # never hand a LISTENing connection back to the pool


def autovacuum_warning(server: str, options: Sequence[str] | None, table: str) -> str | None:
    """The warning for `autovacuum` (the server's setting) and the table's reloptions, or None.

    The server's switch comes first: with it off, no table's own setting turns vacuum on.
    """
    harm = "dead rows of finished jobs pile up, the table grows without bound and claims slow down"
    if server != "on":
        return (
            f"PostgreSQL's autovacuum is off on this server: {harm}; set autovacuum = on "
            f"(or VACUUM {table} every few minutes)"
        )
    if any(o.replace(" ", "").lower() == "autovacuum_enabled=false" for o in options or ()):
        return (
            f"autovacuum is off for table {table} (autovacuum_enabled = false): {harm}; "
            f"ALTER TABLE {table} RESET (autovacuum_enabled)"
        )
    return None


class PostgresBackend(Backend):
    name = "postgresql"

    def __init__(self, engine: Any, table: sa.Table) -> None:
        super().__init__(engine, table)
        self._claim_sql: dict[tuple[bool, bool, bool], Any] = {}
        self._claim_raw: dict[tuple[Any, ...], str] = {}
        # Hot paths talk to psycopg 3 directly (prepared statements, rows as tuples); any
        # other driver goes through SQLAlchemy as before.
        self._direct = engine.dialect.driver == "psycopg"
        self._insert_text: dict[str, str] = {}
        # Behind a transaction-pooling PgBouncer ([delayed] pooler = "transaction") nothing of
        # a session outlives a transaction: no LISTEN, no session SET, no prepared statement.
        self._pooled = transaction_pooled(engine)
        self._prepare: bool | None = None if self._pooled else True

    def waiter(self, listen: bool) -> Waiter:
        """LISTEN on its own connection; polling behind a transaction pooler (a LISTEN there
        registers on whichever server connection ran it, and the notifications go nowhere)."""
        return PostgresWaiter(self) if listen and not self._pooled else Waiter()

    def connect(self, durable_claims: bool = False) -> Connection:
        """The claim connection, detached from the pool so its planner setting stays with it.

        enable_sort = off: the pickup index already yields (priority, run_at, id) order. With
        stale statistics (a burst of jobs into a table last analyzed when nearly empty, before
        autovacuum catches up) the planner otherwise picks a bitmap scan plus a sort of every
        ready row, on every claim: 32 ms instead of 0.8 ms at 10,000 ready rows, growing with
        the backlog.

        synchronous_commit = off (this connection only, and it never goes back to the pool),
        unless `durable_claims` ([delayed] durable_claims): a claim no longer waits for its WAL
        flush (an fsync: a third of the start latency of a job on an idle worker). What a
        database server crash can undo is at most the last fraction of a second of claims:
        those rows are unlocked again while the worker that claimed them may still be running
        them, so such a job may run concurrently with itself after a database crash (never
        lost: enqueues and completions keep synchronous commits).
        """
        if self._pooled:  # the settings are made per claim, with SET LOCAL (see claim)
            self._claim_settings = self._settings_sql("SET LOCAL", durable_claims)
            return self.engine.connect()
        conn = super().connect()
        conn.detach()
        try:
            conn.exec_driver_sql(self._settings_sql("SET", durable_claims))
        except Exception:
            conn.invalidate()
            conn.close()
            raise
        return conn

    @staticmethod
    def _settings_sql(verb: str, durable_claims: bool) -> str:
        sync = "on" if durable_claims else "off"
        return f"{verb} enable_sort = off; {verb} synchronous_commit = {sync}"

    _claim_settings = "SET LOCAL enable_sort = off; SET LOCAL synchronous_commit = off"

    def missing(self, exc: BaseException) -> str | None:
        orig = getattr(exc, "orig", None) or exc
        state = getattr(orig, "sqlstate", None)
        if state == "42P01":  # undefined_table
            return "table"
        # invalid_catalog_name; at connect time psycopg has only the server's message
        if state == "3D000" or _NO_DATABASE.search(str(orig)):
            return "database"
        return None

    @staticmethod
    def _claim_key(flt: ClaimFilter) -> tuple[bool, bool, bool, int]:
        names = 0 if not flt.names else (2 if flt.exclude_names else 1)
        return (bool(flt.queues), flt.min_priority is not None, flt.max_priority is not None, names)

    def _claim_statement(self, flt: ClaimFilter) -> Any:
        key = self._claim_key(flt)
        statement = self._claim_sql.get(key)
        if statement is None:
            name = self._quoted_table()
            filters = ""
            if key[0]:
                filters += " AND queue = ANY(:queues)"
            if key[1]:
                filters += " AND priority >= :min_priority"
            if key[2]:
                filters += " AND priority <= :max_priority"
            if key[3] == 1:
                filters += " AND name = ANY(:names)"
            elif key[3] == 2:
                filters += " AND name <> ALL(:names)"
            sql = (
                f"UPDATE {name} SET locked_at = :now, locked_by = :worker "
                f"WHERE id = ANY(ARRAY(SELECT id FROM {name} "
                "WHERE failed_at IS NULL AND finished_at IS NULL AND run_at <= :now "
                f"AND (locked_at IS NULL OR locked_at < :stale){filters} "
                f"AND (concurrency_key IS NULL OR {self._live_leases_sql()} < concurrency_limit) "
                "ORDER BY priority, run_at, id LIMIT :limit FOR UPDATE SKIP LOCKED)) "
                f"RETURNING {RECORD_COLUMNS}"
            )
            # The same text for the driver itself (the worker's claim connection uses it).
            self._claim_raw[key] = re.sub(
                r":(now|stale|worker|limit|queues|min_priority|max_priority|names)\b",
                r"%(\1)s",
                sql.replace("%", "%%"),
            )
            statement = sa.text(sql).bindparams(
                sa.bindparam("now", type_=sa.DateTime()),
                sa.bindparam("stale", type_=sa.DateTime()),
            )
            if key[0]:
                statement = statement.bindparams(sa.bindparam("queues", type_=ARRAY(sa.String)))
            if key[3]:
                statement = statement.bindparams(sa.bindparam("names", type_=ARRAY(sa.String)))
            self._claim_sql[key] = statement
        return statement

    def claim_rows(
        self,
        conn: Connection,
        worker_name: str,
        limit: int,
        flt: ClaimFilter,
        lock_timeout: float,
        read_ahead: int,
    ) -> list[JobRecord]:
        now = utcnow()
        params: dict[str, Any] = {
            "now": now,
            "stale": now - timedelta(seconds=lock_timeout),
            "worker": worker_name,
            "limit": limit,
        }
        if flt.queues:
            params["queues"] = list(flt.queues)
        if flt.min_priority is not None:
            params["min_priority"] = flt.min_priority
        if flt.max_priority is not None:
            params["max_priority"] = flt.max_priority
        if flt.names:
            params["names"] = list(flt.names)
        statement = self._claim_statement(flt)
        driver = conn.connection.dbapi_connection
        if self._direct and driver.autocommit:
            # The worker's claim connection (autocommit): straight to the driver, a prepared
            # statement, rows as tuples in JobRecord's field order. Through SQLAlchemy the
            # result set-up and mapping cost more Python than the rest of the claim.
            sql = self._claim_raw[self._claim_key(flt)]
            try:
                with driver.cursor() as cursor:
                    cursor.execute(sql, params, prepare=self._prepare)
                    rows = cursor.fetchall()
            except self.engine.dialect.loaded_dbapi.Error as exc:
                raise sa.exc.DBAPIError.instance(
                    sql, None, exc, self.engine.dialect.loaded_dbapi.Error, dialect=self.engine.dialect
                ) from exc
            records = [JobRecord(*row) for row in rows]
        elif self._pooled and not conn.in_transaction():
            # Transaction pooling: the claim's settings hold for its own transaction only.
            with conn.begin():
                conn.exec_driver_sql(self._claim_settings)
                records = [JobRecord.from_mapping(row) for row in conn.execute(statement, params).mappings()]
        else:  # a caller's connection: SQLAlchemy keeps track of its transaction
            records = [JobRecord.from_mapping(row) for row in conn.execute(statement, params).mappings()]
        records.sort(key=_pickup_order)  # RETURNING has no order
        return records

    def complete(self, conn: Connection, outcomes: Sequence[Outcome]) -> None:
        """Successes of one worker (nearly every batch): one DELETE in autocommit, one round trip.

        One statement is atomic by itself, so BEGIN and COMMIT (two more round trips per
        batch) buy nothing. Anything else (retries, failures, several workers' outcomes)
        goes through the transactional path.
        """
        if not outcomes or not self._direct or conn.in_transaction():
            return super().complete(conn, outcomes)
        locked_by = outcomes[0].locked_by
        for outcome in outcomes:
            if outcome.kind != "delete" or outcome.locked_by != locked_by:
                return super().complete(conn, outcomes)
        ids = [outcome.id for outcome in outcomes]
        sql = self._delete_sql(leased=any(outcome.leased for outcome in outcomes))
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        driver = conn.connection.dbapi_connection
        was_autocommit = driver.autocommit
        try:
            driver.autocommit = True
            with driver.cursor() as cursor:
                cursor.execute(sql, {"ids": ids, "locked_by": locked_by}, prepare=self._prepare)
            driver.autocommit = was_autocommit
        except dbapi_error as exc:
            if not driver.broken:
                with contextlib.suppress(Exception):
                    driver.autocommit = was_autocommit
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, dbapi_error, connection_invalidated=driver.broken, dialect=self.engine.dialect
            ) from exc

    def _delete_sql(self, leased: bool = False) -> str:
        """The successes' DELETE; with leases (rows that had a concurrency key) the same
        statement deletes their leases too, still one atomic statement."""
        cache_key = "delete+leases" if leased else "delete"
        sql = self._insert_text.get(cache_key)
        if sql is None:
            name = self._quoted_table().replace("%", "%%")  # psycopg's placeholders
            sql = f"DELETE FROM {name} WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(locked_by)s"
            if leased:
                leases = self._quoted_table(self.leases).replace("%", "%%")
                gone = "SELECT id FROM gone"
                sql = f"WITH gone AS ({sql} RETURNING id) DELETE FROM {leases} WHERE job_id IN ({gone})"
            self._insert_text[cache_key] = sql
        return sql

    def _live_leases_sql(self) -> str:
        """The claim's count of live leases of the outer row's key (see Backend.live_leases)."""
        name = self._quoted_table()
        leases = self._quoted_table(self.leases)
        return (
            f"(SELECT count(*) FROM {leases} l JOIN {name} held ON held.id = l.job_id "
            f"AND held.locked_by = l.locked_by WHERE l.concurrency_key = {name}.concurrency_key "
            "AND held.locked_at >= :stale)"
        )

    def _lock_id(self, key: str) -> int:
        digest = hashlib.sha256(f"{self.table.name}\0{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _admit(
        self, claim_conn: Connection, records: list[JobRecord], worker_name: str, lock_timeout: float
    ) -> list[JobRecord]:
        """Backend._admit in one transaction of two statements, whatever the number of keys:
        the keys' advisory locks (sorted, so two claims never wait on each other), then one
        statement that counts each key's live leases, grants leases to the rows that fit (in
        pickup order), replaces their dead leases, drops the keys' other dead leases and
        gives the rows that did not fit back. The count runs after the locks, in a snapshot
        that sees every lease committed before them (READ COMMITTED)."""
        keyed = [r for r in records if r.concurrency_key is not None]
        if not keyed:
            return records
        now = utcnow()
        keys = sorted({r.concurrency_key for r in keyed if r.concurrency_key is not None})
        params = {
            "locks": [self._lock_id(key) for key in keys],
            "ids": [r.id for r in keyed],
            "keys": [r.concurrency_key for r in keyed],
            "limits": [r.concurrency_limit or 1 for r in keyed],
            "worker": worker_name,
            "now": now,
            "stale": now - timedelta(seconds=lock_timeout),
        }
        driver = claim_conn.connection.dbapi_connection
        if self._direct and driver.autocommit:
            granted = self._admit_direct(driver, params)
        else:
            with self.write_connection() as conn, conn.begin():
                conn.exec_driver_sql(_LOCK_KEYS, params)
                granted = {int(row[0]) for row in conn.exec_driver_sql(self._admit_sql(), params)}
        return [r for r in records if r.concurrency_key is None or r.id in granted]

    def _admit_direct(self, driver: Any, params: dict[str, Any]) -> set[int]:
        """On the worker's claim connection (autocommit, psycopg): BEGIN, the locks, the grant,
        COMMIT. The grant's snapshot is taken after the locks are held. Its commit waits for
        no WAL flush unless durable_claims (the connection's synchronous_commit): a database
        crash can undo recent leases only together with the claims they belong to."""
        sql = self._admit_sql()
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            if _pipeline_supported():  # all four in one round trip; the server runs them in order
                with driver.pipeline():
                    driver.execute("BEGIN")
                    driver.execute("SET LOCAL enable_sort = on")
                    driver.execute(_LOCK_KEYS, params, prepare=True)
                    cursor = driver.execute(sql, params, prepare=True)
                    driver.execute("COMMIT")
                return {int(row[0]) for row in cursor.fetchall()}
            with driver.cursor() as cursor:
                cursor.execute("BEGIN; SET LOCAL enable_sort = on")
                cursor.execute(_LOCK_KEYS, params, prepare=True)
                cursor.execute(sql, params, prepare=True)
                granted = {int(row[0]) for row in cursor.fetchall()}
                cursor.execute("COMMIT")
            return granted
        except dbapi_error as exc:
            if not driver.broken:
                with contextlib.suppress(Exception):
                    driver.execute("ROLLBACK")
            raise sa.exc.DBAPIError.instance(
                sql, None, exc, dbapi_error, connection_invalidated=driver.broken, dialect=self.engine.dialect
            ) from exc

    def _admit_sql(self) -> str:
        sql = self._insert_text.get("admit")
        if sql is None:
            jobs = self._quoted_table().replace("%", "%%")
            leases = self._quoted_table(self.leases).replace("%", "%%")
            live = (
                f"FROM {leases} l JOIN {jobs} held ON held.id = l.job_id AND held.locked_by = l.locked_by "
                "WHERE l.concurrency_key = ANY(%(keys)s::varchar[]) AND l.job_id <> ALL(%(ids)s::bigint[])"
            )
            sql = (
                "WITH cand AS (SELECT * FROM unnest(%(ids)s::bigint[], %(keys)s::varchar[], "
                "%(limits)s::int[]) WITH ORDINALITY AS c(job_id, key, lim, ord)), "
                f"live AS (SELECT l.concurrency_key AS key, count(*) AS n {live} "
                "AND held.locked_at >= %(stale)s GROUP BY l.concurrency_key), "
                "ranked AS (SELECT c.job_id, c.key, c.lim, coalesce(live.n, 0) "
                "+ row_number() OVER (PARTITION BY c.key ORDER BY c.ord) AS nth "
                "FROM cand c LEFT JOIN live ON live.key = c.key), "
                f"dead AS (DELETE FROM {leases} d WHERE d.concurrency_key = ANY(%(keys)s::varchar[]) "
                f"AND d.job_id <> ALL(%(ids)s::bigint[]) AND NOT EXISTS (SELECT 1 FROM {jobs} h "
                "WHERE h.id = d.job_id AND h.locked_by = d.locked_by AND h.locked_at >= %(stale)s)), "
                f"granted AS (INSERT INTO {leases} (job_id, concurrency_key, locked_by, created_at) "
                "SELECT job_id, key, %(worker)s, %(now)s FROM ranked WHERE nth <= lim "
                "ON CONFLICT (job_id) DO UPDATE SET concurrency_key = EXCLUDED.concurrency_key, "
                "locked_by = EXCLUDED.locked_by, created_at = EXCLUDED.created_at RETURNING job_id), "
                f"back AS (UPDATE {jobs} SET locked_at = NULL, locked_by = NULL "
                "WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(worker)s "
                "AND id NOT IN (SELECT job_id FROM granted)) "
                "SELECT job_id FROM granted"
            )
            self._insert_text["admit"] = sql
        return sql

    def db_now_utc(self) -> Any:
        return sa.func.timezone("UTC", sa.func.statement_timestamp(), type_=sa.DateTime())

    # -- enqueue -----------------------------------------------------------------------
    def insert_or_skip_keyed(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> dict[str, tuple[int, bool]]:
        """The same unnest INSERT with `ON CONFLICT (unique_key) DO NOTHING RETURNING id,
        unique_key` (one statement per chunk): a taken key returns no row."""
        answered: dict[str, tuple[int, bool]] = {}
        for start in range(0, len(rows), _INSERT_CHUNK):
            sql, params = self._insert_many(rows[start : start + _INSERT_CHUNK])
            for job_id, key in conn.exec_driver_sql(sql, params):
                answered[key] = (int(job_id), True)
        return answered

    def _insert_plain(self, conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
        """One fixed SQL text for any number of rows: each column travels as one array.

        `INSERT ... SELECT ... FROM unnest(arrays) RETURNING id` is never compiled per call
        (SQLAlchemy compiled 8 bind parameters per row for a multi-row VALUES, which cost
        more than the insert itself) and psycopg reuses its parsed query.
        """
        if len(rows) == 1:
            result = conn.exec_driver_sql(self._insert_sql(self._single_shape(rows[0])), rows[0])
            return [int(result.scalar_one())]
        ids: list[int] = []
        for start in range(0, len(rows), _INSERT_CHUNK):
            sql, params = self._insert_many(rows[start : start + _INSERT_CHUNK])
            result = conn.exec_driver_sql(sql, params)
            # unnest() yields the rows in array order, and ids are drawn in that order.
            ids.extend(sorted(int(r[0]) for r in result))
        return ids

    def insert_now(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert and commit. Up to _PIPELINE_CHUNK rows are one statement in autocommit (no
        BEGIN/COMMIT round trips: one statement is atomic anyway); more, one transaction.

        It runs on the pooled psycopg connection itself: for a one-job enqueue (a round trip
        and a WAL flush) SQLAlchemy's per-statement machinery (isolation level switches, result
        set-up) was a fifth of the call. Errors are raised as SQLAlchemy's DBAPIError, and a
        lost connection is invalidated, exactly as through a Connection.
        """
        if has_unique(rows):
            if len(rows) == 1 and self._direct:
                return self._insert_one_unique(rows[0])
            return super().insert_now(rows)  # insert-or-skip, then the duplicates' ids: one transaction
        if not self._direct:
            if len(rows) > _INSERT_CHUNK:
                return super().insert_now(rows)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return self.insert(conn, rows)
        if len(rows) == 1:
            return self._insert_direct(
                [(self._insert_sql(self._single_shape(rows[0])), rows[0])], autocommit=True
            )
        if len(rows) <= _PIPELINE_CHUNK:
            return self._insert_direct([self._insert_many(rows)], autocommit=True)
        # Larger: one transaction of chunks sent in pipeline mode, so the server inserts one
        # chunk while this process builds the next one's arrays (2 cores: ~1.5x the rows/s).
        statements = (
            self._insert_many(rows[start : start + _PIPELINE_CHUNK])
            for start in range(0, len(rows), _PIPELINE_CHUNK)
        )
        return self._insert_direct(statements, autocommit=False)

    def _insert_one_unique(self, row: dict[str, Any]) -> EnqueueResult:
        """One unique job (`perform_later`): the insert-or-skip alone in autocommit, one round
        trip when the key is free; a taken key costs one read of the existing id. A row that
        finished between the two frees the key: offered again, a few times."""
        sql = self._insert_sql(self._single_shape(row))
        key = row["unique_key"]
        for _ in range(_UNIQUE_TRIES):
            ids = self._insert_direct([(sql, row)], autocommit=True)
            if ids:
                return EnqueueResult(ids, [False])
            with self.engine.connect() as conn:
                found = self.find_keys(conn, [key])
            if found:
                return EnqueueResult([found[key]], [True])
        raise EnqueueError(
            f"unique key {key!r} was taken and freed {_UNIQUE_TRIES} times in a row; try again"
        )

    def _insert_direct(self, statements: Iterable[tuple[str, Any]], autocommit: bool) -> list[int]:
        """Run INSERT ... RETURNING id statements on a pooled psycopg connection; ids in order.

        autocommit: a single statement, atomic by itself. Otherwise all of them in one
        transaction, pipelined when libpq supports it.
        """
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            fairy = self.engine.raw_connection()
        except dbapi_error as exc:  # cannot connect: raised as SQLAlchemy's engine.connect() would
            raise sa.exc.DBAPIError.instance(
                None, None, exc, dbapi_error, dialect=self.engine.dialect
            ) from exc
        driver = fairy.dbapi_connection
        sql = ""
        try:
            try:
                driver.autocommit = autocommit
                pipeline = (
                    driver.pipeline()
                    if not autocommit and _pipeline_supported()
                    else contextlib.nullcontext()
                )
                cursors = []
                with pipeline:
                    for sql, params in statements:
                        cursor = driver.cursor()
                        cursor.execute(sql, params)
                        cursors.append(cursor)
                ids: list[int] = []
                for cursor in cursors:
                    # unnest() yields the rows in array order, and ids are drawn in that order.
                    chunk_ids = [r[0] for r in cursor.fetchall()]
                    chunk_ids.sort()
                    ids.extend(chunk_ids)
                    cursor.close()
                if autocommit:
                    driver.autocommit = False
                else:
                    driver.commit()
            except dbapi_error as exc:
                raise self._dbapi_error(exc, fairy, sql) from exc
            except BaseException:
                if not driver.broken:
                    with contextlib.suppress(Exception):
                        driver.rollback()
                        driver.autocommit = False
                raise
            return ids
        finally:
            fairy.close()

    def _dbapi_error(self, exc: Exception, fairy: Any, sql: str) -> BaseException:
        """What SQLAlchemy would raise for `exc`; a lost connection leaves the pool."""
        dialect = self.engine.dialect
        driver = fairy.dbapi_connection
        lost = bool(driver is None or driver.broken or dialect.is_disconnect(exc, driver, None))
        if lost:
            fairy.invalidate(exc)
        else:
            with contextlib.suppress(Exception):
                if driver.autocommit:
                    driver.autocommit = False
                else:
                    driver.rollback()
        return sa.exc.DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect
        )

    def _insert_many(self, chunk: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        return insert_statement(self._quoted_table(), chunk)

    def upkeep_warnings(self) -> list[str]:
        """Autovacuum off, for the server or for the jobs table.

        Every finished job leaves a dead row; without vacuum the table and its pickup index
        keep them all, and each claim walks past more of them. Measured here (bench soak,
        1,200 jobs/s): ~750 MB in 11 minutes, and the workers fell behind after 4.
        """
        sql = sa.text(
            "SELECT current_setting('autovacuum'), "
            "(SELECT reloptions FROM pg_class WHERE oid = to_regclass(:name))"
        )
        with self.engine.connect() as conn:
            server, options = conn.execute(sql, {"name": self._quoted_table()}).one()
        warning = autovacuum_warning(server, options, self.table.name)
        return [warning] if warning else []

    def _quoted_table(self, table: sa.Table | None = None) -> str:
        """A table's name for SQL text (the jobs table by default), schema-qualified and quoted
        by SQLAlchemy (never by hand)."""
        return str(
            self.engine.dialect.identifier_preparer.format_table(table if table is not None else self.table)
        )

    @staticmethod
    def _single_shape(row: dict[str, Any]) -> str:
        """One row: "v" per column sent, "n" for an optional column left NULL (not sent)."""
        return single_shape(row)

    def _insert_sql(self, shape: str) -> str:
        return _insert_sql(self._quoted_table(), shape, True)

    def notify(self, conn: Connection) -> None:
        conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": notify_channel(self.table)})

    def insert_or_skip(self, table: sa.Table) -> Any:
        return pg_insert(table).on_conflict_do_nothing()

    def unique_insert(self, table: sa.Table) -> Any:
        return pg_insert(table).on_conflict_do_nothing(index_elements=[table.c.unique_key])
