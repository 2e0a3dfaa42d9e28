"""The chaos suite's job (imported by the supervisor's children via `require = ["chaos_jobs"]`)."""

from __future__ import annotations

import os
import time
from datetime import datetime

import sqlalchemy as sa

import delayed

RUNS_DDL = (
    "CREATE TABLE IF NOT EXISTS chaos_runs "
    "(token VARCHAR(32) NOT NULL, pid INTEGER NOT NULL, attempts INTEGER NOT NULL, "
    "at DOUBLE PRECISION NOT NULL)"
)


class ChaosJob(delayed.Job, name="chaos.job"):
    """Sleeps a little, fails its first attempt when asked, then records one finished run.

    The record is committed in its own transaction, before the worker deletes the row: a run
    is counted even when its process is killed before the delete lands (that run is then a
    duplicate, and the test explains it by the kill).
    """

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now  # retry at once: the suite is about losing nothing, not about back-off

    def perform(self, token: str, sleep: float, fail_once: bool) -> None:
        assert self.record is not None
        if sleep:
            time.sleep(sleep)
        if fail_once and self.record.attempts == 0:
            raise RuntimeError(f"chaos: {token} fails its first attempt on purpose")
        with delayed.get_engine().begin() as conn:
            conn.execute(
                sa.text("INSERT INTO chaos_runs (token, pid, attempts, at) VALUES (:t, :p, :a, :at)"),
                {"t": token, "p": os.getpid(), "a": self.record.attempts, "at": time.time()},
            )
