"""`delayed-supervisor -c delayed.toml`: the preforking master.

The master loads the config and the user's job modules, then forks children; each child
runs a `Worker` (a thread pool of `max_claims`) for its pool and reports, over a pipe,
which job each thread runs and since when (see `supervisor_child`). The master itself
never works a job and holds no database connection between its short reclaim writes.

One loop, one thread. Signal handlers only queue the signal and write a byte to a
self-pipe; the loop wakes on that pipe or on a child's report, then, in order: handles
queued signals (`handle_<name>`), reads reports, reaps exited children (waitpid), kills
what must die (max_run_time, stale heartbeat, drain timeout), recycles children over
max_memory_mb, spawns what is missing (with a crash-loop back-off), and tells systemd.

Signals: TERM/INT drain (children finish their running jobs; after graceful_timeout the
rest are killed and their jobs released at once; exit 0), QUIT stops fast (kill, release,
exit 0), HUP reloads the file and replaces every child gracefully, TTIN/TTOU add or remove
one child of the first pool, USR1 reopens log files (the master's and the children's).

What happens to the jobs of a child that ends (design.md "Decisions"):
- it exited after a drain we asked for: leftover locks (normally none) are released;
- it was killed for max_run_time: the overdue job counts a failed attempt with last_error
  "max_run_time of N s exceeded"; its other jobs are released without losing an attempt;
- it died unexplained (crash, OOM, SIGKILL from outside) or stopped heartbeating: every
  job it held counts an attempt, with a last_error naming the signal or exit status, so a
  job that kills its process cannot retry forever.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from . import events, prometheus, statsd
from .backends import backend_for
from .config import Config, PoolSettings, build_config, set_config
from .db import create_engine, describe_error, redact
from .errors import ConfigError, DelayedError
from .loader import import_modules
from .logs import setup_logging
from .priority import resolve as resolve_priority
from .retry import failure_outcome
from .schema import get_table
from .supervisor_child import ChildSpec, reopen_log_files, run_child, set_title
from .systemd import Notifier

log = logging.getLogger("delayed.supervisor")

# A child that dies unexplained before it booted, or before it finished any job and sooner
# than this after its spawn, counts towards a crash loop; one that booted and finished a
# job, or lived this long, ends the streak.
CRASH_WINDOW = 2.0
MAX_BACKOFF = 60.0
HEARTBEAT_INTERVAL = 1.0
MEMORY_CHECK_INTERVAL = 1.0
RECLAIM_RETRY_INTERVAL = 5.0
# A claim a child sent just before it was killed can still commit on the server after the
# master's first look: look again after these delays, releasing whatever turned up.
RECHECK_DELAYS = (3.0, 30.0)
UNREAPED_LIMIT = 10.0  # seconds a SIGKILLed child may stay unreaped before we stop waiting

# Reasons a child ended (the `reason` of delayed.supervisor.child_exited).
CRASHED = "crashed"  # died on its own: signal or non-zero status (attempts + 1 on its jobs)
EXITED = "exited"  # exited 0 without being asked
HEARTBEAT = "heartbeat"  # killed: no heartbeat for heartbeat_timeout (attempts + 1)
MAX_RUN_TIME = "max_run_time"  # a job passed its max_run_time (+ grace)
MEMORY = "memory"  # drained: RSS over max_memory_mb
RELOAD = "reload"  # drained: replaced after HUP
SCALE_DOWN = "scale_down"  # drained: TTOU
SHUTDOWN = "shutdown"  # drained: TERM/INT
DRAIN_TIMEOUT = "drain_timeout"  # killed: did not finish draining within graceful_timeout
QUIT = "quit"  # killed: QUIT (fast stop)
ABANDONED = "abandoned"  # killed but never reaped (should not happen)


# ----------------------------------------------------------------------------- settings
@dataclass
class Pool:
    """A group of identical children: what they work on and how many there should be."""

    name: str
    workers: int
    max_claims: int
    queues: list[str] = field(default_factory=list)
    min_priority: int | str | None = None
    max_priority: int | str | None = None
    kind: str = "worker"  # or "monitor"
    failures: int = 0  # children in a row that died soon after starting
    next_spawn_at: float = 0.0  # crash-loop back-off


@dataclass
class Settings:
    """Everything the master runs with; rebuilt from the file on HUP."""

    config: Config
    path: str | None
    pools: list[Pool]
    graceful_timeout: float
    max_memory_mb: int | None
    pidfile: str | None
    log_level: str
    log_file: str | None
    heartbeat_timeout: float
    max_run_time_grace: float
    on_worker_boot: Callable[[], Any] | None


def _pools(config: Config) -> list[Pool]:
    sup = config.supervisor
    default_claims = sup.max_claims or config.max_claims
    raw_pools = config.pools
    if not raw_pools:
        raw_pools = (PoolSettings(name="default", workers=sup.workers),)
    pools: list[Pool] = []
    for number, raw in enumerate(raw_pools, start=1):
        where = f"{config.source}: [[pool]] #{number}" if config.pools else f"{config.source}:"
        name = raw.name or f"pool-{number}"
        if any(p.name == name for p in pools):
            raise ConfigError(f"{where} name {name!r} is used by two pools; give each pool its own name")
        pool = Pool(
            name=name,
            workers=sup.workers if raw.workers is None else raw.workers,
            max_claims=raw.max_claims or default_claims,
            queues=list(config.queues if raw.queues is None else raw.queues),
            min_priority=config.min_priority if raw.min_priority is None else raw.min_priority,
            max_priority=config.max_priority if raw.max_priority is None else raw.max_priority,
        )
        for key in ("min_priority", "max_priority"):
            value = getattr(pool, key)
            if value is not None:
                try:
                    resolve_priority(value, config.priority_names)
                except DelayedError as exc:
                    raise ConfigError(f"{where} {key}: {exc}") from None
        pools.append(pool)
    if sup.monitor:
        pools.append(Pool("monitor", 1, 1, kind="monitor"))
    return pools


def _boot_hook(config: Config) -> Callable[[], Any] | None:
    target = config.supervisor.on_worker_boot
    if target is None:
        return None
    module_name, _, attr = target.partition(":")
    where = f"{config.source}: [supervisor] on_worker_boot"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r}: {exc}") from None
    hook = getattr(module, attr, None)
    if not callable(hook):
        raise ConfigError(f"{where}: {module_name!r} has no function {attr!r}")
    return hook


def _check_monitor(config: Config) -> None:
    if not config.supervisor.monitor:
        return
    try:
        module = importlib.import_module("delayed.monitor")
    except ImportError as exc:
        raise ConfigError(
            f"{config.source}: [supervisor] monitor = true, but delayed.monitor cannot be imported "
            f"({exc}); set monitor = false"
        ) from None
    if not hasattr(module, "Monitor"):
        raise ConfigError(
            f"{config.source}: [supervisor] monitor = true, but delayed.monitor has no Monitor class"
        )


def load_settings(path: str | None, environ: dict[str, str] | None = None) -> Settings:
    """Read and check everything; a ConfigError names the file and the key."""
    config = build_config(path, environ=environ)
    pools = _pools(config)
    sup = config.supervisor
    import_modules(config.require)
    _check_monitor(config)
    if config.tracing.enabled:
        from .tracing import check_available

        check_available()  # a missing extra is one clear exit 2, not a crash loop of children
    return Settings(
        config=config,
        path=path,
        pools=pools,
        graceful_timeout=sup.graceful_timeout,
        max_memory_mb=sup.max_memory_mb,
        pidfile=sup.pidfile,
        log_level=sup.log_level or config.log_level,
        log_file=sup.log_file,
        heartbeat_timeout=sup.heartbeat_timeout,
        max_run_time_grace=sup.max_run_time_grace,
        on_worker_boot=_boot_hook(config),
    )


# ----------------------------------------------------------------------------- children
@dataclass
class RunningJob:
    id: int
    started: float  # time.monotonic() in the child, one clock for the whole host
    max_run_time: float
    thread: str


@dataclass
class Child:
    pid: int
    pool: Pool
    config: Config
    fd: int
    spawned_at: float
    name: str
    last_seen: float
    booted: bool = False
    eof: bool = False
    busy: int = 0
    done: int = 0  # jobs it reported finished
    buffer: bytes = b""
    jobs: dict[int, RunningJob] = field(default_factory=dict)
    overdue: dict[int, RunningJob] = field(default_factory=dict)
    retire_reason: str | None = None  # asked to drain (SIGTERM) because of this
    term_deadline: float | None = None
    kill_reason: str | None = None  # SIGKILLed by us because of this
    killed_at: float | None = None
    killed_jobs: dict[int, RunningJob] = field(default_factory=dict)  # overdue when killed
    next_memory_check: float = 0.0


def _healthy(child: Child, now: float) -> bool:
    """Booted, and finished a job or lived past CRASH_WINDOW: not part of a crash loop."""
    return child.booted and (child.done > 0 or now - child.spawned_at >= CRASH_WINDOW)


def describe_status(status: int | None) -> str:
    """'killed by signal SIGKILL' or 'exited with status 3', from a waitpid status."""
    if status is None:
        return "was never reaped"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by signal {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def worker_name(pid: int) -> str:
    """The name a child's Worker locks rows with (same formula as default_worker_name)."""
    try:
        return f"host:{socket.gethostname()} pid:{pid}"
    except OSError:  # pragma: no cover
        return f"pid:{pid}"


