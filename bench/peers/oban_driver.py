"""oban-py (Python 3.12+): one Oban instance per process with the "default" queue at limit C.

Settings (see bench/README.md): `queues={"default": C}` (the queue's local limit is its only
concurrency knob), every other option at its default (debounce 5 ms between fetches, stager
1 s, acks batched by the producer), a psycopg pool of max(10, C) connections (10 is
`Oban.create_pool`'s default), uvloop (what `oban start` runs on when installed).
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from _proto import Timer, emit, event_loop_name, parse, ready, run, send_probe
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


def settings(concurrency: int) -> dict[str, Any]:
    return {
        "queues": {"default": concurrency},
        "pool_max_size": max(10, concurrency),
        "event_loop": event_loop_name(),
    }


async def main() -> None:
    args = parse()
    chosen = settings(args.concurrency)
    if args.command == "settings":
        emit(chosen)
        return
    pool = await Oban.create_pool(args.dsn, min_size=1, max_size=chosen["pool_max_size"])
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
            async with Oban(pool=pool, queues=chosen["queues"]):
                ready()
                await stop.wait()
    finally:
        await pool.close()


if __name__ == "__main__":
    run(main)
