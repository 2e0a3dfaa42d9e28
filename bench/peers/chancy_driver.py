"""chancy: one Worker per process, the "default" queue on the asyncio executor.

The queue is declared with concurrency C per worker, polling_interval 1 s and eager polling
(a worker polls again as soon as a job finishes), the settings that suit a backlog.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import peer_jobs
from _proto import Timer, emit, parse, ready
from chancy import Chancy, Job, Queue, Worker


async def main() -> None:
    args = parse()
    log = logging.getLogger("chancy-bench")
    log.setLevel(logging.WARNING)
    async with Chancy(args.dsn, log=log) as chancy:
        if args.command == "setup":
            await chancy.migrate()
            await chancy.declare(
                Queue(
                    "default",
                    concurrency=args.concurrency,
                    executor=Chancy.Executor.Async,
                    polling_interval=1,
                    eager_polling=True,
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
    asyncio.run(main())
