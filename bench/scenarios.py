"""The measurements: each takes a system and sizes, runs in its own scratch database, returns figures.

These are the building blocks; the scenarios that `run.py --scenarios` names (and that print
tables) are in suite/ and call these.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from harness import (
    BENCH,
    OURS_PROGRESS,
    ProbeCollector,
    Scratch,
    System,
    Workers,
    claim_scans,
    count,
    median,
    percentile,
    scratch_database,
    settled_claim_scans,
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


def drain(
    system: System,
    backend: str,
    n: int,
    workers: int,
    threads: int,
    timeout: float,
    hosts: int = 1,
) -> dict[str, Any]:
    """Enqueue n no-op jobs in bulk, start the workers, time until the table is empty.

    For ours on PostgreSQL also counts claim statements (scans of the pickup index, read once
    the workers have stopped), so claims/s and jobs per claim come with the rate.
    """
    with scratch_database(backend) as db:
        target = db.url if system.ours else db.dsn
        system.run_driver("setup", target)
        bulk = json.loads(system.run_driver("enqueue", target, "--mode", "bulk", "--count", str(n)))
        engine = _engine(db)
        try:
            if count(engine, system.progress_sql) != n:
                raise RuntimeError(f"{system.name}: expected {n} ready jobs before the drain")
            scans_before = claim_scans(engine) if system.ours else None
            procs = Workers.spawn(
                system.worker_commands(db, workers, threads, exit_on_complete=True, hosts=hosts),
                system.env(),
            )
            try:
                result = watch_drain(engine, system.progress_sql, procs, timeout)
            finally:
                procs.stop()
            if system.failed_sql:
                result["failed"] = count(engine, system.failed_sql)
            if scans_before is not None:
                _add_claims(result, scans_before, settled_claim_scans(engine))
        finally:
            engine.dispose()
    result["bulk_rate"] = n / bulk["seconds"]
    result["workers"], result["threads"], result["hosts"] = workers, threads, hosts
    return result


def _add_claims(result: dict[str, Any], before: int | None, after: int | None) -> None:
    """claims, claims/s over the drain span and jobs per claim, from two pickup-index counts."""
    if before is None or after is None:
        return
    claims = after - before
    result["claims"] = claims
    result["claims_per_s"] = claims / result["span_s"]
    result["jobs_per_claim"] = (result["jobs"] or 0) / claims if claims else None


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


@dataclass(frozen=True)
class Ceiling:
    """One raw claim+delete loop: backend, processes x connections, jobs per claim statement."""

    backend: str
    processes: int
    connections: int
    batch: int

    @property
    def label(self) -> str:
        short = {"postgresql": "pg", "mysql": "mariadb", "sqlite": "sqlite"}[self.backend]
        return f"ceiling {short} x{self.batch} ({self.processes}x{self.connections})"


def ceiling(spec: Ceiling, ours: System, n: int, timeout: float) -> dict[str, Any]:
    """The raw claim + delete loop of ceiling.py on pydelayed's table, filled by pydelayed.

    The jobs are enqueued by ours_driver (`enqueue_many`), so the loop meets exactly the rows
    and indexes our drain meets; the rate is watched from outside like every drain.
    """
    kind = {"postgresql": "pg", "mysql": "mysql", "sqlite": "sqlite"}[spec.backend]
    with scratch_database(spec.backend) as db:
        ours.run_driver("setup", db.url)
        ours.run_driver("enqueue", db.url, "--mode", "bulk", "--count", str(n))
        engine = _engine(db)
        try:
            if spec.backend == "postgresql":
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("ANALYZE delayed_jobs")
            target = db.dsn if kind == "pg" else db.url
            cmd = [
                sys.executable,
                str(BENCH / "ceiling.py"),
                kind,
                target,
                "--connections",
                str(spec.connections),
                "--batch",
                str(spec.batch),
            ]
            procs = Workers.spawn([cmd] * spec.processes, {**os.environ})
            try:
                result = watch_drain(engine, OURS_PROGRESS, procs, timeout)
                procs.wait_exit(10)
                counters = procs.json_lines()
            finally:
                procs.stop()
        finally:
            engine.dispose()
    claims = sum(c.get("claims", 0) for c in counters)
    result["claims"] = claims
    result["claims_per_s"] = claims / result["span_s"]
    result["retries"] = sum(c.get("retries", 0) for c in counters)
    result["spec"] = spec.__dict__
    return result


def insert_ceiling(n: int, kind: str = "insert") -> dict[str, Any]:
    """Raw psycopg into pydelayed's table, jobs/s: `insert`, a single-row INSERT + commit
    loop (single enqueue's ceiling); `copy`, one COPY of n pre-built rows (bulk's)."""
    from delayed import schema

    with scratch_database("postgresql") as db:
        engine = _engine(db)
        try:
            schema.migrate(engine)
        finally:
            engine.dispose()
        done = subprocess.run(
            [sys.executable, str(BENCH / "ceiling.py"), kind, db.dsn, "--count", str(n)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ceiling.py {kind} failed ({done.returncode}): {done.stderr[-2000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rate": out["count"] / out["seconds"], "n": out["count"], "seconds": out["seconds"]}


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
