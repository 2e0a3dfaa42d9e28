"""The child's side of the supervisor: what runs in a forked process, and how it reports.

After the fork nothing of the master's is used: its signal handlers are reset, its pipes
closed, and the database engine is made fresh (`delayed.db` makes one per pid). The
child then runs one `Worker` (or the monitor) and tells the master, over a pipe, that it
booted (with its worker's name), whether its worker reaches the database (`DatabaseWatch`),
and that it is alive (`protocol`). Which job each thread runs, since when, it writes to a
table in memory shared with the master (`running`): no report per job.

SIGTERM asks for a graceful drain (stop claiming, finish running jobs, write outcomes,
exit 0). The child also drains when the master dies (its parent pid changes or the pipe
breaks), so no orphan works on unsupervised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import setproctitle

from .. import events, prometheus, statsd
from ..config import Config, set_config
from ..contrib.django.setup import setup_if_configured
from ..db import describe_error
from ..eventloop import in_loop_thread
from ..liveness import exit_fenced
from ..logs import reopen_log_files
from ..monitor import Monitor
from ..record import JobRecord
from ..recurring import CronEntry, Scheduler
from ..schema import SchemaOutOfDate
from ..tracing import instrument_from_config
from ..wakeup import Wakeup
from ..worker import Worker
from . import protocol
from .running import RunningTable

log = logging.getLogger("delayed.supervisor")

EXIT_BOOT_FAILED = 3  # on_worker_boot or the worker's setup raised
TITLE_PREFIX = "delayed-supervisor"


@dataclass
class ChildSpec:
    """Everything a child needs, handed over in memory by the fork."""

    kind: str  # "worker", "monitor" or "scheduler"
    pool_name: str
    queues: list[str]
    min_priority: int | str | None
    max_priority: int | str | None
    max_claims: int
    config: Config
    master_pid: int
    report_fd: int
    close_fds: list[int] = field(default_factory=list)
    on_worker_boot: Callable[[], Any] | None = None
    heartbeat_interval: float = 1.0
    tracing: bool = False  # instrument the Worker with OpenTelemetry (after on_worker_boot)
    cron_entries: tuple[CronEntry, ...] = ()  # the scheduler child's entries (checked by the master)
    running: RunningTable | None = None  # a worker child's running jobs, shared with the master


class Reporter:
    """Writes reports to the master; remembers when the master has gone away."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.broken = False

    def send(self, *reports: protocol.Report) -> bool:
        data = protocol.encode(*reports)
        with self.lock:
            if self.broken:
                return False
            try:
                os.write(self.fd, data)
            except OSError:  # EPIPE: the master is gone
                self.broken = True
                return False
        return True


def set_title(text: str) -> None:
    """The process title, as ps and top show it: `delayed-supervisor: <text>`."""
    setproctitle.setproctitle(f"{TITLE_PREFIX}: {text}")


class DatabaseWatch:
    """Tells the master whether this child's worker reaches the database (DatabaseDown/Up).

    Listens to the worker's `delayed.worker.reserve_jobs` events: after DOWN_AFTER failed
    pickups in a row it reports DatabaseDown once, and the next pickup that works reports
    DatabaseUp (the first one ever too, so the master knows the child works). The worker
    itself keeps retrying with its back-off; this only says so, once per change.
    """

    DOWN_AFTER = 3  # failed pickups in a row (about 3 s with the worker's back-off: 1 s, 2 s)
    MAX_ERROR = 500  # characters of the error in the report (a line well under PIPE_BUF)

    def __init__(self, reporter: Reporter, worker_name: str) -> None:
        self.reporter = reporter
        self.worker_name = worker_name
        self.failures = 0
        self.up: bool | None = None  # None: no pickup yet

    def on_reserve(self, event: events.Event) -> None:
        if event.payload.get("worker") != self.worker_name:
            return
        error = event.payload.get("error")
        if error is None:
            self.failures = 0
            if self.up is not True:
                self.up = True
                self.reporter.send(protocol.DatabaseUp())
            return
        self.failures += 1
        if self.failures >= self.DOWN_AFTER and self.up is not False:
            self.up = False
            self.reporter.send(protocol.DatabaseDown(describe_error(error)[: self.MAX_ERROR]))


