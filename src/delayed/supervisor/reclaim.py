"""Giving back the rows a dead child still had locked.

A child that ends may leave rows locked with its name: a drained one normally none, a
killed or crashed one the jobs it was running, those it had claimed but not started yet,
and those whose outcome its completer had not written yet. The master looks them up (in
the child's database: after a HUP it may differ from the master's current one) and, for
each row, either counts a failed attempt with a last_error saying what happened, or
releases it to run again without losing an attempt. Which rows get which is `plan`, a
pure function of the rows and the `Reclaim` request: only the ids the request names
(jobs the child reported started, see child.py) count an attempt. The retry policy is
`delayed.retry`'s, the worker's.

A claim the child sent just before it died can still commit on the server after the
master's first look: `Reclaimer.submit` schedules later looks (RECHECK_DELAYS) that
release whatever turned up. A reclaim that fails (database down) is retried with a
back-off (RECLAIM_RETRY_INTERVAL, doubling up to MAX_RECLAIM_RETRY_INTERVAL) until the
locks would have expired anyway. At exit each pending reclaim gets one last try
(`flush`), no sooner than its retry was due (`seconds_to_last_tries`): never a hot retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from .. import events
from ..backends import backend_for
from ..config import Config
from ..db import create_engine, describe_error, redact
from ..record import JobRecord, Outcome
from ..retry import failure_outcome
from ..schema import get_table

log = logging.getLogger("delayed.supervisor")

RECLAIM_RETRY_INTERVAL = 5.0  # after a failed reclaim; doubles with each failure
MAX_RECLAIM_RETRY_INTERVAL = 60.0
# A claim a child sent just before it was killed can still commit on the server after the
# master's first look: look again after these delays, releasing whatever turned up.
RECHECK_DELAYS = (3.0, 30.0)


@dataclass
class Reclaim:
    """What to do with the rows a dead child still has locked (in the child's database)."""

    pid: int
    worker: str
    config: Config  # the child's: after a HUP it may differ from the master's current one
    # last_error for the rows that count an attempt (the jobs known to have run); every other
    # row is released, attempts unchanged.
    attempt: dict[int, str] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    next_try: float = 0.0
    tries: int = 0
    recheck: bool = False  # a later look: release only, report only when something was found


@dataclass(frozen=True)
class Plan:
    """The writes of one reclaim: failed attempts to record, ids to release."""

    outcomes: list[Outcome]
    release: list[int]


def plan(rows: Sequence[JobRecord], request: Reclaim, now: datetime | None = None) -> Plan:
    """Which rows count a failed attempt (retry or fail, by the retry policy), which are released.

    A row counts an attempt only when the request names an error for its id (`attempt`:
    the jobs the child reported started and not ended, or the overdue ones of a max_run_time
    kill). Every other row is released with its attempts unchanged: claimed but never
    started, or run with its outcome still unwritten (it runs again: at least once). A
    later look (`recheck`) only releases: those rows were claimed as the child died.
    """
    outcomes: list[Outcome] = []
    release: list[int] = []
    for row in rows:
        error = None if request.recheck else request.attempt.get(row.id)
        if error:
            outcomes.append(failure_outcome(row, error, request.config, now=now))
        else:
            release.append(row.id)
    return Plan(outcomes, release)


class Reclaimer:
    """Short-lived database writes from the master: no connection outlives a call.

    Engines use NullPool, so they hold no connection between calls and nothing of them is
    usable (or harmful) in a child after a fork.
    """

    def __init__(self) -> None:
        self._engines: dict[str, sa.Engine] = {}
        self.pending: list[Reclaim] = []

    def engine(self, url: str) -> sa.Engine:
        if url not in self._engines:
            kwargs: dict[str, Any] = {"poolclass": NullPool}
            if not url.startswith("sqlite"):
                kwargs["connect_args"] = {"connect_timeout": 10}
            self._engines[url] = create_engine(url, **kwargs)
        return self._engines[url]

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    def submit(self, request: Reclaim, recheck: bool = True) -> None:
        """Reclaim now (or retry later), and schedule the later looks for late claims."""
        if not self._run(request):
            self.pending.append(request)
        now = time.monotonic()
        for delay in RECHECK_DELAYS if recheck else ():
            self.pending.append(
                Reclaim(request.pid, request.worker, request.config, next_try=now + delay, recheck=True)
            )

    def retry(self, now: float) -> None:
        """Try failed reclaims again; give up once the locks have expired anyway."""
        for request in list(self.pending):
            if now < request.next_try:
                continue
            if now - request.created > request.config.lock_timeout and not request.recheck:
                log.error("giving up reclaiming the jobs of %s: their locks have expired", request.worker)
                self.pending.remove(request)
            elif self._run(request):
                self.pending.remove(request)

    def failed(self) -> list[Reclaim]:
        """The pending reclaims the database refused (not the later looks, never tried yet)."""
        return [r for r in self.pending if not r.recheck]

    def seconds_to_last_tries(self, now: float) -> float:
        """How long to wait before `flush`: until the failed reclaims' retries are due, at most
        RECLAIM_RETRY_INTERVAL (so a reclaim refused just before a stop is not retried 5 ms later)."""
        due = [r.next_try for r in self.failed()]
        return min(max(due) - now, RECLAIM_RETRY_INTERVAL) if due else 0.0

    def flush(self, skip_failed: bool = False) -> None:
        """Before exit: one last try for each worker's pending reclaims, then forget them all.

        A failed reclaim looks at all of its worker's rows, so it also covers that worker's
        later look; a worker with only a later look pending gets that look. `skip_failed`:
        no last try for the failed ones (a signal cut the wait short), only the later looks.
        """
        done: set[str] = set()
        for request in sorted(self.pending, key=lambda r: r.recheck):  # failed ones first
            if request.worker in done:
                continue
            done.add(request.worker)
            if skip_failed and not request.recheck:
                log.warning(
                    "not trying again to reclaim the jobs of %s (stop requested): they run again "
                    "once their locks pass the lock timeout (%.0f s)",
                    request.worker,
                    request.config.lock_timeout,
                )
                continue
            self._run(request, last=True)
        self.pending.clear()

    def _run(self, request: Reclaim, last: bool = False) -> bool:
        """One look at the child's rows and the writes of its plan; False when it failed.

        `last`: the try before exit; a failure says what becomes of the rows, not "again".
        """
        request.tries += 1
        config = request.config
        try:
            engine = self.engine(config.database_url)
            backend = backend_for(engine, get_table(config.table_name))
            with backend.write_connection() as conn:
                rows = backend.locked_rows(conn, request.worker)
                if conn.in_transaction():
                    conn.commit()
                writes = plan(rows, request)
                if writes.outcomes:
                    backend.complete(conn, writes.outcomes)
                released = backend.release(conn, request.worker, writes.release) if writes.release else 0
        except Exception as exc:
            if last:
                log.error(
                    "last try to reclaim the jobs of %s on %s before exit failed: %s; not trying "
                    "again: they run again once their locks pass the lock timeout (%.0f s)",
                    request.worker,
                    redact(config.database_url),
                    describe_error(exc),
                    config.lock_timeout,
                )
                return False
            delay = min(RECLAIM_RETRY_INTERVAL * 2 ** (request.tries - 1), MAX_RECLAIM_RETRY_INTERVAL)
            request.next_try = time.monotonic() + delay
            log.error(
                "reclaiming the jobs of %s on %s failed (try %d): %s; trying again in %.0f s",
                request.worker,
                redact(config.database_url),
                request.tries,
                describe_error(exc),
                delay,
            )
            return False
        if request.recheck and not rows:
            return True
        ids = [r.id for r in rows]
        if rows:
            log.warning(
                "reclaimed %d job(s) of %s%s: %d released, %d counted a failed attempt (ids %s)",
                len(rows),
                request.worker,
                " (claimed as it died)" if request.recheck else "",
                released,
                len(writes.outcomes),
                ids,
            )
        events.emit(
            "delayed.supervisor.locks_reclaimed",
            pid=request.pid,
            worker=request.worker,
            count=len(rows),
            released=released,
            attempted=len(writes.outcomes),
            ids=ids,
        )
        return True
