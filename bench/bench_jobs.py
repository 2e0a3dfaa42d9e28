"""pydelayed's benchmark jobs; worker processes load them with `--require bench_jobs`."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import delayed

_sock: socket.socket | None = None


class Noop(delayed.Job, name="bench.noop"):
    """Does nothing: the drain scenario measures the job system alone."""

    def perform(self) -> None:
        return None


class UniqueNoop(delayed.Job, name="bench.unique_noop"):
    """A no-op unique by its argument (every enqueue of the scenario is new: the insert-or-skip
    path's cost, not the skipping)."""

    unique = delayed.Unique(by_args=True)

    def perform(self, index: int) -> None:
        return None


KEYS = 1000  # "many keys": KeyedNoop rows are spread over this many concurrency keys


class KeyedNoop(delayed.Job, name="bench.keyed_noop"):
    """A no-op under a concurrency key (one of KEYS) with limit 1: the lease path's cost."""

    concurrency_key = lambda index: f"k:{index % KEYS}"  # noqa: E731
    concurrency_limit = 1

    def perform(self, index: int) -> None:
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


# ----------------------------------------------------------------------------- soak
SOAK_DDL = (
    "CREATE TABLE IF NOT EXISTS soak_runs (token BIGINT NOT NULL, kind VARCHAR(8) NOT NULL, "
    "t_enqueue DOUBLE PRECISION NOT NULL, t_due DOUBLE PRECISION NOT NULL, "
    "t_start DOUBLE PRECISION NOT NULL, pid INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS soak_failed (token BIGINT PRIMARY KEY)",
)
_local = threading.local()


def _soak_conn() -> Any:
    """This thread's own psycopg connection for the soak's bookkeeping (BENCH_SOAK_DSN).

    Kept apart from pydelayed's engine so the bookkeeping does not depend on its internals,
    and committed with synchronous_commit = off: it is the harness's record, not the load.
    """
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        import psycopg

        conn = psycopg.connect(os.environ["BENCH_SOAK_DSN"], autocommit=True)
        conn.execute("SET synchronous_commit = off")
        _local.conn = conn
    return conn


class Soak(delayed.Job, name="bench.soak"):
    """The soak's job: records its token and start time once it has really run.

    kind "fail" raises the first time it runs (soak_failed remembers that it did) and succeeds
    on its retry; kind "long" sleeps `sleep` seconds; "later" was enqueued with a wait. A job
    that runs twice shows up as two soak_runs rows with the same token; one that is lost, as a
    missing token.
    """

    def perform(
        self, token: int, t_enqueue: float, t_due: float, kind: str = "now", sleep: float = 0.0
    ) -> None:
        t_start = time.time()
        conn = _soak_conn()
        if kind == "fail":
            first = conn.execute(
                "INSERT INTO soak_failed (token) VALUES (%s) ON CONFLICT DO NOTHING RETURNING token", (token,)
            ).fetchone()
            if first is not None:
                raise RuntimeError(f"soak job {token} fails once on purpose")
        if sleep:
            time.sleep(sleep)
        conn.execute(
            "INSERT INTO soak_runs (token, kind, t_enqueue, t_due, t_start, pid) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (token, kind, t_enqueue, t_due, t_start, os.getpid()),
        )


class Nap(delayed.Job, name="bench.nap"):
    """Sleeps `seconds` (the rescue scenario: jobs a killed host was running); retried at once,
    so the figure is the rescue's own delay, not the retry back-off."""

    def reschedule_at(self, now: Any, attempts: int) -> Any:
        return now

    def perform(self, seconds: float) -> None:
        time.sleep(seconds)
