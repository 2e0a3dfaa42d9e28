"""A worker's row in the registry: registration, the heartbeat thread, fencing, periodic rescue.

Every worker process (plain `delayed work` and each supervisor child) inserts one row into
`delayed_workers` when it starts, keyed by its name (unique per process start, and the
`locked_by` of the rows it holds), updates `heartbeat_at` every `heartbeat_interval` with the
database's clock (so hosts with skewed clocks agree), and deletes it on a clean exit. The
cost is one small UPDATE per interval per process, on its own thread: the claim loop never
waits for it.

Fencing. The loop asks `may_claim()` before each claim: false once the last heartbeat that
was written is older than worker_timeout / 2 (this process's monotonic clock, measured from
when the write returned, which is after the database stamped it). Rescuers wait for a whole
worker_timeout of the database's clock, so a cut-off worker stops claiming at least
worker_timeout / 2 before anyone takes its jobs. When a heartbeat finds its row gone, the
worker was declared dead and its jobs were given back: `on_rescued` gives the worker a new
name (a new generation), so outcomes and releases of the rows the old name held, still
matched on `locked_by = old name`, can never touch a row that was claimed again, even by
this same process. If its jobs are still running then (their rows are gone), `on_fenced`
runs (the CLI and the supervisor child exit the process: a job must not keep running
while another host runs it).

The same thread runs the rescue of other workers (rescue.py) every worker_timeout / 4: a dead
worker's jobs are released at most worker_timeout + worker_timeout / 4 after its last
heartbeat, and with hundreds of workers the dead-row query (an index range on a small
table, SKIP LOCKED) stays cheap.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from . import events
from .backends import Backend
from .config import Config
from .db import describe_error
from .errors import FencedError
from .rescue import Rescuer
from .schema import qualified, workers_table

log = logging.getLogger("delayed.liveness")


class Liveness:
    """The registry row of one worker process and the thread that keeps it fresh."""

    def __init__(
        self,
        backend: Backend,
        config: Config,
        name: str,
        pool: str | None,
        queues: list[str],
        on_rescued: Callable[[], str] | None = None,
        running: Callable[[], int] = lambda: 0,
    ) -> None:
        self.backend = backend
        self.config = config
        self.name = name
        self.pool = pool
        self.queues = queues
        self.table = workers_table(qualified(backend.table))
        self.interval = config.heartbeat_interval
        self.timeout = config.worker_timeout
        self.enabled = self.interval > 0
        self.on_rescued = on_rescued
        self.on_fenced: Callable[[], None] | None = None
        self.running = running
        self.rescuer = Rescuer(backend, self.table, config, name)
        self._last_ok: float | None = None  # monotonic time the last heartbeat write returned
        self._last_error: Exception | None = None
        self._beat_lock = threading.Lock()  # the thread and check() may beat at once
        self._fenced = False  # said once per streak
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_rescue = 0.0

    # -- the worker's side --------------------------------------------------------------
    def start(self) -> None:
        """Register (at once, so a healthy worker may claim from its first loop) and start beating."""
        if not self.enabled:
            return
        self._beat()
        if not self.enabled:  # no registry table: said once in _beat
            return
        self._next_rescue = time.monotonic() + self.rescue_interval
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="delayed-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A clean exit: stop beating and delete the row (the worker's outcomes are written)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        if not self.enabled or self._last_ok is None:
            return
        w = self.table
        try:
            with self.backend.engine.begin() as conn:
                conn.execute(w.delete().where(w.c.name == self.name))
        except Exception as exc:
            log.warning(
                "could not remove worker %s from the registry (%s); it is rescued once its heartbeat "
                "is %g s old",
                self.name,
                describe_error(exc),
                self.timeout,
            )

    @property
    def rescue_interval(self) -> float:
        return max(self.timeout / 4, 0.1)

    def may_claim(self) -> bool:
        """Fencing: False once no heartbeat was written for worker_timeout / 2."""
        if not self.enabled:
            return True
        last = self._last_ok
        fresh = last is not None and time.monotonic() - last < self.timeout / 2
        if not fresh and not self._fenced:
            self._fenced = True
            age = "never" if last is None else f"{time.monotonic() - last:.1f} s ago"
            log.warning(
                "worker %s: heartbeat last written %s (worker_timeout %g s): claiming nothing until "
                "one is written again",
                self.name,
                age,
                self.timeout,
            )
            events.emit("delayed.worker.fenced", worker=self.name, pid=os.getpid())
        elif fresh and self._fenced:
            self._fenced = False
            log.info("worker %s: heartbeat written again; claiming resumes", self.name)
        return fresh

    def check(self) -> None:
        """Before a claim: raise why this worker may not claim now.

        Not registered yet (the database failed at start): register now, and raise the
        database's own error if that fails, so the loop reports a missing database or table
        as it would without the registry. Registered but stale: FencedError.
        """
        if not self.enabled:
            return
        if self._last_ok is None:
            self._beat()
            if self._last_ok is None and self._last_error is not None:
                raise self._last_error
        if not self.may_claim():
            raise FencedError(self.why_not())

    def why_not(self) -> str:
        """For the loop's log and the reserve event: why no claim was made."""
        return (
            f"worker {self.name} has not written its heartbeat for worker_timeout / 2 "
            f"({self.timeout / 2:g} s): not claiming (fenced)"
        )

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()
            if self._last_ok is not None and time.monotonic() - self._last_ok >= self.timeout:
                self._fence_running()
            now = time.monotonic()
            if now >= self._next_rescue:
                self._next_rescue = now + self.rescue_interval
                self._rescue()

    def _beat(self) -> None:
        with self._beat_lock:
            self._beat_locked()

    def _beat_locked(self) -> None:
        w = self.table
        try:
            with self.backend.engine.begin() as conn:
                now = self.backend.db_now_utc()
                updated = conn.execute(
                    w.update().where(w.c.name == self.name).values(heartbeat_at=now)
                ).rowcount
                if not updated:
                    if self._last_ok is not None:  # it was there: a rescuer deleted it
                        self._rescued()
                    conn.execute(
                        w.insert().values(
                            name=self.name,
                            hostname=socket.gethostname()[:255],
                            pid=os.getpid(),
                            pool=self.pool,
                            queues=json.dumps(self.queues),
                            started_at=now,
                            heartbeat_at=now,
                        )
                    )
        except Exception as exc:
            self._last_error = exc
            if self._last_ok is None and self.backend.missing(exc) == "table" and self._is_ours(exc):
                self.enabled = False
                log.warning(
                    "table %s does not exist: this worker runs without the worker registry (no "
                    "heartbeat, no rescue of dead workers' jobs); run `delayed migrate`",
                    w.name,
                )
                return
            if not self._failing:
                self._failing = True
                log.warning("worker %s: heartbeat failed: %s", self.name, describe_error(exc))
            return
        if self._failing:
            self._failing = False
            log.info("worker %s: heartbeat written again", self.name)
        self._last_error = None
        self._last_ok = time.monotonic()

    def _is_ours(self, exc: Exception) -> bool:
        """The missing table is the registry's (not the jobs table: that one the loop reports)."""
        return self.table.name in str(getattr(exc, "orig", None) or exc)

    def _rescued(self) -> None:
        """Our row was deleted by a rescue: the rows we held were given back. Take a new name."""
        old = self.name
        running = self.running()
        if self.on_rescued is not None:
            self.name = self.on_rescued()
            self.rescuer.rescuer = self.name
        log.error(
            "worker %s was declared dead by another worker (no heartbeat for %g s) and its jobs "
            "were released; continuing as %s%s",
            old,
            self.timeout,
            self.name,
            f" ({running} job(s) it was running are no longer its own)" if running else "",
        )
        if running:
            self._fence_running()

    def _fence_running(self) -> None:
        """Its jobs are (about to be) rescued elsewhere while still running here."""
        if self.running() and self.on_fenced is not None:
            self.on_fenced()

    def _rescue(self) -> None:
        try:
            self.rescuer.run_once()
        except Exception as exc:
            log.warning("rescue of dead workers failed: %s", describe_error(exc))


EXIT_FENCED = 4  # the process status of a worker that exited because its jobs were rescued


def exit_fenced() -> None:
    """`Worker.on_fenced` of the processes we own (`delayed work`, supervisor children).

    Python cannot stop a thread, and a job whose row another host now runs must not keep
    running here: the process ends at once (no drain: its rows are no longer its own, and any
    outcome it wrote would be matched on the old name and change nothing).
    """
    log.critical(
        "exiting (status %d): jobs still running here have been (or are about to be) rescued by "
        "another worker after worker_timeout without a heartbeat",
        EXIT_FENCED,
    )
    logging.shutdown()
    os._exit(EXIT_FENCED)
