"""pydelayed's benchmark jobs; worker processes load them with `--require bench_jobs`."""

from __future__ import annotations

import os
import socket
import time

import delayed

_sock: socket.socket | None = None


class Noop(delayed.Job, name="bench.noop"):
    """Does nothing: the drain scenario measures the job system alone."""

    def perform(self) -> None:
        return None


class Probe(delayed.Job, name="bench.probe"):
    """Sends "index t_enqueue t_start" to the harness first thing (latency scenario)."""

    def perform(self, index: int, t_enqueue: float) -> None:
        global _sock
        now = time.time()
        if _sock is None:
            _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _sock.sendto(
            f"{index} {t_enqueue!r} {now!r}".encode(), ("127.0.0.1", int(os.environ["BENCH_UDP_PORT"]))
        )
