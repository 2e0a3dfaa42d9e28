"""Rescue: give back the jobs of workers whose heartbeat stopped (a dead or cut-off host).

Leaderless: every live worker runs `Rescuer.run_once` periodically (see liveness.py). One
transaction per pass locks the registry rows whose heartbeat is older than worker_timeout by
the database's clock (`Backend.lock_dead_workers`: SKIP LOCKED, or SQLite's single writer),
so two rescuers never take the same dead worker and a stale worker's own heartbeat UPDATE
waits for the rescue's commit, then finds its row gone (and knows it was fenced). In the same
transaction every live row the dead worker holds counts a failed attempt by the crash policy
of a supervisor child (`retry.failure_outcome`, as `supervisor/reclaim.py` uses it: retry
with back-off, or failed at max_attempts), with a last_error naming the rescue, the dead
worker and the rescuer; then the dead worker's row is deleted.

Every row counts an attempt, unlike the supervisor's reclaim, which knows from its child's
reports which jobs had started: nobody knows what a dead host was doing. Each write matches
`locked_by = <dead name>` (Backend.write_outcomes), so a row that another worker claimed
meanwhile is never touched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from . import events
from .backends import Backend
from .config import Config
from .record import JobRecord
from .retry import clean_error, failure_outcome

log = logging.getLogger("delayed.rescue")

BATCH = 20  # dead workers per rescue transaction (more are taken by the next pass)


@dataclass(frozen=True)
class Rescued:
    """One dead worker whose jobs a rescue gave back."""

    worker: str
    hostname: str
    pid: int
    heartbeat_at: datetime
    ids: list[int]


def rescue_error(dead: str, rescuer: str, heartbeat_at: datetime, timeout: float) -> str:
    """The last_error of a rescued job: what happened, to whom, and who noticed."""
    return clean_error(
        f"Rescued: worker {dead!r} stopped its heartbeat (last at {heartbeat_at.isoformat(' ')} UTC, "
        f"database clock; worker_timeout {timeout:g} s); its jobs were released by {rescuer!r}"
    )


class Rescuer:
    """Finds dead workers in the registry and gives back their jobs (one transaction a pass)."""

    def __init__(self, backend: Backend, workers: sa.Table, config: Config, rescuer: str) -> None:
        self.backend = backend
        self.workers = workers
        self.config = config
        self.rescuer = rescuer

    def run_once(self) -> list[Rescued]:
        """One pass; the dead workers it rescued (their events are emitted after the commit)."""
        rescued: list[Rescued] = []
        with self.backend.write_connection() as conn, conn.begin():
            now = conn.execute(sa.select(self.backend.db_now_utc())).scalar_one()
            cutoff = now - timedelta(seconds=self.config.worker_timeout)
            names = self.backend.lock_dead_workers(conn, self.workers, cutoff, BATCH)
            for name in names:
                rescued.append(self._rescue(conn, name))
        for item in rescued:
            self._report(item)
        return rescued

    def _rescue(self, conn: sa.Connection, name: str) -> Rescued:
        w, t = self.workers, self.backend.table
        row = conn.execute(sa.select(w).where(w.c.name == name)).mappings().one()
        query = sa.select(t).where(t.c.locked_by == name, t.c.failed_at.is_(None)).order_by(t.c.id)
        jobs = [JobRecord.from_mapping(r) for r in conn.execute(query).mappings()]
        error = rescue_error(name, self.rescuer, row["heartbeat_at"], self.config.worker_timeout)
        outcomes = [failure_outcome(job, error, self.config) for job in jobs]
        if outcomes:
            self.backend.write_outcomes(conn, outcomes)
        conn.execute(w.delete().where(w.c.name == name))
        return Rescued(name, row["hostname"], row["pid"], row["heartbeat_at"], [job.id for job in jobs])

    def _report(self, item: Rescued) -> None:
        log.warning(
            "rescued %d job(s) of worker %s (host %s, pid %d): no heartbeat since %s UTC; ids %s",
            len(item.ids),
            item.worker,
            item.hostname,
            item.pid,
            item.heartbeat_at.isoformat(" "),
            item.ids,
        )
        events.emit(
            "delayed.worker.rescued",
            worker=item.worker,
            hostname=item.hostname,
            pid=item.pid,
            rescuer=self.rescuer,
            ids=item.ids,
            count=len(item.ids),
        )
