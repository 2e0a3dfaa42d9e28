"""Job classes and boot hooks for the supervisor tests (imported by its children via require).

Every job writes what happened to `sup_runs` in its own transaction, so the test sees each
start and finish even when the process is killed between the two.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

import delayed

RUNS_DDL = (
    "CREATE TABLE IF NOT EXISTS sup_runs "
    "(token VARCHAR(64) NOT NULL, pid INTEGER NOT NULL, phase VARCHAR(8) NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL)"
)

# Kept alive so the child's RSS stays up (memory recycling test).
_hoard: list[bytes] = []


def record(job: delayed.Job, token: str, phase: str) -> None:
    """One row per start or end: the token, this pid, the time and the row's prior attempts."""
    attempts = job.record.attempts if job.record is not None else -1
    with delayed.get_engine().begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sup_runs (token, pid, phase, at, attempts) "
                "VALUES (:token, :pid, :phase, :at, :attempts)"
            ),
            {"token": token, "pid": os.getpid(), "phase": phase, "at": time.time(), "attempts": attempts},
        )


class Run(delayed.Job, name="sup.run"):
    """Records its start, sleeps, records its end."""

    def perform(self, token: str, sleep: float = 0.0) -> None:
        record(self, token, "start")
        if sleep:
            time.sleep(sleep)
        record(self, token, "end")


class RunRetriedAtOnce(Run, name="sup.run_retried_at_once"):
    """Run, retried at once after a failed attempt (a rescue): the rescue test times the rescue,
    not the default back-off (6 s after a first attempt)."""

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now


class Noop(delayed.Job, name="sup.noop"):
    """Does nothing (the throughput run); retried at once so kills do not stall the drain."""

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now

    def perform(self, token: str) -> None:
        record(self, token, "end")


class Hang(delayed.Job, name="sup.hang"):
    """Sleeps far past its 2 s max_run_time; two attempts, retried at once."""

    max_run_time = 2
    max_attempts = 2

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now

    def perform(self, token: str) -> None:
        record(self, token, "start")
        time.sleep(600)
        record(self, token, "end")


class Spawner(delayed.Job, name="sup.spawner"):
    """Starts `sleep 1000` subprocesses (a direct one and a shell's child), then hangs past
    its 2 s max_run_time; one attempt. Each subprocess pid is recorded (phase "sub")."""

    max_run_time = 2
    max_attempts = 1

    def perform(self, token: str) -> None:
        direct = subprocess.Popen(["sleep", "1000"])
        shell = subprocess.Popen(
            ["sh", "-c", "sleep 1000 & echo $!; wait"], stdout=subprocess.PIPE, text=True
        )
        assert shell.stdout is not None
        grandchild = int(shell.stdout.readline())
        for pid in (direct.pid, shell.pid, grandchild):
            with delayed.get_engine().begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO sup_runs (token, pid, phase, at, attempts) "
                        "VALUES (:token, :pid, 'sub', :at, 0)"
                    ),
                    {"token": token, "pid": pid, "at": time.time()},
                )
        record(self, token, "start")
        time.sleep(600)
        record(self, token, "end")


class Crash(delayed.Job, name="sup.crash"):
    """Kills its own process with an exit status, as a segfaulting extension would."""

    max_attempts = 2

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now - timedelta(seconds=1)

    def perform(self, token: str, status: int = 7) -> None:
        record(self, token, "start")
        os._exit(status)


class Hog(delayed.Job, name="sup.hog"):
    """Allocates `mb` MiB (touching every page) and keeps it."""

    def perform(self, token: str, mb: int) -> None:
        record(self, token, "start")
        _hoard.append(b"\x01" * (mb * 1024 * 1024))
        record(self, token, "end")


def boot_fails() -> None:
    """on_worker_boot that always raises: every child dies at once (a crash loop)."""
    raise RuntimeError("on_worker_boot says no")


def boot_marks() -> None:
    """on_worker_boot that leaves a file named after the child's pid in $SUP_BOOT_DIR."""
    directory = Path(os.environ["SUP_BOOT_DIR"])
    (directory / str(os.getpid())).write_text(str(os.getppid()))


def _record_supervisor_events(path: str) -> None:
    """Append every delayed.supervisor.* event (emitted in the master) to `path` as JSON lines."""
    import json
    import re

    def write(event: delayed.events.Event) -> None:
        with open(path, "a") as handle:
            handle.write(json.dumps({"name": event.name, **event.payload}, default=str) + "\n")

    delayed.events.subscribe(re.compile(r"^delayed\.supervisor\."), write)


if os.environ.get("SUP_EVENTS_FILE"):
    _record_supervisor_events(os.environ["SUP_EVENTS_FILE"])