# ----------------------------------------------------------------------------- reclaiming
@dataclass
class Reclaim:
    """What to do with the rows a dead child still has locked (in the child's database)."""

    pid: int
    worker: str
    config: Config  # the child's: after a HUP it may differ from the master's current one
    attempt_all: str | None = None  # last_error for every row (unexplained death)
    attempt: dict[int, str] = field(default_factory=dict)  # last_error for these ids
    created: float = field(default_factory=time.monotonic)
    next_try: float = 0.0
    tries: int = 0
    recheck: bool = False  # a later look: release only, report only when something was found


class Reclaimer:
    """Short-lived database writes from the master: no connection outlives a call.

    Engines use NullPool, so they hold no connection between calls and nothing of them is
    usable (or harmful) in a child after a fork. A reclaim that fails (database down) is
    retried every few seconds until the locks would have expired anyway.
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

    def submit(self, job: Reclaim, recheck: bool = True) -> None:
        """Reclaim now (or retry later), and schedule the later looks for late claims."""
        if not self._run(job):
            self.pending.append(job)
        now = time.monotonic()
        for delay in RECHECK_DELAYS if recheck else ():
            self.pending.append(Reclaim(job.pid, job.worker, job.config, next_try=now + delay, recheck=True))

    def retry(self, now: float) -> None:
        """Try failed reclaims again; give up once the locks have expired anyway."""
        for job in list(self.pending):
            if now < job.next_try:
                continue
            if now - job.created > job.config.lock_timeout and not job.recheck:
                log.error("giving up reclaiming the jobs of %s: their locks have expired", job.worker)
                self.pending.remove(job)
            elif self._run(job):
                self.pending.remove(job)

    def flush(self) -> None:
        """Before exit: one last try for every pending reclaim (and one late look)."""
        rechecked: set[str] = set()
        for job in list(self.pending):
            if job.recheck and job.worker in rechecked:
                continue
            rechecked.add(job.worker)
            self._run(job)
        self.pending.clear()

    def _run(self, job: Reclaim) -> bool:
        job.tries += 1
        config = job.config
        try:
            engine = self.engine(config.database_url)
            backend = backend_for(engine, get_table(config.table_name))
            with engine.connect() as conn:
                rows = backend.locked_rows(conn, job.worker)
                if conn.in_transaction():
                    conn.commit()
                outcomes = []
                release: list[int] = []
                for row in rows:
                    error = None if job.recheck else job.attempt_all or job.attempt.get(row.id)
                    if error:
                        outcomes.append(failure_outcome(row, error, config))
                    else:
                        release.append(row.id)
                if outcomes:
                    backend.complete(conn, outcomes)
                released = backend.release(conn, job.worker, release) if release else 0
        except Exception as exc:
            job.next_try = time.monotonic() + RECLAIM_RETRY_INTERVAL
            log.error(
                "reclaiming the jobs of %s on %s failed (try %d): %s; trying again in %.0f s",
                job.worker,
                redact(config.database_url),
                job.tries,
                describe_error(exc),
                RECLAIM_RETRY_INTERVAL,
            )
            return False
        if job.recheck and not rows:
            return True
        if rows:
            log.warning(
                "reclaimed %d job(s) of %s%s: %d released, %d counted a failed attempt (ids %s)",
                len(rows),
                job.worker,
                " (claimed as it died)" if job.recheck else "",
                released,
                len(outcomes),
                [r.id for r in rows],
            )
        events.emit(
            "delayed.supervisor.locks_reclaimed",
            pid=job.pid,
            worker=job.worker,
            count=len(rows),
            released=released,
            attempted=len(outcomes),
            ids=[r.id for r in rows],
        )
        return True


# ----------------------------------------------------------------------------- the master
class Supervisor:
    SIGNALS = (
        signal.SIGTERM,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGHUP,
        signal.SIGTTIN,
        signal.SIGTTOU,
        signal.SIGUSR1,
        signal.SIGCHLD,
    )

    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.pools = settings.pools
        self.notifier = notifier or Notifier()
        self.reclaimer = Reclaimer()
        self.children: dict[int, Child] = {}
        self.pid = os.getpid()
        self.signals: list[int] = []
        self.wake_r, self.wake_w = -1, -1
        self.stopping = False
        self.stop_deadline = 0.0
        self.ready_sent = False
        self._title = ""

    # -- setup -----------------------------------------------------------------------------
    def _install_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGCHLD:
            if len(self.signals) < 10:
                self.signals.append(signum)
            else:
                log.warning("ignoring %s: too many signals queued", signal.Signals(signum).name)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_w, b".")

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped; the exit status (0 after TERM/INT/QUIT)."""
        self._install_signals()
        log.info(
            "supervisor %d starting: %s; database %s",
            self.pid,
            ", ".join(f"{p.name} {p.workers}x{p.max_claims}" for p in self.pools),
            redact(self.settings.config.database_url),
        )
        status = 0
        try:
            self._spawn_missing(time.monotonic())
            while not (self.stopping and not self.children):
                now = time.monotonic()
                self._sleep(now)
                self._handle_signals()
                now = time.monotonic()
                self._reap(now)
                self._enforce(now)
                if not self.stopping:
                    self._check_memory(now)
                    self._spawn_missing(now)
                self.reclaimer.retry(now)
                self._report(now)
        except Exception:
            log.exception("the supervisor failed; killing its children")
            self._emergency_stop()
            status = 1
        self.reclaimer.flush()
        self.reclaimer.dispose()
        log.info("supervisor %d exiting", self.pid)
        return status

    def _sleep(self, now: float) -> None:
        timeout = 1.0
        waits = [p.next_spawn_at - now for p in self.pools if p.next_spawn_at > now]
        ping = self.notifier.seconds_to_ping(now)
        timeout = max(0.0, min([timeout, *waits, *([ping] if ping is not None else [])]))
        fds = [self.wake_r] + [c.fd for c in self.children.values() if not c.eof]
        if self.signals:
            timeout = 0.0
        readable, _, _ = select.select(fds, [], [], timeout)
        for fd in readable:
            if fd == self.wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self.wake_r, 4096):
                        pass
        by_fd = {c.fd: c for c in self.children.values()}
        for fd in readable:
            if fd in by_fd:
                self._read_child(by_fd[fd])

    # -- reports from children -------------------------------------------------------------
    def _read_child(self, child: Child, until_eof: bool = False) -> None:
        while True:
            try:
                data = os.read(child.fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                child.eof = True
                return
            child.last_seen = time.monotonic()
            child.buffer += data
            *lines, child.buffer = child.buffer.split(b"\n")
            for line in lines:
                self._on_report(child, line.decode(errors="replace"))
            if not until_eof:
                return

    def _on_report(self, child: Child, line: str) -> None:
        kind, _, rest = line.partition(" ")
        try:
            if kind == "H":
                child.busy = int(rest)
            elif kind == "S":
                job_id, started, max_run_time, thread = rest.split(" ", 3)
                job = RunningJob(int(job_id), float(started), float(max_run_time), thread)
                child.jobs[job.id] = job
                child.busy = len(child.jobs)
            elif kind == "E":
                job_id_int = int(rest)
                if child.jobs.pop(job_id_int, None) is not None:
                    child.done += 1
                child.overdue.pop(job_id_int, None)
                child.busy = len(child.jobs)
            elif kind == "B":
                child.booted = True
                if rest.startswith("host:"):
                    child.name = rest
            else:
                log.debug("unknown report from child %d: %r", child.pid, line)
        except ValueError:
            log.warning("malformed report from child %d: %r", child.pid, line)

    # -- signals ---------------------------------------------------------------------------
    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name
            log.info("%s received", name)
            handler = getattr(self, f"handle_{name[3:].lower()}", None)
            if handler is not None:
                handler()

    def handle_term(self) -> None:
        """Graceful drain; a second TERM/INT during the drain stops at once (as QUIT)."""
        if self.stopping:
            log.warning("second stop signal: killing the children that are still draining")
            self.handle_quit()
            return
        now = time.monotonic()
        self.stopping = True
        self.stop_deadline = now + self.settings.graceful_timeout
        live = len(self.children)
        log.info(
            "draining %d child(ren): running jobs may finish for up to %.0f s",
            live,
            self.settings.graceful_timeout,
        )
        self.notifier.stopping(f"draining {live} children")
        for child in list(self.children.values()):
            self._retire(child, SHUTDOWN, now)

    handle_int = handle_term

    def handle_quit(self) -> None:
        """Fast stop: SIGKILL every child; the reaper releases their jobs at once."""
        now = time.monotonic()
        if not self.stopping:
            self.notifier.stopping("stopping now (QUIT)")
        self.stopping = True
        self.stop_deadline = now
        for child in list(self.children.values()):
            self._kill(child, QUIT, now)

    def handle_hup(self) -> None:
        """Reload the file; new children start with it, then the old ones drain."""
        if self.stopping:
            return
        self.notifier.reloading()
        try:
            settings = load_settings(self.settings.path)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready("reload failed; running the previous configuration")
            return
        if settings.pidfile != self.settings.pidfile:
            log.warning("pidfile changes only on restart; still writing %s", self.settings.pidfile)
            settings.pidfile = self.settings.pidfile
        if (settings.log_level, settings.log_file) != (self.settings.log_level, self.settings.log_file):
            setup_logging(settings.log_level, settings.log_file)
        set_config(settings.config)
        statsd.install(settings.config)  # a changed [statsd] takes effect for the master too
        self.settings = settings
        self.pools = settings.pools
        self.reclaimer.dispose()
        old = list(self.children.values())
        now = time.monotonic()
        self._spawn_missing(now)
        for child in old:
            self._retire(child, RELOAD, now)
        self.ready_sent = False
        log.info(
            "reloaded %s: %s; %d old child(ren) draining",
            settings.path,
            ", ".join(f"{p.name} {p.workers}x{p.max_claims}" for p in self.pools),
            len(old),
        )

    def handle_ttin(self) -> None:
        pool = self._first_worker_pool()
        if pool is not None and not self.stopping:
            pool.workers += 1
            log.info("TTIN: pool %s now wants %d children", pool.name, pool.workers)

    def handle_ttou(self) -> None:
        pool = self._first_worker_pool()
        if pool is None or self.stopping or pool.workers == 0:
            return
        pool.workers -= 1
        log.info("TTOU: pool %s now wants %d children", pool.name, pool.workers)
        live = self._live(pool)
        if len(live) > pool.workers:
            newest = max(live, key=lambda c: c.spawned_at)
            self._retire(newest, SCALE_DOWN, time.monotonic())

    def handle_usr1(self) -> None:
        count = reopen_log_files()
        log.info("USR1: reopened %d log file(s); asking the children to do the same", count)
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGUSR1)

    def _first_worker_pool(self) -> Pool | None:
        return next((p for p in self.pools if p.kind == "worker"), None)

    # -- asking children to go -------------------------------------------------------------
    def _retire(self, child: Child, reason: str, now: float) -> None:
        """SIGTERM: stop claiming, finish running jobs, exit. A replacement may start now."""
        if child.retire_reason is not None or child.kill_reason is not None:
            if self.stopping and child.term_deadline is not None:
                child.term_deadline = min(child.term_deadline, self.stop_deadline)
            return
        child.retire_reason = reason
        child.term_deadline = now + self.settings.graceful_timeout
        if self.stopping:
            child.term_deadline = min(child.term_deadline, self.stop_deadline)
        log.info("asking child %d (pool %s) to drain: %s", child.pid, child.pool.name, reason)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGTERM)

    def _kill(self, child: Child, reason: str, now: float) -> None:
        if child.kill_reason is not None:
            return
        child.kill_reason = reason
        child.killed_at = now
        log.warning("killing child %d (pool %s): %s", child.pid, child.pool.name, reason)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)

    # -- murder ----------------------------------------------------------------------------
    def _enforce(self, now: float) -> None:
        """max_run_time, heartbeats and drain deadlines; also give up on unreapable children."""
        grace = self.settings.max_run_time_grace
        for child in list(self.children.values()):
            if child.kill_reason is not None:
                if child.killed_at is not None and now - child.killed_at > UNREAPED_LIMIT:
                    log.error(
                        "child %d did not die %.0f s after SIGKILL; forgetting it", child.pid, UNREAPED_LIMIT
                    )
                    self._forget(child, None, now)
                continue
            for job in child.jobs.values():
                if job.id not in child.overdue and now - job.started >= job.max_run_time:
                    child.overdue[job.id] = job
                    log.warning(
                        "job %d on child %d passed its max_run_time of %g s; the child stops claiming "
                        "and is killed in %g s unless the job ends",
                        job.id,
                        child.pid,
                        job.max_run_time,
                        grace,
                    )
                    self._retire(child, MAX_RUN_TIME, now)
            due = [j for j in child.overdue.values() if now >= j.started + j.max_run_time + grace]
            if due:
                child.killed_jobs = dict(child.overdue)
                self._kill(child, MAX_RUN_TIME, now)
                for job in child.killed_jobs.values():
                    events.emit(
                        "delayed.supervisor.job_killed",
                        job_id=job.id,
                        pid=child.pid,
                        run_time=now - job.started,
                        max_run_time=job.max_run_time,
                    )
            elif now - child.last_seen > self.settings.heartbeat_timeout:
                log.error("child %d sent no heartbeat for %.0f s", child.pid, now - child.last_seen)
                self._kill(child, HEARTBEAT, now)
            elif child.term_deadline is not None and now >= child.term_deadline:
                self._kill(child, DRAIN_TIMEOUT, now)

    def _check_memory(self, now: float) -> None:
        limit = self.settings.max_memory_mb
        if limit is None:
            return
        import psutil

        for child in list(self.children.values()):
            if child.retire_reason or child.kill_reason or now < child.next_memory_check:
                continue
            child.next_memory_check = now + MEMORY_CHECK_INTERVAL
            try:
                rss_mb = psutil.Process(child.pid).memory_info().rss / (1024 * 1024)
            except psutil.Error:
                continue
            if rss_mb > limit:
                log.warning(
                    "child %d (pool %s) uses %.0f MiB, over max_memory_mb = %d: replacing it",
                    child.pid,
                    child.pool.name,
                    rss_mb,
                    limit,
                )
                self._retire(child, MEMORY, now)

    # -- reaping ---------------------------------------------------------------------------
    def _reap(self, now: float) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.get(pid)
            if child is not None:
                self._read_child(child, until_eof=True)  # the last reports, if any
                self._forget(child, status, now)

    def _forget(self, child: Child, status: int | None, now: float) -> None:
        self.children.pop(child.pid, None)
        with contextlib.suppress(OSError):
            os.close(child.fd)
        lifetime = now - child.spawned_at
        clean = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        if child.kill_reason is not None:
            reason = child.kill_reason if status is not None else ABANDONED
        elif child.retire_reason is not None and clean:
            reason = child.retire_reason
        else:
            reason = EXITED if clean else CRASHED
        how = describe_status(status)
        level = logging.INFO if reason not in (CRASHED, HEARTBEAT, MAX_RUN_TIME, EXITED) else logging.WARNING
        log.log(
            level,
            "child %d (pool %s) %s after %.1f s: %s",
            child.pid,
            child.pool.name,
            how,
            lifetime,
            reason,
        )
        events.emit(
            "delayed.supervisor.child_exited",
            pid=child.pid,
            pool=child.pool.name,
            reason=reason,
            status=status,
            lifetime=lifetime,
        )
        self._count_crash(child, reason, lifetime, now)
        if child.pool.kind == "worker":
            # A child that exited by itself finished its claims; a killed one may not have.
            self.reclaimer.submit(self._reclaim_plan(child, reason, how), recheck=not clean)

    def _reclaim_plan(self, child: Child, reason: str, how: str) -> Reclaim:
        plan = Reclaim(child.pid, child.name, child.config)
        if reason == CRASHED:
            plan.attempt_all = f"worker process {child.pid} ({child.name}) {how} while running this job"
        elif reason == HEARTBEAT:
            plan.attempt_all = (
                f"worker process {child.pid} ({child.name}) sent no heartbeat for "
                f"{self.settings.heartbeat_timeout:g} s and was killed while running this job"
            )
        elif reason == MAX_RUN_TIME:
            plan.attempt = {
                job.id: f"max_run_time of {job.max_run_time:g} s exceeded"
                for job in child.killed_jobs.values()
            }
        return plan

    def _count_crash(self, child: Child, reason: str, lifetime: float, now: float) -> None:
        """Back off when children die unexplained before doing any work (never spin).

        Only such early deaths count: a child that had finished jobs, or lived a while, is
        replaced at once whatever killed it (a job that crashes its process is limited by
        its attempts, which the reclaim counts).
        """
        pool = child.pool
        early = not child.booted or (child.done == 0 and lifetime < CRASH_WINDOW)
        if reason not in (CRASHED, EXITED) or not early:
            if not early:
                pool.failures = 0
            return
        pool.failures += 1
        delay = min(MAX_BACKOFF, 2.0 ** (pool.failures - 1))
        pool.next_spawn_at = now + delay
        log.warning(
            "pool %s: %d child(ren) in a row died %s%s; next spawn in %.0f s",
            pool.name,
            pool.failures,
            "before finishing a job" if child.booted else "before booting",
            " (crash loop)" if pool.failures > 1 else "",
            delay,
        )

    def _emergency_stop(self) -> None:
        for child in list(self.children.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        for child in list(self.children.values()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
            self.reclaimer.submit(Reclaim(child.pid, child.name, child.config))
        self.children.clear()

    # -- spawning --------------------------------------------------------------------------
    def _live(self, pool: Pool) -> list[Child]:
        return [
            c for c in self.children.values() if c.pool is pool and not c.retire_reason and not c.kill_reason
        ]

    def _spawn_missing(self, now: float) -> None:
        for pool in self.pools:
            if pool.failures and any(
                c.booted and now - c.spawned_at >= CRASH_WINDOW for c in self._live(pool)
            ):
                pool.failures = 0  # a healthy child: whatever crashed before is not a loop
            if now < pool.next_spawn_at:
                continue
            for _ in range(pool.workers - len(self._live(pool))):
                if not self._spawn(pool, now):
                    break

    def _spawn(self, pool: Pool, now: float) -> bool:
        settings = self.settings
        read_fd, write_fd = os.pipe()
        spec = ChildSpec(
            kind=pool.kind,
            pool_name=pool.name,
            queues=list(pool.queues),
            min_priority=pool.min_priority,
            max_priority=pool.max_priority,
            max_claims=pool.max_claims,
            config=settings.config,
            master_pid=self.pid,
            report_fd=write_fd,
            close_fds=[read_fd, self.wake_r, self.wake_w, *(c.fd for c in self.children.values())],
            on_worker_boot=settings.on_worker_boot,
            heartbeat_interval=min(HEARTBEAT_INTERVAL, settings.heartbeat_timeout / 3),
        )
        self.reclaimer.dispose()  # NullPool holds nothing; dispose anyway so no engine state crosses
        for handler in logging.getLogger().handlers:
            handler.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            pool.next_spawn_at = now + 5.0
            log.error("cannot fork a child for pool %s: %s; trying again in 5 s", pool.name, exc)
            return False
        if pid == 0:  # the child
            status = 1
            try:
                status = run_child(spec)
            except BaseException:
                log.exception("child %d crashed", os.getpid())
            finally:
                with contextlib.suppress(Exception):
                    for handler in logging.getLogger().handlers:
                        handler.flush()
                os._exit(status)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.children[pid] = Child(pid, pool, settings.config, read_fd, now, worker_name(pid), last_seen=now)
        log.info("spawned child %d for pool %s", pid, pool.name)
        events.emit("delayed.supervisor.child_spawned", pid=pid, pool=pool.name)
        return True

    # -- titles, systemd -------------------------------------------------------------------
    def _report(self, now: float) -> None:
        counts = []
        for pool in self.pools:
            counts.append(f"{pool.name} {len(self._live(pool))}/{pool.workers}")
        busy = sum(c.busy for c in self.children.values())
        draining = sum(1 for c in self.children.values() if c.retire_reason or c.kill_reason)
        status = ", ".join(counts) + f"; {busy} jobs running"
        if draining:
            status += f"; {draining} draining"
        if self.stopping:
            status = "stopping: " + status
        title = f"master {status} [{self.settings.path or 'defaults'}]"
        if title != self._title:
            self._title = title
            set_title(title)
        if not self.ready_sent and not self.stopping and self._all_booted():
            self.ready_sent = True
            log.info("all children are running: %s", status)
            self.notifier.ready(status)
        self.notifier.status(status)
        self.notifier.ping(now)

    def _all_booted(self) -> bool:
        for pool in self.pools:
            booted = [c for c in self._live(pool) if c.booted]
            if len(booted) < pool.workers:
                return False
        return True


# ----------------------------------------------------------------------------- entry point
def _write_pidfile(path: str) -> None:
    try:
        with open(path) as handle:
            other = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        other = 0
    if other and other != os.getpid():
        try:
            os.kill(other, 0)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise ConfigError(f"pidfile {path} names process {other}, which is running") from None
        else:
            raise ConfigError(
                f"pidfile {path} names process {other}, which is running; is another supervisor running?"
            )
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w") as handle:
        handle.write(f"{os.getpid()}\n")
    os.replace(temp, path)


def _remove_pidfile(path: str) -> None:
    try:
        with open(path) as handle:
            if handle.read().strip() == str(os.getpid()):
                os.unlink(path)
    except OSError:
        pass


def serve(path: str | None, check: bool = False) -> int:
    """`delayed supervise -c FILE`: the exit status: 0 after a stop signal, 2 on a bad config."""
    try:
        settings = load_settings(path)
    except DelayedError as exc:  # ConfigError, or [tracing] enabled without the otel extra
        print(f"delayed-supervisor: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a job module that raises on import
        print(
            f"delayed-supervisor: error: importing the modules in require failed: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 2
    if check:
        print(f"{path or 'defaults'}: OK ({', '.join(p.name for p in settings.pools)})")
        return 0
    set_config(settings.config)
    statsd.install(settings.config)  # the master's own events: children spawned, exited, killed
    prometheus.clear_multiproc_dir(settings.config)  # last run's metric files; children write anew
    try:
        setup_logging(settings.log_level, settings.log_file)
    except OSError as exc:
        print(f"delayed-supervisor: error: {path}: [supervisor] log_file: {exc}", file=sys.stderr)
        return 2
    if settings.pidfile:
        try:
            _write_pidfile(settings.pidfile)
        except (ConfigError, OSError) as exc:
            print(f"delayed-supervisor: error: {path}: [supervisor] pidfile: {exc}", file=sys.stderr)
            return 2
    try:
        return Supervisor(settings).run()
    finally:
        if settings.pidfile:
            _remove_pidfile(settings.pidfile)
        logging.shutdown()


if __name__ == "__main__":  # pragma: no cover - `python -m delayed.supervisor` = `delayed supervise`
    from .cli import supervise_alias

    supervise_alias()
