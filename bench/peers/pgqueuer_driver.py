"""pgqueuer (asyncpg driver): one QueueManager per worker process, async no-op entrypoints.

Settings (see bench/README.md for why these are its fastest fair configuration):
- asyncpg through `AsyncpgDriver` (one connection), the driver pgqueuer's own benchmark
  (tools/benchmark.py, `--driver apg`) defaults to;
- `batch_size = 10`, pgqueuer's default for `QueueManager.run` and for `pgq run`;
- `max_concurrent_tasks = max(C, 2 * batch_size)`: a cap as close to our C threads as
  pgqueuer allows (it refuses a cap below twice the batch), i.e. 20 for C = 10;
- uvloop (see _proto.event_loop_name).
BENCH_PGQ_BATCH, BENCH_PGQ_CAP (0 = no cap) and BENCH_PGQ_DRIVER=apgpool override them for
experiments; the harness records what was used.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import timedelta
from typing import Any

import asyncpg
from _proto import Timer, emit, event_loop_name, parse, ready, run, send_probe
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Queries, QueueManager


def settings(concurrency: int) -> dict[str, Any]:
    batch = int(os.environ.get("BENCH_PGQ_BATCH", "10"))
    cap = int(os.environ.get("BENCH_PGQ_CAP", str(max(concurrency, 2 * batch))))
    return {
        "driver": os.environ.get("BENCH_PGQ_DRIVER", "apg"),
        "batch_size": batch,
        "max_concurrent_tasks": cap or None,
        "dequeue_timeout_s": 30,
        "event_loop": event_loop_name(),
    }


async def connect(dsn: str, driver: str) -> tuple[Queries, Any]:
    if driver == "apgpool":
        pool = await asyncpg.create_pool(dsn)
        return Queries(AsyncpgPoolDriver(pool)), pool
    conn = await asyncpg.connect(dsn)
    return Queries(AsyncpgDriver(conn)), conn


async def main() -> None:
    args = parse()
    if args.command == "settings":
        emit(settings(args.concurrency))
        return
    chosen = settings(args.concurrency)
    queries, handle = await connect(args.dsn, chosen["driver"])
    if args.command == "setup":
        await queries.install()
    elif args.command == "enqueue":
        n = args.count
        with Timer() as t:
            if args.mode == "single":
                for _ in range(n):
                    await queries.enqueue("noop", None)
            else:
                for start in range(0, n, 5000):
                    k = min(5000, n - start)
                    await queries.enqueue(["noop"] * k, [None] * k, [0] * k)
        emit({"seconds": t.seconds, "count": n})
    elif args.command == "probe":
        for i in range(args.count):
            t0 = time.time()
            await queries.enqueue("probe", json.dumps([i, t0]).encode())
            await asyncio.sleep(args.interval)
    else:
        await work(queries, chosen)
    await handle.close()


async def work(queries: Queries, chosen: dict[str, Any]) -> None:
    qm = QueueManager(queries)

    @qm.entrypoint("noop")
    async def noop(job: object) -> None:
        return None

    @qm.entrypoint("probe")
    async def probe(job: object) -> None:
        index, t_enqueue = json.loads(job.payload)  # type: ignore[attr-defined]
        send_probe(index, t_enqueue)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    ready()
    await qm.run(
        batch_size=chosen["batch_size"],
        max_concurrent_tasks=chosen["max_concurrent_tasks"],
        dequeue_timeout=timedelta(seconds=chosen["dequeue_timeout_s"]),
    )


if __name__ == "__main__":
    run(main)
