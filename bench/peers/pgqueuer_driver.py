"""pgqueuer (asyncpg driver): one QueueManager per worker process, async no-op entrypoints.

pgqueuer requires max_concurrent_tasks >= 2 * batch_size, so a concurrency of C uses
batch_size = C // 2 (C = 10 -> batches of 5, at most 10 jobs in flight per process).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import timedelta

import asyncpg
from _proto import Timer, emit, parse, ready, send_probe
from pgqueuer import AsyncpgDriver, Queries, QueueManager


async def main() -> None:
    args = parse()
    conn = await asyncpg.connect(args.dsn)
    driver = AsyncpgDriver(conn)
    queries = Queries(driver)
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
        await work(queries, args.concurrency)
    await conn.close()


async def work(queries: Queries, concurrency: int) -> None:
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
    batch = max(1, concurrency // 2)
    await qm.run(
        batch_size=batch,
        max_concurrent_tasks=max(concurrency, 2 * batch),
        dequeue_timeout=timedelta(seconds=30),
    )


if __name__ == "__main__":
    asyncio.run(main())
