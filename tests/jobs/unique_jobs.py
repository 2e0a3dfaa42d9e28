"""Job classes for the unique-job and concurrency-limit tests (issue 13).

The limited jobs append one line per start and end to a file (O_APPEND writes of one line
are atomic), so a test sees every start and finish across processes, on any database.
"""

from __future__ import annotations

import os
import time

import delayed


def log_line(path: str, *fields: object) -> None:
    line = " ".join(str(f) for f in fields) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class SyncAccount(delayed.Job, name="tests.unique.sync"):
    unique = delayed.Unique(by_args=True)

    def perform(self, account: int, note: str | None = None) -> None:
        pass


class ByAccount(delayed.Job, name="tests.unique.by_account"):
    unique = delayed.Unique(by_args=["account"])

    def perform(self, account: int, note: str | None = None) -> None:
        pass


class PerQueue(delayed.Job, name="tests.unique.per_queue"):
    unique = delayed.Unique(by_args=False, by_queue=True)

    def perform(self) -> None:
        pass


class Hourly(delayed.Job, name="tests.unique.hourly"):
    unique = delayed.Unique(by_args=False, period="1h")

    def perform(self) -> None:
        pass


class FailsUnique(delayed.Job, name="tests.unique.fails"):
    unique = delayed.Unique()
    max_attempts = 1

    def perform(self, account: int) -> None:
        raise RuntimeError("fails")


class FailsHolding(delayed.Job, name="tests.unique.fails_holding"):
    unique = delayed.Unique(failed_holds_key=True)
    max_attempts = 1

    def perform(self, account: int) -> None:
        raise RuntimeError("fails")


class Limited(delayed.Job, name="tests.concurrency.limited"):
    """At most 2 per customer at once; records start and end in `path`."""

    concurrency_key = "customer:{0}"
    concurrency_limit = 2

    def perform(self, customer: int, n: int, path: str, sleep: float = 0.03) -> None:
        log_line(path, "start", n, time.time(), os.getpid())
        time.sleep(sleep)
        log_line(path, "end", n, time.time(), os.getpid())


class Keyless(delayed.Job, name="tests.concurrency.keyless"):
    def perform(self, n: int, path: str) -> None:
        log_line(path, "keyless", n, time.time(), os.getpid())


class Holder(delayed.Job, name="tests.concurrency.holder"):
    """One per tag at once; the SIGKILL test kills the child while job 1 sleeps."""

    concurrency_key = lambda tag, n, path, sleep: f"holder:{tag}"  # noqa: E731
    concurrency_limit = 1

    def perform(self, tag: str, n: int, path: str, sleep: float) -> None:
        log_line(path, "start", n, time.time(), os.getpid())
        time.sleep(sleep)
        log_line(path, "end", n, time.time(), os.getpid())