class _Stopper:
    """Delivers a stop request (a TERM, or the master gone) to the worker or the monitor.

    Called from the SIGTERM handler and from the heartbeat thread, so it takes no lock:
    it records the request and calls a target that is itself signal-safe and idempotent
    (`Worker.drain`, `Wakeup.set`), so two requests never make a "second stop" (force).
    A request that comes before the target is set is kept and checked before the run.
    """

    def __init__(self) -> None:
        self.requested = False
        self.target: Callable[[], None] | None = None

    def request(self) -> None:
        self.requested = True
        target = self.target
        if target is not None:
            target()


class _Heartbeat(threading.Thread):
    """Beats every interval; notices a dead master; reopens logs; keeps the title current."""

    def __init__(self, spec: ChildSpec, reporter: Reporter, stopper: _Stopper) -> None:
        super().__init__(name="delayed-heartbeat", daemon=True)
        self.spec = spec
        self.reporter = reporter
        self.stopper = stopper
        self.reopen = False  # set by the SIGUSR1 handler (a plain flag: no lock in a handler)
        self.busy: Callable[[], int] = lambda: 0
        self._title = ""

    def run(self) -> None:
        orphaned = False
        while True:
            busy = self.busy()
            alive = self.reporter.send(protocol.Heartbeat(busy))
            if not orphaned and (not alive or os.getppid() != self.spec.master_pid):
                orphaned = True
                log.warning("the supervisor (pid %d) is gone: draining and exiting", self.spec.master_pid)
                self.stopper.request()
            if self.reopen:
                self.reopen = False
                count = reopen_log_files()
                log.info("child %d reopened %d log file(s)", os.getpid(), count)
            self._update_title(busy)
            time.sleep(self.spec.heartbeat_interval)

    def _update_title(self, busy: int) -> None:
        spec = self.spec
        if spec.kind in ("monitor", "scheduler"):
            title = spec.kind
        else:
            queues = ",".join(spec.queues) or "all"
            title = f"worker {spec.pool_name} queues={queues} busy {busy}/{spec.max_claims}"
        if title != self._title:
            self._title = title
            set_title(title)


def _reset_signals(stopper: _Stopper, heartbeat: _Heartbeat) -> None:
    for sig in (signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGCHLD else signal.SIG_IGN)
    # The master decides: a child leads its own process group, so a terminal's Ctrl-C or
    # Ctrl-\ reaches only the master; these are ignored anyway, so that a signal sent to
    # every delayed-supervisor process (pkill) leaves the decision to the master, and a
    # child in a background group that writes to the terminal is not stopped (SIGTTOU).
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)
    # Handlers only record and wake, taking no lock (not even an Event's): the heartbeat
    # thread and the worker's loop log, and the heartbeat reopens the log files.
    signal.signal(signal.SIGTERM, lambda _s, _f: stopper.request())
    signal.signal(signal.SIGUSR1, lambda _s, _f: setattr(heartbeat, "reopen", True))


def run_child(spec: ChildSpec) -> int:
    """The body of a forked child; returns its exit status (the caller calls os._exit)."""
    for fd in spec.close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    stopper = _Stopper()
    reporter = Reporter(spec.report_fd)
    heartbeat = _Heartbeat(spec, reporter, stopper)
    _reset_signals(stopper, heartbeat)
    set_config(spec.config)  # also drops any engine inherited from the master
    statsd.install(spec.config)  # this process's own socket: job timings, monitor gauges
    prometheus.install(spec.config)  # [prometheus] multiproc_dir: this child's own metric files
    heartbeat.start()
    try:
        setup_if_configured()  # Django, in this process after the fork (its own connections)
        if spec.on_worker_boot is not None:
            spec.on_worker_boot()
        if spec.kind == "worker" and spec.tracing:
            instrument_from_config(spec.config)  # after the hook set up the provider
        if spec.kind == "monitor":
            return _run_monitor(spec, reporter, stopper)
        if spec.kind == "scheduler":
            return _run_scheduler(spec, reporter, stopper)
        return _run_worker(spec, reporter, stopper, heartbeat)
    except SchemaOutOfDate as exc:  # the master checked at start; a migrate rolled back since
        log.error("child %d of pool %s: %s", os.getpid(), spec.pool_name, exc)
        return EXIT_BOOT_FAILED
    except Exception:
        log.exception("child %d of pool %s failed while booting", os.getpid(), spec.pool_name)
        return EXIT_BOOT_FAILED


