"""The scenarios: each takes a system and sizes, runs in its own scratch database, returns figures."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import sqlalchemy as sa
from harness import (
    BENCH,
    ProbeCollector,
    Scratch,
    System,
    Workers,
    count,
    median,
    percentile,
    scratch_database,
    watch_drain,
)


def _engine(db: Scratch) -> sa.Engine:
    from delayed.db import create_engine

    return create_engine(db.url, poolclass=sa.pool.NullPool)


def enqueue(system: System, backend: str, n_single: int, n_bulk: int) -> dict[str, Any]:
    """Jobs/s enqueued one per call (each its own transaction), then in bulk."""
    with scratch_database(backend) as db:
        system.run_driver("setup", db.dsn if not system.ours else db.url)
        target = db.url if system.ours else db.dsn
        single = json.loads(
            system.run_driver("enqueue", target, "--mode", "single", "--count", str(n_single))
        )
        bulk = json.loads(system.run_driver("enqueue", target, "--mode", "bulk", "--count", str(n_bulk)))
    return {
        "single_rate": single["count"] / single["seconds"],
        "bulk_rate": bulk["count"] / bulk["seconds"],
        "single_n": n_single,
        "bulk_n": n_bulk,
    }


def drain(system: System, backend: str, n: int, workers: int, threads: int, timeout: float) -> dict[str, Any]:
    """Enqueue n no-op jobs in bulk, start the workers, time until the table is empty."""
    with scratch_database(backend) as db:
        target = db.url if system.ours else db.dsn
        system.run_driver("setup", target)
        bulk = json.loads(system.run_driver("enqueue", target, "--mode", "bulk", "--count", str(n)))
        engine = _engine(db)
        try:
            if count(engine, system.remaining_sql) != n:
                raise RuntimeError(f"{system.name}: expected {n} ready jobs before the drain")
            procs = Workers.spawn(
                system.worker_commands(db, workers, threads, exit_on_complete=True), system.env()
            )
            try:
                result = watch_drain(engine, system.remaining_sql, procs, timeout)
            finally:
                procs.stop()
            if system.failed_sql:
                result["failed"] = count(engine, system.failed_sql)
        finally:
            engine.dispose()
    result["bulk_rate"] = n / bulk["seconds"]
    return result


def latency(
    system: System, workers: int, threads: int, n: int, warmup: int, interval: float
) -> dict[str, Any]:
    """Idle workers; probe jobs enqueued one at a time; start of perform - enqueue call."""
    collector = ProbeCollector()
    try:
        with scratch_database("postgresql") as db:
            target = db.url if system.ours else db.dsn
            system.run_driver("setup", target)
            cmds = system.worker_commands(db, workers, threads, exit_on_complete=False)
            procs = Workers.spawn(cmds, system.env(collector.port))
            try:
                procs.wait_ready(system.ready_marker())
                time.sleep(2.0)  # let every worker reach its idle wait (LISTEN, first poll)
                system.run_driver("probe", target, "--count", str(warmup), "--interval", "0.05")
                collector.wait_for(warmup, 30)
                time.sleep(0.5)
                idle = procs.rss_mb()
                collector.seen.clear()
                system.run_driver("probe", target, "--count", str(n), "--interval", str(interval))
                collector.wait_for(n, 30)
            finally:
                procs.stop()
    finally:
        collector.close()
    samples = [(start - enq) * 1000 for enq, start in collector.seen.values()]
    return {
        "n": n,
        "received": len(samples),
        "p50_ms": percentile(samples, 0.50),
        "p90_ms": percentile(samples, 0.90),
        "p99_ms": percentile(samples, 0.99),
        "max_ms": max(samples, default=float("nan")),
        "samples_ms": [round(x, 3) for _, x in sorted(zip(collector.seen, samples, strict=True))],
        "rss_idle_mb": max(idle["main"], default=None),
        "rss_idle_children_mb": max(idle["children"], default=None),
        "rss_idle_all": idle,
    }


def fill_sql(n: int, failed: bool = False) -> str:
    """INSERT n rows shaped like pydelayed's (ready, or failed with priority 0 and a last_error)."""
    handler = '{"job":"bench.noop","args":[],"kwargs":{},"job_id":"00000000-0000-0000-0000-000000000000"}'
    utc = "now() AT TIME ZONE 'utc'"
    if failed:
        return (
            "INSERT INTO delayed_jobs (priority, attempts, handler, last_error, run_at, failed_at, "
            "queue, name, created_at, updated_at) SELECT 0, 25, "
            f"'{handler}', repeat('RuntimeError: boom ', 25), {utc} - interval '2 days', {utc}, "
            f"'default', 'bench.noop', now(), now() FROM generate_series(1, {n})"
        )
    return (
        "INSERT INTO delayed_jobs (priority, attempts, handler, run_at, queue, name, created_at, updated_at) "
        f"SELECT 10, 0, '{handler}', {utc} - interval '1 hour' + g * interval '1 microsecond', "
        f"'default', 'bench.noop', now(), now() FROM generate_series(1, {n}) g"
    )


