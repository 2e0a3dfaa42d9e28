"""Async jobs: 1,000 jobs that each wait 50 ms, drained by one worker process.

    python bench/async_drain.py [--jobs 1000] [--nap 0.05] [--url sqlite:///...]

Ours: `async def perform` jobs (`await asyncio.sleep(nap)`) on the worker's event loop with
`max_async_claims = 100`. The comparison, same run and database: the same jobs as plain
`def perform` (`time.sleep(nap)`) on `max_claims = 10` job threads, what the job would cost
without async support. Prints both drain times, jobs/s and the ratio. The default database is
a scratch SQLite file (made and removed here); `--url` takes any database (a scratch table
`bench_async_<hex>` is made there and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.config import build_config, set_config
from delayed.db import engine_for, reset_engine


class AsyncNap(delayed.Job, name="bench.async.nap"):
    async def perform(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ThreadNap(delayed.Job, name="bench.async.thread_nap"):
    def perform(self, seconds: float) -> None:
        time.sleep(seconds)


def drain(job: type[delayed.Job], jobs: int, nap: float, **worker: int) -> float:
    delayed.enqueue_many([job.build(nap) for _ in range(jobs)])
    started = time.perf_counter()
    done = delayed.Worker(sleep_delay=0.05, **worker).work_off(jobs)
    elapsed = time.perf_counter() - started
    assert done == (jobs, 0), done
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nap", type=float, default=0.05)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory() if args.url is None else None
    url = args.url or f"sqlite:///{Path(scratch.name) / 'bench.sqlite3'}"  # type: ignore[union-attr]
    table_name = f"bench_async_{uuid.uuid4().hex[:8]}"
    set_config(build_config(environ={}, overrides={"database_url": url, "table_name": table_name}))
    engine = engine_for(url)
    table = schema.get_table(table_name)
    schema.migrate(engine, table)
    try:
        ours = drain(AsyncNap, args.jobs, args.nap, max_claims=10, max_async_claims=100)
        theirs = drain(ThreadNap, args.jobs, args.nap, max_claims=10)
    finally:
        with engine.begin() as conn:
            for name in reversed(sa.inspect(conn).get_table_names()):
                if name.startswith(table_name):
                    conn.execute(sa.text(f"DROP TABLE {engine.dialect.identifier_preparer.quote(name)}"))
        reset_engine()
        if scratch is not None:
            scratch.cleanup()
    print(f"{engine.dialect.name}: {args.jobs} jobs x {args.nap:g} s wait")
    print(f"  ours   async def, max_async_claims=100: {ours:6.2f} s  {args.jobs / ours:7.0f} jobs/s")
    print(f"  threads def + time.sleep, max_claims=10: {theirs:6.2f} s  {args.jobs / theirs:7.0f} jobs/s")
    print(f"  ratio  {theirs / ours:.1f}x faster with async")


if __name__ == "__main__":
    main()
