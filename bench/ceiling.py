"""The raw ceilings: what each database allows with no job system around it.

    ceiling.py pg DSN --connections 4 --batch 50        claim + delete loop (PostgreSQL)
    ceiling.py mysql URL --connections 4 --batch 50     claim + delete loop (MariaDB/MySQL)
    ceiling.py sqlite URL --connections 1 --batch 50    claim + delete loop (SQLite)
    ceiling.py insert DSN --count N                     INSERT + commit loop (single enqueue)
    ceiling.py copy DSN --count N                       one COPY of N rows + commit (bulk enqueue)

A claim loop runs `--connections` threads in this process, each looping "claim up to k ready
jobs, then delete them" on pydelayed's own table and indexes until a claim finds nothing. The
ready predicate is ours (`failed_at IS NULL AND finished_at IS NULL`, run_at, lock): without
`finished_at IS NULL` (since schema step 5) no database can use the pickup index for it, and
the "ceiling" fell below us (MariaDB: a filesort of every ready row per claim).
- pg: `UPDATE ... WHERE id = ANY(ARRAY(SELECT ... ORDER BY priority, run_at, id LIMIT k FOR
  UPDATE SKIP LOCKED)) RETURNING id` on a claim connection with `synchronous_commit = off` and
  `enable_sort = off` (as pydelayed's claim connection), then `DELETE ... WHERE id = ANY(ids)
  AND locked_by = me` on a second, durable connection (as pydelayed's completion);
- mysql: in one READ COMMITTED transaction `SELECT id ... FOR UPDATE SKIP LOCKED` then
  `UPDATE ... SET locked_at, locked_by WHERE id IN (...)`, then an autocommit DELETE; a
  deadlock or lock wait timeout is retried (and counted);
- sqlite: `UPDATE ... WHERE id IN (SELECT ... LIMIT k) RETURNING id` then DELETE, autocommit,
  WAL, busy_timeout 30 s, synchronous=NORMAL (the pragmas pydelayed sets).
The insert loop is one psycopg connection in autocommit mode: a prepared `INSERT INTO
delayed_jobs (...) VALUES (...) RETURNING id` per job, each its own durable transaction, with
the columns and handler text pydelayed writes for a no-argument job.
Prints READY when the threads start, and a JSON line of counters when they are done.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

READY_PG = (
    "failed_at IS NULL AND finished_at IS NULL AND run_at <= now() AT TIME ZONE 'utc' "
    "AND (locked_at IS NULL OR locked_at < now() AT TIME ZONE 'utc' - interval '1230 seconds')"
)
PG_CLAIM = (
    "UPDATE delayed_jobs SET locked_at = now() AT TIME ZONE 'utc', locked_by = %(me)s "
    f"WHERE id = ANY(ARRAY(SELECT id FROM delayed_jobs WHERE {READY_PG} "
    "ORDER BY priority, run_at, id LIMIT %(k)s FOR UPDATE SKIP LOCKED)) RETURNING id"
)
PG_DELETE = "DELETE FROM delayed_jobs WHERE id = ANY(%(ids)s) AND locked_by = %(me)s"

MYSQL_SELECT = (
    "SELECT id FROM delayed_jobs WHERE failed_at IS NULL AND finished_at IS NULL "
    "AND run_at <= UTC_TIMESTAMP(6) "
    "AND (locked_at IS NULL OR locked_at < UTC_TIMESTAMP(6) - INTERVAL 1230 SECOND) "
    "ORDER BY priority, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED"
)

SQLITE_CLAIM = (
    "UPDATE delayed_jobs SET locked_at = ?, locked_by = ? WHERE id IN (SELECT id FROM delayed_jobs "
    "WHERE failed_at IS NULL AND finished_at IS NULL AND run_at <= ? "
    "AND (locked_at IS NULL OR locked_at < ?) "
    "ORDER BY priority, run_at, id LIMIT ?) RETURNING id"
)

Counters = dict[str, int]


def pg_loop(dsn: str, batch: int, me: str, counters: Counters) -> None:
    import psycopg

    with (
        psycopg.connect(dsn, autocommit=True) as claim,
        psycopg.connect(dsn, autocommit=True) as done,
    ):
        claim.execute("SET synchronous_commit = off")
        claim.execute("SET enable_sort = off")
        params = {"me": me, "k": batch}
        while True:
            ids = [row[0] for row in claim.execute(PG_CLAIM, params, prepare=True)]
            counters["claims"] += 1
            if not ids:
                return
            done.execute(PG_DELETE, {"ids": ids, "me": me}, prepare=True)
            counters["jobs"] += len(ids)


def mysql_loop(url: str, batch: int, me: str, counters: Counters) -> None:
    import pymysql
    import sqlalchemy as sa

    u = sa.make_url(url)
    conn = pymysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=u.database,
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            while True:
                try:
                    cur.execute("BEGIN")
                    cur.execute(MYSQL_SELECT, (batch,))
                    ids = [row[0] for row in cur.fetchall()]
                    if ids:
                        marks = ",".join(["%s"] * len(ids))
                        cur.execute(
                            "UPDATE delayed_jobs SET locked_at = UTC_TIMESTAMP(6), locked_by = %s "
                            f"WHERE id IN ({marks})",
                            (me, *ids),
                        )
                    cur.execute("COMMIT")
                except pymysql.err.OperationalError as exc:
                    if exc.args[0] not in (1205, 1213):  # lock wait timeout, deadlock
                        raise
                    cur.execute("ROLLBACK")
                    counters["retries"] += 1
                    continue
                counters["claims"] += 1
                if not ids:
                    return
                marks = ",".join(["%s"] * len(ids))
                while True:  # an autocommit DELETE can deadlock too (with another's claim): again
                    try:
                        cur.execute(
                            f"DELETE FROM delayed_jobs WHERE id IN ({marks}) AND locked_by = %s", (*ids, me)
                        )
                        break
                    except pymysql.err.OperationalError as exc:
                        if exc.args[0] not in (1205, 1213):
                            raise
                        counters["retries"] += 1
                counters["jobs"] += len(ids)
    finally:
        conn.close()


def _sqlite_time(when: datetime) -> str:
    """The text SQLAlchemy stores a naive DateTime as in SQLite (so comparisons match)."""
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")


def sqlite_loop(url: str, batch: int, me: str, counters: Counters) -> None:
    import sqlite3

    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        while True:
            now = datetime.now(UTC).replace(tzinfo=None)
            stale = now - timedelta(seconds=1230)
            params = (_sqlite_time(now), me, _sqlite_time(now), _sqlite_time(stale), batch)
            ids = [row[0] for row in conn.execute(SQLITE_CLAIM, params).fetchall()]
            counters["claims"] += 1
            if not ids:
                return
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM delayed_jobs WHERE id IN ({marks}) AND locked_by = ?", (*ids, me))
            counters["jobs"] += len(ids)
    finally:
        conn.close()


LOOPS: dict[str, Callable[[str, int, str, Counters], None]] = {
    "pg": pg_loop,
    "mysql": mysql_loop,
    "sqlite": sqlite_loop,
}


def claim_loops(kind: str, target: str, connections: int, batch: int) -> Counters:
    """Run `connections` claim+delete loops in threads until the table is empty; sum counters."""
    per_thread: list[Counters] = [{"claims": 0, "jobs": 0, "retries": 0} for _ in range(connections)]
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            LOOPS[kind](target, batch, f"ceiling pid:{os.getpid()} t:{i}", per_thread[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(connections)]
    print("READY", flush=True)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return {key: sum(c[key] for c in per_thread) for key in per_thread[0]}


def handler_text() -> str:
    """pydelayed's handler for a no-argument bench.noop job (a fresh job_id each time)."""
    return json.dumps({"job": "bench.noop", "args": [], "kwargs": {}, "job_id": str(uuid.uuid4())})


