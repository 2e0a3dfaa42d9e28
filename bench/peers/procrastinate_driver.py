"""procrastinate (psycopg connector): async no-op tasks, successful jobs deleted like ours.

Settings (see bench/README.md): `run_worker_async(concurrency=C,
delete_jobs="successful")` (ours deletes a finished job too; keeping them would make every
job an UPDATE plus a later purge), LISTEN/NOTIFY on (its default), a psycopg pool of C
connections (its default pool is psycopg_pool's 4, which would make 10 concurrent jobs wait
for a connection to fetch or finish), uvloop. BENCH_PROCRASTINATE_POOL overrides the pool size.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from _proto import Timer, emit, event_loop_name, parse, ready, run, send_probe
from procrastinate import App, PsycopgConnector


def settings(concurrency: int) -> dict[str, Any]:
    pool = int(os.environ.get("BENCH_PROCRASTINATE_POOL", str(concurrency)))
    return {
        "concurrency": concurrency,
        "delete_jobs": "successful",
        "listen_notify": True,
        "pool_min_size": min(pool, 4),
        "pool_max_size": pool,
        "event_loop": event_loop_name(),
    }


def make_app(dsn: str, chosen: dict[str, Any]) -> App:
    connector = PsycopgConnector(
        conninfo=dsn, min_size=chosen["pool_min_size"], max_size=chosen["pool_max_size"]
    )
    app = App(connector=connector)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="probe")
    async def probe(index: int, t_enqueue: float) -> None:
        send_probe(index, t_enqueue)

    return app


async def main() -> None:
    args = parse()
    chosen = settings(args.concurrency)
    if args.command == "settings":
        emit(chosen)
        return
    app = make_app(args.dsn, chosen)
    async with app.open_async():
        if args.command == "setup":
            await app.schema_manager.apply_schema_async()
        elif args.command == "enqueue":
            noop = app.tasks["noop"]
            n = args.count
            with Timer() as t:
                if args.mode == "single":
                    for _ in range(n):
                        await noop.defer_async()
                else:
                    for start in range(0, n, 5000):
                        await noop.batch_defer_async(*([{}] * min(5000, n - start)))
            emit({"seconds": t.seconds, "count": n})
        elif args.command == "probe":
            probe = app.tasks["probe"]
            for i in range(args.count):
                t0 = time.time()
                await probe.defer_async(index=i, t_enqueue=t0)
                await asyncio.sleep(args.interval)
        else:
            ready()
            await app.run_worker_async(
                concurrency=chosen["concurrency"],
                delete_jobs=chosen["delete_jobs"],
                listen_notify=chosen["listen_notify"],
                install_signal_handlers=True,
            )


if __name__ == "__main__":
    run(main)
