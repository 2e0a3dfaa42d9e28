"""The cost of keep_finished on drain throughput: the same no-op jobs, deleted vs kept.

    python bench/kept_results.py [--jobs 5000] [--threads 10] [--url URL]

Same run, same database, one worker each: `--jobs` no-op jobs whose row is deleted on success
(the default), then as many whose row is kept with its result (`keep_finished = "7d"`: an
UPDATE setting finished_at and result instead of a DELETE), then the first kind again drained
with those kept rows still in the table (pickup must not slow down: finished rows are out of
the pickup index), then again with the kept rows deleted (a control with the same table
history: dead tuples and index bloat, not the kept rows, slow the later drains down). Prints
jobs/s of each and the ratios to the first. Default database: PostgreSQL's `test`
database, in a scratch table `bench_kept_<hex>` (dropped at the end); `--url sqlite:///...`
or a MySQL URL for the others.
"""

from __future__ import annotations

import argparse
import time
import uuid

import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.config import build_config, set_config
from delayed.db import engine_for, reset_engine


class Deleted(delayed.Job, name="bench.kept.deleted"):
    def perform(self, i: int) -> int:
        return i


class Kept(delayed.Job, name="bench.kept.kept"):
    keep_finished = "7d"

    def perform(self, i: int) -> int:
        return i


def drain(job: type[delayed.Job], jobs: int, threads: int) -> float:
    delayed.enqueue_many([job.build(i) for i in range(jobs)])
    started = time.perf_counter()
    done = delayed.Worker(max_claims=threads, sleep_delay=0.05).work_off(jobs)
    elapsed = time.perf_counter() - started
    assert done == (jobs, 0), done
    return jobs / elapsed


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configured = f"bench_kept_{uuid.uuid4().hex[:8]}_jobs"
    set_config(build_config(environ={}, overrides={"database_url": args.url, "table_name": configured}))
    engine = engine_for(args.url)
    table = schema.get_table(configured)
    schema.migrate(engine, table)
    names = schema.TableNames.for_jobs(configured)
    try:
        deleted = drain(Deleted, args.jobs, args.threads)
        kept = drain(Kept, args.jobs, args.threads)
        after = drain(Deleted, args.jobs, args.threads)
        with engine.begin() as conn:
            left = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            conn.execute(table.delete())  # the control: the same table history, no kept rows
        control = drain(Deleted, args.jobs, args.threads)
    finally:
        with engine.begin() as conn:
            for name in (names.versions, names.cron_entries, names.cron_runs, names.jobs):
                conn.execute(sa.schema.DropTable(sa.Table(name, sa.MetaData()), if_exists=True))
            if engine.dialect.name == "postgresql":
                function = engine.dialect.identifier_preparer.quote(f"{names.jobs}_notify")
                conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}()")
        reset_engine()
    print(f"{engine.dialect.name}: {args.jobs} no-op jobs per drain, {args.threads} threads, one worker")
    rows = [
        ("deleted on success (default)", deleted),
        ("kept (keep_finished = 7d)", kept),
        (f"deleted, {left} kept rows in the table", after),
        ("deleted, kept rows removed (control)", control),
    ]
    for label, rate in rows:
        print(f"  {label:<42} {rate:8.0f} jobs/s   ratio {rate / deleted:.2f}")


if __name__ == "__main__":
    main()