def insert_loop(dsn: str, count: int) -> dict[str, Any]:
    """`count` single-row INSERTs, each its own durable transaction; seconds taken."""
    import psycopg

    sql = (
        "INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, name, created_at, "
        "updated_at) VALUES (%s, 0, %s, %s, 'default', 'bench.noop', %s, %s) RETURNING id"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT 1")
        start = time.perf_counter()
        for _ in range(count):
            now = datetime.now(UTC).replace(tzinfo=None)
            conn.execute(sql, (0, handler_text(), now, now, now), prepare=True).fetchone()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "count": count}


def copy_load(dsn: str, count: int) -> dict[str, Any]:
    """`count` rows, built before the timer, in one `COPY ... FROM STDIN` and one commit: the
    fastest way PostgreSQL takes rows into pydelayed's table (its heap, indexes and WAL), so
    the bulk enqueue's physical limit on this box. Seconds taken."""
    import psycopg

    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [(0, 0, handler_text(), now, "default", "bench.noop", now, now) for _ in range(count)]
    columns = "priority, attempts, handler, run_at, queue, name, created_at, updated_at"
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(f"COPY delayed_jobs ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "count": count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("kind", choices=[*LOOPS, "insert", "copy"])
    parser.add_argument("target", help="libpq DSN (pg, insert) or SQLAlchemy URL (mysql, sqlite)")
    parser.add_argument("--connections", type=int, default=4, help="threads, each with its connection(s)")
    parser.add_argument("--batch", type=int, default=50, help="jobs per claim statement")
    parser.add_argument("--count", type=int, default=1000, help="rows to insert (insert, copy)")
    args = parser.parse_args(argv)
    if args.kind == "insert":
        print(json.dumps(insert_loop(args.target, args.count)), flush=True)
        return 0
    if args.kind == "copy":
        print(json.dumps(copy_load(args.target, args.count)), flush=True)
        return 0
    counters = claim_loops(args.kind, args.target, args.connections, args.batch)
    print(json.dumps(counters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
