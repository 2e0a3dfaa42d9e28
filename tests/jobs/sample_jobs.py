"""Job classes the tests enqueue; importable by worker subprocesses (`--require sample_jobs`)."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

import delayed

# What in-process jobs did, in order (tests clear it).
performed: list[tuple[str, object]] = []
_lock = threading.Lock()


def note(kind: str, value: object) -> None:
    with _lock:
        performed.append((kind, value))


class Noop(delayed.Job, name="tests.noop"):
    def perform(self, *args: object, **kwargs: object) -> None:
        note("noop", args[0] if args else None)


class Remember(delayed.Job, name="tests.remember"):
    """Records its argument and the row it ran as."""

    def perform(self, value: object, **kwargs: object) -> None:
        assert self.record is not None
        note("remember", (value, self.record.id, self.record.attempts, kwargs))


class AlwaysFails(delayed.Job, name="tests.always_fails"):
    max_attempts = 3

    def perform(self, message: str = "boom") -> None:
        raise RuntimeError(message)


class FailsFast(delayed.Job, name="tests.fails_fast"):
    max_attempts = 1

    def perform(self) -> None:
        raise RuntimeError("fails at once")


class RaisesText(delayed.Job, name="tests.raises_text"):
    """Raises RuntimeError(text): NUL and lone surrogates travel in the handler as JSON escapes."""

    def perform(self, text: str) -> None:
        raise RuntimeError(text)


class FailsDefault(delayed.Job, name="tests.fails_default"):
    def perform(self) -> None:
        raise ValueError("default attempts")


class QuickRetry(delayed.Job, name="tests.quick_retry"):
    """Fails until attempts reaches `succeed_on`, retrying at once (own back-off)."""

    max_attempts = 5

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now - timedelta(seconds=1)

    def perform(self, succeed_on: int) -> None:
        assert self.record is not None
        if self.record.attempts + 1 < succeed_on:
            raise RuntimeError(f"attempt {self.record.attempts + 1}")
        note("quick_retry", self.record.attempts + 1)


class Sleep(delayed.Job, name="tests.sleep"):
    def perform(self, seconds: float, token: str | None = None) -> None:
        note("sleep_start", token)
        time.sleep(seconds)
        note("sleep_end", token)


RUNS_DDL = "CREATE TABLE IF NOT EXISTS job_runs (token VARCHAR(64) PRIMARY KEY, pid INTEGER)"
DUPES_DDL = "CREATE TABLE IF NOT EXISTS job_dupes (token VARCHAR(64), pid INTEGER)"


class RecordRun(delayed.Job, name="tests.record_run"):
    """Inserts its token into job_runs (primary key); a second run is logged in job_dupes.

    The tests count rows in both tables: every job ran at least once, and each duplicate run
    is visible (and must be explained by a kill or a lost connection).
    """

    def perform(self, token: str, sleep: float = 0.0) -> None:
        if sleep:
            time.sleep(sleep)
        params = {"token": token, "pid": os.getpid()}
        try:
            with delayed.get_engine().begin() as conn:
                conn.execute(sa.text("INSERT INTO job_runs (token, pid) VALUES (:token, :pid)"), params)
        except sa.exc.IntegrityError:
            with delayed.get_engine().begin() as conn:
                conn.execute(sa.text("INSERT INTO job_dupes (token, pid) VALUES (:token, :pid)"), params)


@delayed.job(queue="functions", priority="interactive", name="tests.add")
def add(a: int, b: int) -> int:
    note("add", a + b)
    return a + b
