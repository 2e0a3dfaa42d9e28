"""pydelayed's driver: the same commands as the peers' drivers (see peers/_proto.py).

Workers are not started here: the harness runs `delayed work` (or the supervisor) itself.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))

import bench_jobs
from _proto import Timer, emit, parse

import delayed


def main() -> None:
    args = parse()
    delayed.configure(database_url=args.dsn)
    if args.command == "setup":
        delayed.migrate()
    elif args.command == "enqueue":
        n = args.count
        # Connect before the timer, as every peer's driver does (asyncpg.connect, an open
        # pool): the timed part is the enqueue, not importing the driver and logging in.
        delayed.db.get_engine().connect().close()
        with Timer() as t:
            if args.mode == "single":
                for _ in range(n):
                    bench_jobs.Noop.perform_later()
            elif args.mode == "single-unique":
                for i in range(n):
                    bench_jobs.UniqueNoop.perform_later(i)
            elif args.mode == "bulk-unique":
                delayed.enqueue_many(bench_jobs.UniqueNoop.build(i) for i in range(n))
            elif args.mode == "bulk-keyed":
                delayed.enqueue_many(bench_jobs.KeyedNoop.build(i) for i in range(n))
            else:
                delayed.enqueue_many(bench_jobs.Noop.build() for _ in range(n))
        emit({"seconds": t.seconds, "count": n})
    elif args.command == "probe":
        delayed.db.get_engine().connect().close()  # connected first, as the peers' drivers are
        for i in range(args.count):
            t0 = time.time()
            bench_jobs.Probe.perform_later(i, t0)
            time.sleep(args.interval)
    else:
        raise SystemExit("ours_driver: workers are started with `delayed work` by the harness")


if __name__ == "__main__":
    main()
