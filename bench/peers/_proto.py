"""What every system driver shares: its command line, the probe datagram, the READY line.

A driver is a small script run with the Python that has its job system installed:
  driver.py setup DSN                       install the system's schema
  driver.py enqueue DSN --mode single|bulk --count N   prints {"seconds": s, "count": n}
  driver.py work DSN --concurrency C        run one worker process until SIGTERM; prints READY
  driver.py probe DSN --count N --interval S enqueue probe jobs one at a time (latency)
  driver.py settings DSN --concurrency C    prints the settings `work` runs with, as JSON
A probe job sends one UDP datagram "index t_enqueue t_start" to BENCH_UDP_PORT as the first
thing it does, so the harness measures (start of perform - enqueue call) across processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

_sock: socket.socket | None = None


def send_probe(index: int, t_enqueue: float) -> None:
    """Report a probe's start time to the harness (called first thing in perform)."""
    global _sock
    now = time.time()
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = int(os.environ["BENCH_UDP_PORT"])
    _sock.sendto(f"{index} {t_enqueue!r} {now!r}".encode(), ("127.0.0.1", port))


def ready() -> None:
    """Tell the harness this worker has started (it still waits a moment before timing)."""
    print("READY", flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["setup", "enqueue", "work", "probe", "settings"])
    parser.add_argument("dsn")
    # single-unique / bulk-unique / bulk-keyed: pydelayed's unique and concurrency-keyed jobs
    parser.add_argument(
        "--mode", choices=["single", "bulk", "single-unique", "bulk-unique", "bulk-keyed"], default="bulk"
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.02)
    return parser.parse_args(argv if argv is not None else sys.argv[1:])


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def event_loop_name() -> str:
    """uvloop when it is installed and BENCH_PEER_LOOP is not "asyncio", else asyncio.

    pgqueuer's and oban-py's own command-line runners start on uvloop when it is importable,
    so that is their fastest configuration; every peer runs on the same loop to stay fair.
    """
    if os.environ.get("BENCH_PEER_LOOP", "uvloop") == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a driver's async main on the loop event_loop_name() picks."""
    if event_loop_name() == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
