"""The monitor's query time on a million-row PostgreSQL table, with EXPLAIN ANALYZE plans.

    python bench/monitor_million.py [--rows 1000000] [--admin-url postgresql+psycopg://postgres@127.0.0.1/test]

Makes a scratch database, fills delayed_jobs with INSERT ... SELECT generate_series (a mix
of workable, future, locked, stale-locked, erroring and failed rows over 40 priorities and
5 queues), VACUUM ANALYZEs it, times a few monitor passes and prints each query's plan, then
drops the database. Nothing is left behind.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

import sqlalchemy as sa

from delayed import schema
from delayed.config import build_config, set_config
from delayed.db import create_engine, reset_engine
from delayed.monitor import Monitor

FILL = """
INSERT INTO delayed_jobs (priority, attempts, handler, name, queue, run_at, locked_at, locked_by,
                          failed_at, created_at, updated_at)
SELECT g % 40,
       CASE WHEN g % 10 = 0 THEN 1 + g % 7 ELSE 0 END,
       '{"job":"bench.noop","args":[],"kwargs":{}}',
       'bench.noop',
       (ARRAY['default','mail','reports','billing','search'])[1 + g % 5],
       now_utc + make_interval(secs => CASE WHEN g % 5 = 0 THEN 600 + g % 3600 ELSE -(g % 7200) END),
       CASE WHEN g % 20 = 1 THEN now_utc - make_interval(secs => g % 120)
            WHEN g % 50 = 3 THEN now_utc - interval '2 hours' END,
       CASE WHEN g % 20 = 1 OR g % 50 = 3 THEN 'host:bench pid:1' END,
       CASE WHEN g % 10 = 7 THEN now_utc END,
       now_utc, now_utc
FROM generate_series(1, :rows) AS g,
     (SELECT TIMEZONE('UTC', now()) AS now_utc) AS clock
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument(
        "--covering",
        action="store_true",
        help="Also try the live index with INCLUDE (attempts), as the Ruby gem's index covers it.",
    )
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"pyd_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_engine(url)
        schema.migrate(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(FILL), {"rows": args.rows})
        print(f"filled {args.rows} rows in {time.perf_counter() - started:.1f}s")
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            if args.covering:
                conn.exec_driver_sql("DROP INDEX idx_delayed_jobs_live")
                conn.exec_driver_sql(
                    "CREATE INDEX idx_delayed_jobs_live ON delayed_jobs (priority, run_at, id, queue) "
                    "INCLUDE (attempts) WITH (fillfactor = 33) WHERE failed_at IS NULL"
                )
            conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
        engine.dispose()

        config = set_config(build_config(environ={}, overrides={"database_url": url}))
        monitor = Monitor(config)
        monitor.run_once()  # warm the cache and the connection
        times = []
        for _ in range(args.passes):
            started = time.perf_counter()
            metrics = monitor.run_once()
            times.append(time.perf_counter() - started)
        print(
            f"monitor pass ({len(metrics)} metrics): median {statistics.median(times) * 1000:.0f} ms, "
            f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {args.passes} passes"
        )
        backend = monitor.backend
        with backend.engine.connect() as conn:
            for label, query in monitor.queries(backend).items():
                compiled = query.compile(backend.engine)
                explain = f"EXPLAIN (ANALYZE, BUFFERS) {compiled}"
                plan = conn.exec_driver_sql(explain, compiled.params).scalars()
                print(f"\n--- {label} ---")
                print("\n".join(plan))
        reset_engine()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        print(f"dropped {name}")


if __name__ == "__main__":
    main()