def _run_worker(spec: ChildSpec, reporter: Reporter, stopper: _Stopper, heartbeat: _Heartbeat) -> int:
    worker = Worker(
        queues=spec.queues,
        max_claims=spec.max_claims,
        min_priority=spec.min_priority,
        max_priority=spec.max_priority,
        config=spec.config,
        pool=spec.pool_name,
    )
    worker.on_fenced = exit_fenced

    worker.executor.on_job_start, worker.executor.on_job_end = _job_hooks(spec.running, reporter)
    heartbeat.busy = lambda: worker.busy
    # drain() before run() still stops it: the worker clears its flags only after a run.
    stopper.target = worker.drain
    events.subscribe("delayed.worker.reserve_jobs", DatabaseWatch(reporter, worker.name).on_reserve)
    reporter.send(protocol.Booted(worker.name))
    if stopper.requested:  # TERM during boot: nothing claimed yet, nothing to drain
        return 0
    return worker.run(exit_on_complete=False, install_signals=False)


def _job_hooks(
    running: RunningTable | None, reporter: Reporter
) -> tuple[Callable[[JobRecord, float], None], Callable[[JobRecord], None]]:
    """The executor's start and end hooks: the thread's slot in the shared table, written
    before perform runs (no system call); a report line for a thread without a slot, and
    for every async job (the event loop's one thread runs many at once: a slot holds one)."""

    def slot() -> int | None:
        if running is None or in_loop_thread():
            return None
        return running.slot_for_thread()

    def on_job_start(record: JobRecord, max_run_time: float) -> None:
        index = slot()
        if running is not None and index is not None:
            running.start(index, record.id, time.monotonic(), max_run_time)
        else:
            thread = threading.current_thread().name
            reporter.send(protocol.Started(record.id, time.monotonic(), max_run_time, thread))

    def on_job_end(record: JobRecord) -> None:
        index = slot()
        if running is not None and index is not None:
            running.end(index)
        else:
            reporter.send(protocol.Ended(record.id))

    return on_job_start, on_job_end


def _run_monitor(spec: ChildSpec, reporter: Reporter, stopper: _Stopper) -> int:
    stop = Wakeup()
    stopper.target = stop.set
    if stopper.requested:
        stop.set()
    reporter.send(protocol.Booted(f"monitor pid:{os.getpid()}"))
    if spec.config.section("prometheus").bind:
        _serve_prometheus(spec.config)
    try:
        Monitor(spec.config).run(stop)
    finally:
        stop.close()
    return 0


def _serve_prometheus(config: Any) -> None:
    """[prometheus] bind: this host's /metrics from the monitor child (table gauges, and the
    other children's job metrics from multiproc_dir). A busy port is logged, not fatal: the
    monitor goes on, and a respawned child would only hit the same port again."""
    try:
        prometheus.start_exporter(config)
    except Exception as exc:
        log.error("monitor child: no Prometheus exporter: %s", exc)


def _run_scheduler(spec: ChildSpec, reporter: Reporter, stopper: _Stopper) -> int:
    """The cron scheduler: enqueues due ticks until TERM (nothing to drain: a tick is one
    short transaction, and one cut short by the exit is rolled back and caught up later)."""
    stop = Wakeup()  # set by the TERM handler: no threading.Event (see delayed.wakeup)
    stopper.target = stop.set
    if stopper.requested:
        stop.set()
    scheduler = Scheduler(spec.config, spec.cron_entries)
    reporter.send(protocol.Booted(f"scheduler pid:{os.getpid()}"))
    try:
        scheduler.run(stop)
    finally:
        stop.close()
    return 0