def ceiling(workers: int, threads: int, batch: int, n: int, timeout: float) -> dict[str, Any]:
    """Raw claim + delete with SKIP LOCKED on pydelayed's table, `batch` jobs per statement."""
    from delayed import schema

    with scratch_database("postgresql") as db:
        engine = _engine(db)
        try:
            schema.migrate(engine)
            with engine.begin() as conn:
                conn.exec_driver_sql(fill_sql(n))
                conn.exec_driver_sql("ANALYZE delayed_jobs")
            cmd = [
                sys.executable,
                str(BENCH / "ceiling.py"),
                db.dsn,
                "--threads",
                str(threads),
                "--batch",
                str(batch),
            ]
            procs = Workers.spawn([cmd] * workers, {})
            try:
                result = watch_drain(engine, "SELECT count(*) FROM delayed_jobs", procs, timeout)
            finally:
                procs.stop()
        finally:
            engine.dispose()
    return result


def pickup(size: int, failed: int, claims: int, limit: int) -> dict[str, Any]:
    """Time our claim (limit jobs) on `size` ready + `failed` failed rows; its plan.

    Measured twice: right after the bulk load, before any ANALYZE (a burst into a table whose
    statistics say it is nearly empty: autovacuum has not caught up), then after VACUUM ANALYZE.
    Each claim is followed by deleting what it took (as workers do), outside the timing.
    """
    from delayed import schema
    from delayed.backends import ClaimFilter, backend_for

    with scratch_database("postgresql") as db:
        engine = _engine(db)
        try:
            schema.migrate(engine)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE delayed_jobs")  # statistics of an empty table
            with engine.begin() as conn:
                conn.exec_driver_sql(fill_sql(failed, failed=True))
                conn.exec_driver_sql(fill_sql(size))
            backend = backend_for(engine, schema.jobs)
            flt = ClaimFilter()
            stale = _time_claims(backend, engine, flt, claims, limit)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
            analyzed = _time_claims(backend, engine, flt, claims, limit)
        finally:
            engine.dispose()
    return {
        "size": size,
        "failed": failed,
        "claims": claims,
        "limit": limit,
        "median_ms": stale["median_ms"],
        "p99_ms": stale["p99_ms"],
        "plan": stale["plan"],
        "analyzed_median_ms": analyzed["median_ms"],
        "analyzed_p99_ms": analyzed["p99_ms"],
        "analyzed_plan": analyzed["plan"],
    }


def _time_claims(backend: Any, engine: sa.Engine, flt: Any, claims: int, limit: int) -> dict[str, Any]:
    from delayed.backends import Outcome

    times: list[float] = []
    claim_conn = backend.connect()  # the worker's own claim connection (its settings included)
    done_conn = engine.connect()
    try:
        for i in range(claims + 20):
            start = time.perf_counter()
            jobs = backend.claim(claim_conn, "bench", limit, flt, 1230.0, limit)
            elapsed = time.perf_counter() - start
            if i >= 20:  # the first claims warm the caches
                times.append(elapsed * 1000)
            backend.complete(done_conn, [Outcome("delete", j.id, "bench") for j in jobs])
        plan = explain_claim(claim_conn, backend, flt, limit)
    finally:
        claim_conn.close()
        done_conn.close()
    return {"median_ms": median(times), "p99_ms": percentile(times, 0.99), "plan": plan}


def explain_claim(conn: sa.Connection, backend: Any, flt: Any, limit: int) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the claim on the claim connection, rolled back afterwards."""
    from datetime import timedelta

    from delayed.timeutil import utcnow

    statement = backend._claim_statement(flt)
    now = utcnow()
    params = {"now": now, "stale": now - timedelta(seconds=1230), "worker": "explain", "limit": limit}
    explain = sa.text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement.text).bindparams(
        sa.bindparam("now", type_=sa.DateTime()), sa.bindparam("stale", type_=sa.DateTime())
    )
    conn.exec_driver_sql("BEGIN")  # the claim connection is in autocommit mode
    try:
        lines = [row[0] for row in conn.execute(explain, params)]
    finally:
        conn.exec_driver_sql("ROLLBACK")
    return "\n".join(lines)
