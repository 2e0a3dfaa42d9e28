"""The soak: steady mixed load on PostgreSQL for a while; latency, table size and correctness.

1. Capacity, just before: `capacity_jobs` bench.soak jobs enqueued at once, then the workers
   (W x C, under the supervisor unless told otherwise) drain them: jobs/s for this job kind on
   this box right now. The workers keep running for the soak.
2. Load: soak_load.py enqueues at half that rate for `seconds` (1% fail once and retry, 10%
   scheduled 1-20 s ahead, one 2-second job every 10 s, the rest at once); every
   `sample_every` s the harness records the jobs table's size (pg_total_relation_size, heap,
   indexes), live/dead tuples, autovacuum runs and the backlog.
3. Tail: once the load stops, wait until every job is done (scheduled ones and retries too).
Autovacuum: the soak measures what a production server does, and PostgreSQL's default is
autovacuum on. A server with it off (this project's CI machines set `autovacuum = off`) keeps
every dead row of a queue table: in the first dated run the table grew to ~750 MB in 11 minutes,
the claims slowed and the workers fell behind after 4 minutes. So with `autovacuum="on"` (run.py's
default except in --smoke) a server that has it off gets it on for the soak only (`ALTER SYSTEM
SET autovacuum = on`, reload), and back as it was afterwards; the JSON records both.
4. Check: each job recorded its token in soak_runs when it really ran: a token missing is a
   lost job, a token twice is a job run twice; no row may be left or failed.
Start latency = the job's t_start - t_enqueue (jobs due at once, per bucket of `bucket` s
by enqueue time: p50/p99/max in SQL); scheduled jobs' lateness = t_start - t_due, apart.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from harness import BENCH, OURS_PROGRESS, System, Workers, scratch_database, watch_drain

SIZE_SQL = (
    "SELECT pg_total_relation_size('delayed_jobs'), pg_relation_size('delayed_jobs'), "
    "pg_indexes_size('delayed_jobs'), s.n_live_tup, s.n_dead_tup, s.autovacuum_count, "
    "(SELECT count(*) FROM delayed_jobs) FROM pg_stat_user_tables s WHERE s.relname = 'delayed_jobs'"
)
BUCKETS_SQL = """
SELECT floor((t_enqueue - :t0) / :bucket)::int AS b, count(*),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t_start - t_enqueue) * 1000,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY t_start - t_enqueue) * 1000,
       max(t_start - t_enqueue) * 1000
FROM soak_runs WHERE token >= 0 AND kind IN ('now', 'long') GROUP BY 1 ORDER BY 1
"""
LATE_SQL = """
SELECT floor((t_enqueue - :t0) / :bucket)::int AS b, count(*),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY t_start - t_due) * 1000
FROM soak_runs WHERE token >= 0 AND kind = 'later' GROUP BY 1 ORDER BY 1
"""


class SizeSampler:
    """A thread that records the jobs table's size every `every` seconds until stopped."""

    def __init__(self, engine: sa.Engine, t0: float, every: float) -> None:
        self.engine, self.t0, self.every = engine, t0, every
        self.samples: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        with self.engine.connect() as conn:
            total, heap, indexes, live, dead, autovacuums, rows = conn.exec_driver_sql(SIZE_SQL).one()
        self.samples.append(
            {
                "t": round(time.time() - self.t0, 2),
                "total_mb": total / 2**20,
                "heap_mb": heap / 2**20,
                "indexes_mb": indexes / 2**20,
                "live_tup": live,
                "dead_tup": dead,
                "autovacuums": autovacuums,
                "rows": rows,
            }
        )

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sample()
            except Exception as exc:  # the soak goes on; the error is reported
                self.errors.append(repr(exc))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


AUTOVACUUM_SQL = "SELECT setting, coalesce(sourcefile, '') FROM pg_settings WHERE name = 'autovacuum'"


