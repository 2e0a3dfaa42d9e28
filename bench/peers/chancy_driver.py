"""chancy: one Worker per process, the "default" queue on the asyncio executor.

Settings (see bench/README.md): the queue at concurrency C per worker on chancy's Async
executor (the default executor is a process pool, made for blocking jobs; ours are async
no-ops), `polling_interval = 1` s (default 5) and `eager_polling = True` (poll again as soon
as a job finishes instead of waiting for the interval: what a backlog wants), default plugins,
default pool (1-10 connections), uvloop. Its per-job "Pulled" INFO line is silenced (logger at
WARNING), as it would be in production.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import peer_jobs
from _proto import Timer, emit, event_loop_name, parse, ready, run
from chancy import Chancy, Job, Queue, Worker


def settings(concurrency: int) -> dict[str, Any]:
    return {
        "executor": "chancy.executors.asyncex.AsyncExecutor",
        "concurrency": concurrency,
        "polling_interval_s": 1,
        "eager_polling": True,
        "plugins": "default",
        "event_loop": event_loop_name(),
    }


async def main() -> None:
    args = parse()
    chosen = settings(args.concurrency)
    if args.command == "settings":
        emit(chosen)
        return
    log = logging.getLogger("chancy-bench")
    log.setLevel(logging.WARNING)
    async with Chancy(args.dsn, log=log) as chancy:
        if args.command == "setup":
            await chancy.migrate()
            await chancy.declare(
                Queue(
                    "default",
                    concurrency=chosen["concurrency"],
                    executor=Chancy.Executor.Async,
                    polling_interval=chosen["polling_interval_s"],
                    eager_polling=chosen["eager_polling"],
                ),
                upsert=True,
            )
        elif args.command == "enqueue":
            job = Job.from_func(peer_jobs.noop, queue="default")
            n = args.count
            with Timer() as t:
                if args.mode == "single":
                    for _ in range(n):
                        await chancy.push(job)
                else:
                    async for _ in chancy.push_many([job] * n, batch_size=5000):
                        pass
            emit({"seconds": t.seconds, "count": n})
        elif args.command == "probe":
            base = Job.from_func(peer_jobs.probe, queue="default")
            for i in range(args.count):
                t0 = time.time()
                await chancy.push(base.with_kwargs(index=i, t_enqueue=t0))
                await asyncio.sleep(args.interval)
        else:
            async with Worker(chancy, register_signal_handlers=True) as worker:
                ready()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
                await worker.wait_for_shutdown()


if __name__ == "__main__":
    run(main)
