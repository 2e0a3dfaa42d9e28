"""The soak's load: enqueue bench.soak jobs at a steady rate through pydelayed's public API.

    soak_load.py URL --rate R --seconds S [--first-token T]   steady mixed load, then a JSON line
    soak_load.py URL --bulk N --first-token T                 N plain jobs at once (capacity)

Every `--tick` seconds it enqueues, in one `delayed.enqueue_many` call (one transaction), the
jobs that are due by then at `--rate` jobs/s, so the rate holds however long a call takes.
The mix: `--fail` of them fail once and retry, `--later` are scheduled 1..`--max-wait` s
ahead, and one every `--long-every` s runs for `--long-seconds`; the rest run at once. Tokens
are consecutive integers from `--first-token`. t_enqueue (the job's argument) is the time just
before its batch was built. Prints {"enqueued", "kinds", "seconds", "max_behind_s", "started_at"}
at the end (started_at: the epoch second the load began, after imports and connecting).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_jobs

import delayed


def build(token: int, kind: str, now: float, wait: float = 0.0, sleep: float = 0.0) -> Any:
    job = bench_jobs.Soak.set(wait=wait) if wait else bench_jobs.Soak
    return job.build(token, now, now + wait, kind, sleep)


def steady(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    kinds = {"now": 0, "later": 0, "fail": 0, "long": 0}
    token = args.first_token
    start = time.time()
    next_long = start + args.long_every
    sent = 0
    max_behind = 0.0
    while True:
        now = time.time()
        elapsed = now - start
        if elapsed >= args.seconds:
            break
        due = int(min(elapsed, args.seconds) * args.rate) - sent
        batch = []
        for _ in range(max(due, 0)):
            draw = rng.random()
            if args.long_every and now >= next_long:
                batch.append(build(token, "long", now, sleep=args.long_seconds))
                kinds["long"] += 1
                next_long += args.long_every
            elif draw < args.fail:
                batch.append(build(token, "fail", now))
                kinds["fail"] += 1
            elif draw < args.fail + args.later:
                batch.append(build(token, "later", now, wait=rng.uniform(1.0, args.max_wait)))
                kinds["later"] += 1
            else:
                batch.append(build(token, "now", now))
                kinds["now"] += 1
            token += 1
        if batch:
            delayed.enqueue_many(batch)
            sent += len(batch)
        max_behind = max(max_behind, time.time() - now - args.tick)
        time.sleep(max(0.0, args.tick - (time.time() - now)))
    return {
        "enqueued": sent,
        "kinds": kinds,
        "seconds": time.time() - start,
        "max_behind_s": max(max_behind, 0.0),
        "first_token": args.first_token,
        "started_at": start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=100.0, help="jobs per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--bulk", type=int, default=0, help="enqueue this many plain jobs at once instead")
    parser.add_argument("--first-token", type=int, default=0)
    parser.add_argument("--tick", type=float, default=0.005, help="seconds between enqueue calls")
    parser.add_argument("--fail", type=float, default=0.01, help="share that fails once, then retries")
    parser.add_argument("--later", type=float, default=0.10, help="share scheduled ahead")
    parser.add_argument("--max-wait", type=float, default=20.0, help="seconds ahead at most")
    parser.add_argument("--long-every", type=float, default=10.0, help="one long job every S s (0: none)")
    parser.add_argument("--long-seconds", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    delayed.configure(database_url=args.url)
    if args.bulk:
        now = time.time()
        delayed.enqueue_many(build(args.first_token + i, "now", now) for i in range(args.bulk))
        print(json.dumps({"enqueued": args.bulk}), flush=True)
        return 0
    print(json.dumps(steady(args, random.Random(args.seed))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