@contextlib.contextmanager
def server_autovacuum(engine: sa.Engine, wanted: str) -> Iterator[dict[str, str]]:
    """With wanted="on", autovacuum on for the block (if the server has it off), then restored.

    Yields what the server had and what the soak ran with. The setting is server-wide (a
    reload, no restart); only a setting this function made is undone, and one that came from
    postgresql.auto.conf is put back there.
    """
    with engine.connect() as conn:
        before, source = conn.exec_driver_sql(AUTOVACUUM_SQL).one()
    state = {"server": before, "during_soak": before}
    if wanted != "on" or before == "on":
        yield state
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("ALTER SYSTEM SET autovacuum = on")
        conn.exec_driver_sql("SELECT pg_reload_conf()")
    try:
        state["during_soak"] = _wait_for_autovacuum(engine, "on")
        print(f"   soak: autovacuum is {before} on this server; on for the soak", flush=True)
        yield state
    finally:
        with engine.connect() as conn:
            if source.endswith("postgresql.auto.conf"):
                conn.exec_driver_sql(f"ALTER SYSTEM SET autovacuum = {before}")
            else:
                conn.exec_driver_sql("ALTER SYSTEM RESET autovacuum")
            conn.exec_driver_sql("SELECT pg_reload_conf()")
        _wait_for_autovacuum(engine, before)


def _wait_for_autovacuum(engine: sa.Engine, value: str) -> str:
    """The reload is asynchronous: poll new sessions (up to 10 s) until they see `value`."""
    deadline = time.monotonic() + 10
    while True:
        with engine.connect() as conn:
            now = conn.exec_driver_sql("SHOW autovacuum").scalar_one()
        if now == value or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def _load_cmd(url: str, *args: str) -> list[str]:
    return [sys.executable, str(BENCH / "soak_load.py"), url, *args]


