"""oban-py (Python 3.12+): one Oban instance per process with the "default" queue at limit C."""

from __future__ import annotations

import asyncio
import signal
import time

from _proto import Timer, emit, parse, ready, send_probe
from oban import Oban, worker
from oban.schema import install


@worker(queue="default")
class Noop:
    async def process(self, job: object) -> None:
        return None


@worker(queue="default")
class Probe:
    async def process(self, job: object) -> None:
        send_probe(job.args["index"], job.args["t_enqueue"])  # type: ignore[attr-defined]


async def main() -> None:
    args = parse()
    pool = await Oban.create_pool(args.dsn, min_size=1, max_size=max(10, args.concurrency))
    try:
        if args.command == "setup":
            await install(pool)
        elif args.command == "enqueue":
            oban = Oban(pool=pool)
            n = args.count
            with Timer() as t:
                if args.mode == "single":
                    for _ in range(n):
                        await oban.enqueue(Noop.new({}))
                else:
                    for start in range(0, n, 5000):
                        await oban.enqueue_many([Noop.new({}) for _ in range(min(5000, n - start))])
            emit({"seconds": t.seconds, "count": n})
        elif args.command == "probe":
            oban = Oban(pool=pool)
            for i in range(args.count):
                t0 = time.time()
                await oban.enqueue(Probe.new({"index": i, "t_enqueue": t0}))
                await asyncio.sleep(args.interval)
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            async with Oban(pool=pool, queues={"default": args.concurrency}):
                ready()
                await stop.wait()
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
