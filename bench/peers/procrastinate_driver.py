"""procrastinate (psycopg connector): async no-op tasks, successful jobs deleted like ours."""

from __future__ import annotations

import asyncio
import time

from _proto import Timer, emit, parse, ready, send_probe
from procrastinate import App, PsycopgConnector


def make_app(dsn: str) -> App:
    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="probe")
    async def probe(index: int, t_enqueue: float) -> None:
        send_probe(index, t_enqueue)

    return app


async def main() -> None:
    args = parse()
    app = make_app(args.dsn)
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
                concurrency=args.concurrency, delete_jobs="successful", install_signal_handlers=True
            )


if __name__ == "__main__":
    asyncio.run(main())