def _run_load(system: System, db_url: str, dsn: str, *args: str, timeout: float) -> dict[str, Any]:
    env = {**system.env(), "BENCH_SOAK_DSN": dsn}
    done = subprocess.run(_load_cmd(db_url, *args), capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"soak_load.py failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def soak(
    system: System,
    workers: int,
    threads: int,
    seconds: float,
    capacity_jobs: int,
    bucket: float,
    sample_every: float,
    timeout: float,
    autovacuum: str = "on",
) -> dict[str, Any]:
    """Run the soak described in the module docstring; figures and the correctness check."""
    import bench_jobs

    with scratch_database("postgresql") as db:
        system.run_driver("setup", db.url)
        engine = sa.create_engine(
            sa.make_url(db.url), poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        restore = contextlib.ExitStack()
        try:
            vacuum = restore.enter_context(server_autovacuum(engine, autovacuum))
            with engine.connect() as conn:
                for ddl in bench_jobs.SOAK_DDL:
                    conn.exec_driver_sql(ddl)
            env = {**system.env(), "BENCH_SOAK_DSN": db.dsn}
            # 1. capacity, with the same workers that then carry the soak
            _run_load(
                system,
                db.url,
                db.dsn,
                "--bulk",
                str(capacity_jobs),
                "--first-token",
                str(-capacity_jobs),
                timeout=600,
            )
            procs = Workers.spawn(system.worker_commands(db, workers, threads, exit_on_complete=False), env)
            try:
                capacity = watch_drain(engine, OURS_PROGRESS, procs, timeout)
                rate = capacity["rate"] / 2
                # 2. steady load, sizes sampled
                t0 = time.time()
                sampler = SizeSampler(engine, t0, sample_every)
                sampler.sample()
                try:
                    load = _run_load(
                        system,
                        db.url,
                        db.dsn,
                        "--rate",
                        f"{rate:.1f}",
                        "--seconds",
                        str(seconds),
                        "--max-wait",
                        str(max(1.5, min(20.0, seconds / 3))),
                        timeout=seconds + 600,
                    )
                    # 3. tail: scheduled jobs and retries
                    tail_start = time.time()
                    while _left(engine) > 0:
                        if time.time() - tail_start > timeout:
                            raise RuntimeError(f"soak: jobs left {timeout:.0f} s after the load stopped")
                        if not procs.alive():
                            raise RuntimeError(f"soak: workers exited:\n{procs.output()}")
                        time.sleep(0.2)
                    tail = time.time() - tail_start
                finally:
                    sampler.stop()
            finally:
                procs.stop()
            check = _check(engine, load)
            # time 0 is when the load began (soak_load.py's imports and connecting come first)
            shift = load["started_at"] - t0
            for sample in sampler.samples:
                sample["t"] = round(sample["t"] - shift, 2)
            buckets = _buckets(engine, load["started_at"], bucket)
        finally:
            try:
                restore.close()  # the server's autovacuum setting as it was
            finally:
                engine.dispose()
    return {
        "seconds": seconds,
        "bucket_s": bucket,
        "workers": workers,
        "threads": threads,
        "capacity_rate": capacity["rate"],
        "capacity_jobs": capacity_jobs,
        "target_rate": rate,
        "achieved_rate": load["enqueued"] / load["seconds"],
        "load": load,
        "tail_s": tail,
        "autovacuum": vacuum,
        "buckets": buckets["now"],
        "late_buckets": buckets["later"],
        "sizes": sampler.samples,
        "sampler_errors": sampler.errors,
        "size_growth_after_2min": _growth(sampler.samples, min(120.0, seconds / 5)),
        "worst_bucket_p99_ms": max((b["p99_ms"] for b in buckets["now"]), default=None),
        **check,
    }


def _left(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM delayed_jobs").scalar_one())


def _check(engine: sa.Engine, load: dict[str, Any]) -> dict[str, Any]:
    """Lost and duplicated jobs, rows left or failed, fail-once jobs that really failed once."""
    n = load["enqueued"]
    with engine.connect() as conn:
        runs, distinct, in_range = conn.execute(
            sa.text(
                "SELECT count(*), count(DISTINCT token), count(DISTINCT token) FILTER "
                "(WHERE token BETWEEN 0 AND :last) FROM soak_runs WHERE token >= 0"
            ),
            {"last": n - 1},
        ).one()
        left, failed = conn.exec_driver_sql(
            "SELECT count(*), count(*) FILTER (WHERE failed_at IS NOT NULL) FROM delayed_jobs"
        ).one()
        failed_once = conn.exec_driver_sql("SELECT count(*) FROM soak_failed WHERE token >= 0").scalar_one()
    result = {
        "enqueued": n,
        "ran": distinct,
        "lost": n - in_range,
        "duplicates": runs - distinct,
        "rows_left": left,
        "failed_rows": failed,
        "failed_once": failed_once,
        "fail_jobs": load["kinds"]["fail"],
    }
    result["correct"] = (
        result["lost"] == 0
        and result["duplicates"] == 0
        and distinct == in_range
        and left == 0
        and failed == 0
        and failed_once == result["fail_jobs"]
    )
    return result


def _buckets(engine: sa.Engine, t0: float, bucket: float) -> dict[str, list[dict[str, Any]]]:
    params = {"t0": t0, "bucket": bucket}
    with engine.connect() as conn:
        now = [
            {"t": b * bucket, "n": n, "p50_ms": p50, "p99_ms": p99, "max_ms": worst}
            for b, n, p50, p99, worst in conn.execute(sa.text(BUCKETS_SQL), params)
        ]
        later = [
            {"t": b * bucket, "n": n, "late_p99_ms": p99}
            for b, n, p99 in conn.execute(sa.text(LATE_SQL), params)
        ]
    return {"now": now, "later": later}


def _growth(samples: list[dict[str, Any]], after: float) -> float | None:
    """Largest total size after `after` s over the size at `after` s (1.0 = flat)."""
    base = next((s["total_mb"] for s in samples if s["t"] >= after), None)
    later = [s["total_mb"] for s in samples if s["t"] > after]
    if not base or not later:
        return None
    return max(later) / base
