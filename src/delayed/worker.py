"""The worker: claim as many jobs as there are free threads, run them, hand outcomes on.

Loop (one main thread): free = max_claims - busy; claim up to `free` ready jobs in one
statement; submit each to the thread pool; wait until a thread frees up, the database says
jobs arrived (PostgreSQL NOTIFY), or `sleep_delay` passes. A thread takes the next job as
soon as it is free: no batch waits for its slowest job.

Each job thread decodes the handler, finds the registered class, runs `perform`, and turns
the result into an Outcome (delete / retry with back-off / fail) for the completer, which
writes outcomes in batches. A row is deleted only after its job ran.

The completer's backlog is bounded: past completer.MAX_PENDING unwritten outcomes the loop
claims nothing until it shrinks (back-pressure; no outcome is ever dropped).

SIGTERM/SIGINT: stop claiming, let running jobs finish, write every outcome, exit 0. A
second signal stops waiting for running jobs: queued outcomes are written first, then the
locks of the jobs still running (and of those claimed but not started) are released so they
run again elsewhere, and run() returns 1. The threads of the released jobs are daemon
threads left running (Python cannot stop a thread): they do not keep the interpreter from
exiting, and their outcomes are dropped; code that embeds Worker should exit soon after.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import secrets
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from . import events
from .backends import Backend, ClaimFilter, Waiter, backend_for
from .completer import MAX_PENDING, Completer
from .config import Config, get_config
from .db import describe_error, worker_engine_for
from .errors import FencedError
from .eventloop import EventLoopThread
from .executor import Executor
from .liveness import Liveness
from .priority import resolve as resolve_priority
from .record import JobRecord, Outcome
from .registry import async_names
from .results import PRUNE_INTERVAL, prune
from .schema import check_current, get_table

log = logging.getLogger("delayed.worker")

LOCKED_BY_LENGTH = 255  # the locked_by column (schema/tables.py)
GATHER = 0.002  # seconds a backlogged worker waits for more free threads before a claim
# Failed claims in a row (with the usual back-off: ~15 s in all) after which a worker that
# exits when idle gives up on a database that fails for a reason other than a missing table
# or database (those end it at the first claim).
EXIT_ON_COMPLETE_ATTEMPTS = 6
_STOP_THREAD = None  # what a job thread takes from its queue to end


class JobThreads:
    """`count` long-lived threads running `target(record)` for each record submitted.

    What the worker needs of a ThreadPoolExecutor, without the Future, work item and
    semaphore it makes per job: a no-op job costs a queue put and a get. Threads are
    named `<prefix>_<n>` as the executor named them (the supervisor reports the name).

    Daemon threads: a normal stop waits for them (shutdown(wait=True)), but after a forced
    stop (a second signal) the jobs they still run have had their locks released and are
    abandoned; they must not keep the interpreter from exiting (`abandoned` tells them to
    drop their outcome and touch nothing of the worker).
    """

    def __init__(self, count: int, target: Callable[[JobRecord], None], prefix: str) -> None:
        self._queue: queue.SimpleQueue[JobRecord | None] = queue.SimpleQueue()
        self._target = target
        self.abandoned = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{prefix}_{index}", daemon=True)
            for index in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, record: JobRecord) -> None:
        self._queue.put(record)

    def _run(self) -> None:
        get, target = self._queue.get, self._target
        while True:
            record = get()
            if record is _STOP_THREAD:
                return
            target(record)

    def shutdown(self, wait: bool = True, cancel: bool = False) -> None:
        """End the threads after the queued records (or, with cancel, dropping those)."""
        if cancel:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
        for _ in self._threads:
            self._queue.put(_STOP_THREAD)
        if wait:
            for thread in self._threads:
                thread.join()


def default_worker_name() -> str:
    """`host:<hostname> pid:<pid> <8 hex digits>`: the Ruby gem's name and a random part.

    The random part makes the name unique per process start: two containers with the same
    hostname and their own pid namespaces give the same `host:... pid:...`, and a release by
    name (the supervisor's reclaim, a worker's orphan release) would touch the other's live
    locks. Made after any fork, in the process that works; a supervisor's child reports it
    to its master, which never rebuilds it. Capped to fit `locked_by` (255 characters).
    """
    tail = f" pid:{os.getpid()} {secrets.token_hex(4)}"
    try:
        host = socket.gethostname()
    except OSError:  # pragma: no cover - hostname lookup failing
        return tail.lstrip()
    return f"host:{host[: LOCKED_BY_LENGTH - len(tail) - len('host:')]}{tail}"


class Worker:
    """Works off jobs: `Worker(...).run()` until stopped, or `.work_off(n)` in tests."""

    # Unwritten outcomes past which claiming pauses (see Completer.full).
    max_pending_outcomes: int = MAX_PENDING

    def __init__(
        self,
        *,
        queues: list[str] | tuple[str, ...] | None = None,
        max_claims: int | None = None,
        max_async_claims: int | None = None,
        min_priority: int | str | None = None,
        max_priority: int | str | None = None,
        sleep_delay: float | None = None,
        read_ahead: int | None = None,
        name: str | None = None,
        config: Config | None = None,
        backend: Backend | None = None,
        pool: str | None = None,
    ) -> None:
        base = config or get_config()
        overrides = {
            "queues": list(queues) if queues is not None else None,
            "max_claims": max_claims,
            "max_async_claims": max_async_claims,
            "min_priority": min_priority,
            "max_priority": max_priority,
            "sleep_delay": sleep_delay,
            "read_ahead": read_ahead,
        }
        self.config = base.replace(**{k: v for k, v in overrides.items() if v is not None})
        self._name = name
        self._backend = backend
        self.pool = pool  # the supervisor pool's name, for the worker registry
        # Called from the heartbeat thread when jobs still running here have been (or are about
        # to be) rescued by another worker; the CLI and the supervisor child exit the process.
        self.on_fenced: Callable[[], None] | None = None
        self._liveness: Liveness | None = None
        self.max_claims: int = self.config.max_claims
        self.max_async_claims: int = self.config.max_async_claims
        names = self.config.priority_names
        self.filter = ClaimFilter(
            queues=tuple(self.config.queues),
            min_priority=None
            if self.config.min_priority is None
            else resolve_priority(self.config.min_priority, names),
            max_priority=None
            if self.config.max_priority is None
            else resolve_priority(self.config.max_priority, names),
        )
        self._executor: Executor | None = None
        self._lock = threading.Lock()
        self._busy = 0  # jobs running, in both lanes
        self._abusy = 0  # of which async jobs, on the event loop
        self._lane: EventLoopThread | None = None  # the async lane, when async jobs are registered
        self._lane_names: tuple[str, ...] = ()  # the async names the two filters below split by
        self._sync_filter = self._async_filter = self.filter
        self._held: dict[int, JobRecord] = {}
        # Plain flags, not threading.Event: stop() runs in signal handlers, and Event.set takes
        # a lock the interrupted main thread may hold (a deadlock). The loop polls them and
        # wakes on the wake pipe.
        self._stop = False
        self._force = False
        self._signals: collections.deque[tuple[int, bool]] = collections.deque()  # (signum, second)
        self._wake_r, self._wake_w = -1, -1
        # A job thread that ends a job writes the wake pipe only when the loop waits for
        # this many busy threads or fewer (-1: the loop is not waiting for a thread).
        self._wake_busy = -1
        self._pool: JobThreads | None = None
        self._completer: Completer | None = None
        self._conn: sa.Connection | None = None
        self._reserve_failures = 0
        self._last_reserve_error = ""
        self._unusable_reason: str | None = None  # the last failed claim's table/database is missing
        self._unusable: str | None = None  # why an exiting-when-idle run gave up (exit status 1)
        self._exit_when_idle = False
        self._schema_checked = False
        self._backlogged = False  # claiming paused until the completer's backlog shrinks
        self._waiter: Waiter = Waiter()
        self._next_prune = 0.0  # when this worker next deletes expired kept results

    # -- identity --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        if self._name is None:
            self._name = default_worker_name()
        return self._name

    def _new_generation(self) -> str:
        """After a rescue declared this worker dead: a new name, so that nothing written under
        the old one (outcomes, releases: all matched on locked_by) touches a row claimed again."""
        self._name = default_worker_name()
        if self._executor is not None:
            self._executor.worker_name = self._name
        return self._name

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            # The worker's own engine, with connect and network timeouts (db.timeout_args):
            # a database host that stops answering never blocks the loop or a SIGTERM for long.
            config = self.config
            engine = worker_engine_for(
                config.database_url, config.connect_timeout, config.network_timeout, config.pooler
            )
            self._backend = backend_for(engine, get_table(config.table_name))
        return self._backend

    @property
    def executor(self) -> Executor:
        """Runs each claimed job (made on first use, once the worker's name is known)."""
        if self._executor is None:
            backend = self.backend
            self._executor = Executor(self.config, self.name, backend.name, backend.table.name)
        return self._executor

    @property
    def succeeded(self) -> int:
        return self.executor.succeeded

    @property
    def failed(self) -> int:
        return self.executor.failed

    @property
    def busy(self) -> int:
        return self._busy

    def running_jobs(self) -> list[JobRecord]:
        """Rows this worker holds right now (claimed and not yet handed to the completer)."""
        with self._lock:
            return list(self._held.values())

    # -- public entry points ---------------------------------------------------------------
    def work_off(self, num: int = 100) -> tuple[int, int]:
        """Run up to `num` ready jobs, wait for them and their outcomes; (succeeded, failed)."""
        before = (self.succeeded, self.failed)
        self._start()
        try:
            self._loop(limit=num, exit_when_idle=True)
        finally:
            self._finish()
            self._reset()
        return self.succeeded - before[0], self.failed - before[1]

    def run(self, exit_on_complete: bool = False, install_signals: bool = True) -> int:
        """Work until stopped (or, with exit_on_complete, until nothing is ready); exit status.

        0 when stopped or done; 1 after a second stop (running jobs released) or when, with
        exit_on_complete, the database is not usable (see `_give_up`). Raises SchemaOutOfDate
        (before claiming anything) when the schema lacks steps this release needs.
        """
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):  # first: the schema check may wait on
                signal.signal(sig, self._on_signal)  # a silent host for connect_timeout
        self.check_schema()
        log.info(
            "Starting worker %s: queues=%s max_claims=%d priorities=%s..%s",
            self.name,
            list(self.filter.queues) or "all",
            self.max_claims,
            self.filter.min_priority,
            self.filter.max_priority,
        )
        self._start()
        started = time.monotonic()
        events.emit("delayed.worker.start", worker=self.name, pid=os.getpid())
        try:
            self._loop(limit=None, exit_when_idle=exit_on_complete)
        finally:
            self._finish()
            # After every outcome is written: observers flush (tracing exports its spans).
            events.emit("delayed.worker.exit", worker=self.name, pid=os.getpid())
        elapsed = max(time.monotonic() - started, 1e-9)
        total = self.succeeded + self.failed
        log.info(
            "Worker %s exiting: %d jobs processed at %.1f j/s, %d failed",
            self.name,
            total,
            total / elapsed,
            self.failed,
        )
        status = 1 if self._force or self._unusable else 0
        self._reset()
        return status

    def check_schema(self) -> None:
        """SchemaOutOfDate when `delayed migrate` has steps to apply; checked once per Worker.

        One SELECT of the version table: a worker of a newer release must not claim from a
        table without the columns it writes. A missing table or database is left to the claim
        loop, which says so (and backs off) as before.
        """
        if not self._schema_checked:
            check_current(self.backend.engine, self.backend.table)
            self._schema_checked = True
            self._warn_upkeep()

    def _warn_upkeep(self) -> None:
        """Say once what the database's upkeep of the table lacks (autovacuum off); never fatal."""
        try:
            warnings = self.backend.upkeep_warnings()
        except Exception as exc:
            log.debug("could not read the database's upkeep settings: %s", describe_error(exc))
            return
        for warning in warnings:
            log.warning("%s", warning)

    def _reset(self) -> None:
        """Ready for another run: clear the stop flags of the one that ended."""
        self._stop = self._force = False
        self._unusable = None

    def stop(self) -> None:
        """Ask the loop to stop claiming and drain; a second call forces (releases running jobs).

        Safe from signal handlers and other threads: it sets flags and writes a byte to the
        wake pipe, taking no lock.
        """
        if self._stop:
            self._force = True
        self._stop = True
        self._wake()

    def drain(self) -> None:
        """Stop claiming and let running jobs finish; asking again never forces.

        For callers that may ask more than once for one stop (the supervisor's child: a TERM
        and a dead master). Signal-safe, as stop().
        """
        self._stop = True
        self._wake()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """The signal handler: record the signal and stop; the loop logs it (_log_signals).

        Nothing else runs here: a handler runs between two bytecodes of the main thread,
        which may hold the logging lock at that moment.
        """
        self._signals.append((signum, self._stop))
        self.stop()

    def _log_signals(self) -> None:
        """Log the signals the handler recorded (called from the loop and the drain)."""
        while self._signals:
            signum, second = self._signals.popleft()
            if second:
                log.warning("Second %s: releasing running jobs and exiting", signal.Signals(signum).name)
            else:
                log.info("%s received: finishing running jobs, then exiting", signal.Signals(signum).name)

    # -- setup and teardown ----------------------------------------------------------------
    def _start(self) -> None:
        # The stop flags are not cleared here: a stop() that lands just before run() must
        # still stop it. They are reset once a run has finished (_reset).
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._completer = Completer(self.backend, self.max_pending_outcomes).start()
        self._waiter = self.backend.waiter(self.config.listen_notify)
        liveness = Liveness(
            self.backend,
            self.config,
            self.name,
            self.pool,
            list(self.filter.queues),
            on_rescued=self._new_generation,
            running=lambda: self._busy,
        )
        liveness.on_fenced = self.on_fenced
        liveness.start()
        self._liveness = liveness
        # Each job thread knows its own pool and completer: after a forced stop it must not
        # touch those of a later run of this Worker.
        completer = self._completer
        pool: JobThreads
        pool = self._pool = JobThreads(
            self.max_claims, lambda record: self._run_one(record, pool, completer), "delayed-job"
        )
        self._split_lanes()
        if self._lane_names:
            lane: EventLoopThread
            lane = self._lane = EventLoopThread(
                self.executor.execute_async,
                lambda record, outcome: self._job_done(record, outcome, lane, completer, True),
            )

    def _split_lanes(self) -> None:
        """Claim filters per lane: the async job names for the loop, every other name for threads.

        Without async job classes there is one unfiltered claim, as before async jobs existed.
        """
        names = async_names()
        if names == self._lane_names:
            return
        self._lane_names = names
        if names:
            self._sync_filter = replace(self.filter, names=names, exclude_names=True)
            self._async_filter = replace(self.filter, names=names)
        else:
            self._sync_filter = self._async_filter = self.filter

    def _finish(self) -> None:
        """Stop the job threads, write every outcome, then release what is still held.

        Forced (a second signal while draining): jobs not started are dropped, running ones
        are left to their threads. Either way the completer writes (or gives up on) every
        queued outcome first, and only then are locks released, of the rows whose outcome
        is not queued: a finished job is never released to run again, and a job that ends
        while the completer stops has its outcome written (or, once the completer is closed,
        its row released). The abandoned threads then touch nothing of this worker.
        """
        pool, completer = self._pool, self._completer
        forced = False
        if pool is not None:
            # Drain: wait for the running jobs, but let a second signal cut the wait short.
            # (Polled through the wake pipe: a signal handler calling Event.set() while this
            # thread sat in Event.wait() on the same event could deadlock on its lock.)
            while self._busy > 0 and not self._force:
                self._log_signals()
                self._wait_for_threads(0, 0.05)
            self._log_signals()
            forced = self._busy > 0 and self._force
            pool.shutdown(wait=not forced, cancel=forced)
            if self._lane is not None:
                self._lane.shutdown(cancel=forced)
        if completer is not None:
            completer.stop()
        self._release_held(exclude=completer.pending_ids() if completer is not None else set())
        if forced and pool is not None:
            self._abandon(pool)
        if self._liveness is not None:
            self._liveness.stop()  # a clean exit: the registry row goes
            self._liveness = None
        self._waiter.close()
        self._close_conn()
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # first: a signal handler landing now writes nothing
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        self._pool = self._completer = self._lane = None

    def _release_unstarted(self, jobs: list[JobRecord]) -> None:
        ids = [record.id for record in jobs]
        try:
            with self.backend.write_connection() as conn:
                self.backend.release(conn, self.name, ids)
            log.info("released %d job(s) claimed as the stop arrived: %s", len(ids), ids)
        except Exception as exc:
            log.error(
                "could not release jobs %s claimed as the stop arrived (%s); they run again after "
                "the lock timeout",
                ids,
                describe_error(exc),
            )

    def _release_held(self, exclude: set[int]) -> None:
        """Release the rows still held, except those whose outcome is queued (`exclude`)."""
        with self._lock:
            ids = [job_id for job_id in self._held if job_id not in exclude]
        if not ids:
            return
        try:
            with self.backend.write_connection() as conn:
                count = self.backend.release(conn, self.name, ids)
            log.warning("released %d job(s) still held at exit: %s", count, ids)
        except Exception as exc:
            log.error(
                "could not release jobs %s at exit (%s); they run again after the lock timeout",
                ids,
                describe_error(exc),
            )

    def _abandon(self, pool: JobThreads) -> None:
        """After a forced stop: the jobs still running are released; forget them."""
        with self._lock:
            pool.abandoned = True
            if self._lane is not None:
                self._lane.abandoned = True
            running = sorted(self._held)
            self._busy = self._abusy = 0
            self._held.clear()
        if running:
            log.warning(
                "jobs %s were released while still running; their threads are abandoned (daemon "
                "threads: they do not keep the process alive, and their outcomes are dropped)",
                running,
            )

    def _close_conn(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:
                log.debug("closing the claim connection failed", exc_info=True)

    def _wake(self) -> None:
        if self._wake_w >= 0:
            # A full pipe means a wake-up is already pending; a closed one, that we are done.
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- the loop --------------------------------------------------------------------------
    def _loop(self, limit: int | None, exit_when_idle: bool) -> None:
        """Claim for each lane while it has room: job threads (sync) and the event loop (async).

        Each lane claims only its own rows (by job name, see _split_lanes) up to its own free
        slots, and keeps its own "the last claim was full" flag, so a backlog of one kind
        never holds the other back. A lane whose claim came back short waits for the next
        poll (sleep_delay, or NOTIFY) like a worker with one lane.
        """
        claimed = 0
        more_sync = True  # the lane's last claim was full: more may be ready
        more_async = self._lane is not None  # no async lane: never anything to claim for it
        failing = False  # the last claim failed: wait out the back-off, whatever else happens
        next_poll = 0.0
        self._exit_when_idle = exit_when_idle
        gather_until: float | None = None  # while gathering free threads for one claim
        half = (self.max_claims + 1) // 2
        self._next_prune = time.monotonic() + PRUNE_INTERVAL
        while not self._stop:
            self._prune_kept()
            busy_sync = self._busy - self._abusy
            free_sync = self.max_claims - busy_sync
            free_async = self.max_async_claims - self._abusy if self._lane is not None else 0
            left = None if limit is None else limit - claimed
            if left is not None and left <= 0 and self._busy == 0:
                return
            now = time.monotonic()
            due = now >= next_poll
            want_sync = free_sync if (more_sync or due) else 0
            want_async = free_async if (more_async or due) else 0
            if left is not None:
                want_sync, want_async = min(want_sync, left), min(want_async, left)
            maybe_more = more_sync or more_async
            if want_sync > 0 or want_async > 0:
                if want_async == 0 and more_sync and busy_sync > 0 and free_sync < half:
                    # A backlog: claim in batches, not one job per statement (a claim costs a
                    # round trip and an index scan whatever its size). Wait a moment, at most
                    # GATHER seconds, for more threads to free up; never for a slow job.
                    if gather_until is None:
                        gather_until = now + GATHER
                    if now < gather_until:
                        self._wait_for_threads(self._abusy + self.max_claims - half, gather_until - now)
                        continue
                gather_until = None
                if self._outcomes_backlogged():
                    continue
                settled = self._settled()
                self._split_lanes()
                jobs: list[JobRecord] | None = []
                short = False  # a lane's claim came back with fewer rows than asked
                if want_sync > 0:
                    jobs = self._reserve(want_sync, self._sync_filter)
                    if jobs is not None:
                        more_sync = len(jobs) == want_sync
                        short = not more_sync
                if jobs is not None and want_async > 0 and not self._stop:
                    ask = want_async if left is None else min(want_async, left - len(jobs))
                    if ask > 0:
                        async_jobs = self._reserve(ask, self._async_filter)
                        if async_jobs is None:
                            if jobs:
                                self._submit_all(jobs)  # claimed: they run whatever happens next
                                claimed += len(jobs)
                            jobs = None
                        else:
                            more_async = len(async_jobs) == ask
                            short = short or not more_async
                            jobs = jobs + async_jobs
                failing = jobs is None
                if jobs is None:  # the database failed; back off
                    if exit_when_idle and self._give_up():
                        return
                    more_sync = more_async = False
                    next_poll = now + min(0.5 * 2 ** min(self._reserve_failures, 6), 30.0)
                elif jobs and self._stop:
                    self._release_unstarted(jobs)  # the stop came while the claim was in flight
                else:
                    claimed += len(jobs)
                    self._submit_all(jobs)
                    if short:
                        next_poll = now + self.config.sleep_delay
                    if not (more_sync or more_async) and exit_when_idle and not jobs and self._busy == 0:
                        if settled:
                            return  # nothing ready, nothing running, nothing unwritten
                        # Our own unwritten outcomes may have hidden ready rows from this
                        # claim (MySQL: locks of the completer's transaction); once they
                        # are written, look again.
                        self._wait_for_outcomes()
                        next_poll = 0.0
                    continue
            # A full lane (maybe_more): wait for a job to end. Otherwise: until the next poll,
            # unless NOTIFY or (when exiting on idle) the last running job wakes us first.
            # Jobs wake the loop only when what it waits for happens: one ends (a full lane),
            # the last one ends (at the limit, or exiting when idle), or never.
            timeout = 1.0 if maybe_more else max(next_poll - time.monotonic(), 0.0)
            if maybe_more and ((free_sync > 0 and not more_sync) or (free_async > 0 and not more_async)):
                timeout = min(timeout, max(next_poll - time.monotonic(), 0.001))  # the other lane's poll
            if limit is not None and claimed >= limit:
                wake_busy = 0
            elif maybe_more:
                wake_busy = self._busy - 1
            elif failing:
                wake_busy = -1  # backing off: jobs ending do not end the wait
            else:
                wake_busy = 0 if exit_when_idle else -1
            if timeout > 0:
                if not self._arm_wake(wake_busy):  # it happened already
                    if not maybe_more and exit_when_idle:
                        next_poll = 0.0
                    continue
                notified = self._waiter.wait(timeout, self._wake_r)
                self._disarm_wake()
                if notified or (exit_when_idle and self._busy == 0 and not failing):
                    next_poll = 0.0

    def _prune_kept(self) -> None:
        """Every PRUNE_INTERVAL: delete kept results past their keep time (delayed.results)."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        try:
            prune(self.backend.engine, self.backend.table, self.config)
        except Exception as exc:
            log.warning(
                "pruning kept job results failed (next try in %g s): %s", PRUNE_INTERVAL, describe_error(exc)
            )

    def _settled(self) -> bool:
        """No job running and no outcome unwritten: no lock of ours can hide a ready row."""
        completer = self._completer
        return self._busy == 0 and (completer is None or completer.pending == 0)

    def _wait_for_outcomes(self, timeout: float = 1.0) -> None:
        """Wait (at most `timeout`, a stop ends it sooner) for the completer to write everything."""
        completer = self._completer
        deadline = time.monotonic() + timeout
        while completer is not None and not self._stop and time.monotonic() < deadline:
            if completer.flush(0.05):
                return

    def _give_up(self) -> bool:
        """Exiting when idle: is the database clearly unusable (then say why, once)?

        A missing table or database is clear at once. Anything else (refused or lost
        connections, timeouts) gets EXIT_ON_COMPLETE_ATTEMPTS claims with the usual back-off
        between them first, since it may pass.
        """
        reason = self._unusable_reason
        if reason is None and self._reserve_failures >= EXIT_ON_COMPLETE_ATTEMPTS:
            reason = (
                f"the database could not be used for {self._reserve_failures} claims in a row "
                f"(last error: {self._last_reserve_error})"
            )
        if reason is None:
            return False
        self._unusable = reason
        log.error("%s; giving up (exit on complete)", reason)
        return True

    def _outcomes_backlogged(self) -> bool:
        """Back-pressure: while the completer has too many unwritten outcomes, claim nothing.

        Each unwritten outcome is a locked row whose job already ran; claiming more while the
        completer cannot keep up (or cannot write at all) would only grow what a crash makes
        run again. Waits a moment for room (the loop then checks for a stop) and says so once.
        """
        completer = self._completer
        if completer is None or not completer.full:
            if self._backlogged:
                self._backlogged = False
                log.info("job outcomes are being written again; claiming resumes")
            return False
        if not self._backlogged:
            self._backlogged = True
            log.warning(
                "%d job outcome(s) wait to be written; claiming no more jobs until they are",
                completer.pending,
            )
        completer.wait_for_room(0.1)
        return True

    def _arm_wake(self, wake_busy: int) -> bool:
        """Ask job threads to wake the loop once at most `wake_busy` are busy.

        False when that is already so (no wait needed). Checked under the lock the job
        threads count under, so a job ending between the check and the wait is not missed.
        """
        with self._lock:
            if wake_busy >= 0 and self._busy <= wake_busy:
                return False
            self._wake_busy = wake_busy
            return True

    def _disarm_wake(self) -> None:
        with self._lock:
            self._wake_busy = -1
        self._drain_wake()

    def _wait_for_threads(self, wake_busy: int, timeout: float) -> None:
        """Wait until at most `wake_busy` threads are busy, or `timeout` passes."""
        if self._arm_wake(wake_busy):
            select.select([self._wake_r], [], [], timeout)
            self._disarm_wake()

    def _reserve(self, limit: int, flt: ClaimFilter) -> list[JobRecord] | None:
        with events.instrument(
            "delayed.worker.reserve_jobs",
            worker=self.name,
            max_claims=self.max_claims,
            lane="async" if flt is self._async_filter and self._lane_names else "threads",
            read_ahead=self.config.read_ahead,
            queues=list(self.filter.queues),
            min_priority=self.filter.min_priority,
            max_priority=self.filter.max_priority,
            table=self.backend.table.name,
            database_adapter=self.backend.name,
        ) as payload:
            try:
                if self._liveness is not None:
                    self._liveness.check()  # FencedError, or why it cannot register
                if self._conn is None:
                    self._conn = self.backend.connect(self.config.durable_claims)
                if self._reserve_failures:
                    self._release_orphans()
                jobs = self.backend.claim(
                    self._conn,
                    self.name,
                    limit,
                    flt,
                    self.config.lock_timeout,
                    self.config.read_ahead,
                )
            except Exception as exc:
                self._reserve_failures += 1
                self._last_reserve_error = describe_error(exc)
                self._unusable_reason = self.backend.unusable_reason(exc)
                if isinstance(exc, FencedError):
                    pass  # liveness said it once; the claim connection is fine
                elif self._unusable_reason is None:
                    log.warning(
                        "Error while reserving jobs (attempt %d): %s",
                        self._reserve_failures,
                        self._last_reserve_error,
                    )
                elif not self._exit_when_idle:  # exiting, the loop says it once
                    log.warning("%s (attempt %d)", self._unusable_reason, self._reserve_failures)
                if not isinstance(exc, FencedError):
                    self._invalidate_conn()
                payload["error"] = exc
                return None
            payload["count"] = len(jobs)
        if self._reserve_failures:
            log.info("Reserving jobs works again after %d failure(s)", self._reserve_failures)
            self._reserve_failures = 0
        return jobs

    def _release_orphans(self) -> None:
        """After a failed pickup, free rows our name locked that we do not know we hold.

        A claim can commit on the server while its reply is lost with the connection; those
        rows carry our (unique per process) name but no thread runs them, and without this
        they would wait for the lock timeout.
        """
        with self._lock:
            keep = set(self._held)
        if self._completer is not None:
            keep |= self._completer.pending_ids()
        with self.backend.write_connection() as conn:
            count = self.backend.release(conn, self.name, exclude=sorted(keep))
        if count:
            log.warning("released %d job(s) claimed by a pickup whose reply was lost", count)

    def _invalidate_conn(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                log.debug("dropping the broken claim connection failed", exc_info=True)

    def _submit_all(self, jobs: list[JobRecord]) -> None:
        for record in jobs:
            self._submit(record)

    def _submit(self, record: JobRecord) -> None:
        """Hand a claimed row to its lane: the event loop for an async job name, else a thread."""
        lane = self._lane
        asynchronous = lane is not None and record.name in self._lane_names
        with self._lock:
            self._busy += 1
            if asynchronous:
                self._abusy += 1
            self._held[record.id] = record
        if asynchronous:
            assert lane is not None
            lane.submit(record)
            return
        assert self._pool is not None
        self._pool.submit(record)

    # -- one job, in its thread ------------------------------------------------------------
    def _run_one(self, record: JobRecord, pool: JobThreads, completer: Completer) -> None:
        """A job thread's turn: run the record, hand its outcome on, wake the loop if it waits."""
        outcome: Outcome | None = None
        try:
            outcome = self.executor.execute(record)
        finally:
            self._job_done(record, outcome, pool, completer)

    def _job_done(
        self,
        record: JobRecord,
        outcome: Outcome | None,
        pool: JobThreads | EventLoopThread,
        completer: Completer,
        asynchronous: bool = False,
    ) -> None:
        if pool.abandoned:  # released by a forced stop: the outcome is not ours to write
            return
        # Refused once the completer is closed (a forced stop): the row stays in _held and
        # is released with the others.
        accepted = outcome is not None and completer.put(outcome)
        with self._lock:
            if pool.abandoned:
                return
            self._busy -= 1
            if asynchronous:
                self._abusy -= 1
            if accepted:
                self._held.pop(record.id, None)
            wake = self._busy <= self._wake_busy
            if wake:
                self._wake_busy = -1  # one write per wait is enough
        if wake:
            self._wake()
