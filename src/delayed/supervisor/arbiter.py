"""The master loop: one thread that forks, watches, kills, reaps and replaces children.

Signal handlers only record the signal and write a byte to a self-pipe (no logging, no
locks: a handler runs between two bytecodes of whatever the loop was doing). The loop
wakes on that pipe or on a child's report and then takes its steps in order:

    _sleep      wait for a signal, a report or the next deadline; read the reports
    signals     handle_<name> for each queued signal
    reap        waitpid the children that exited; reclaim the jobs they held
    murder      SIGKILL what must die: max_run_time (+ grace), no heartbeat, drain deadline
    recycle     drain children over max_memory_mb
    manage      spawn what each pool is missing (with a crash-loop back-off)
    reclaim     retry the reclaims the database refused (with back-off)
    report      process title, systemd status and watchdog; whether the children reach
                the database (logged once per change)

After the loop, each reclaim the database refused gets one last try when its retry is due
(at most RECLAIM_RETRY_INTERVAL later; another signal skips it), never a hot retry.

Signals: TERM/INT drain (children finish their running jobs; after graceful_timeout the
rest are killed and their jobs released at once; exit 0), QUIT stops fast (kill, release,
exit 0), HUP reloads the file and replaces every child gracefully, TTIN/TTOU add or remove
one child of the first pool, USR1 reopens log files (the master's and the children's).

Each child leads its own process group (setpgid right after the fork), so what a job
starts (a subprocess, a shell pipeline) is in its child's group. Every SIGKILL the master
sends goes to the whole group (`kill_group`): a job killed for max_run_time, a silent
child, a drain that timed out, QUIT and the emergency stop leave no subprocess running
beside the retry; the group of a child that crashed is swept the same way when it is
reaped. The signals the master forwards (TERM to drain, USR1) go to the child alone: a
draining child lets its running jobs, and their subprocesses, finish. A terminal's Ctrl-C
(SIGINT to the foreground group) now reaches only the master, which decides for all.

The system calls that touch other processes go through `Processes`, so the loop's steps
can be tested in-process with fork, kill and waitpid replaced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import select
import signal
import time
from typing import Any

import psutil

from .. import events, statsd, systemd
from ..config import set_config
from ..db import redact
from ..errors import ConfigError
from ..logs import reopen_log_files, setup_logging
from .child import ENDINGS, Child, Database, Ending, Reason, State, describe_status, exited_cleanly
from .child_process import ChildSpec, run_child, set_title
from .pools import CRASH_WINDOW, PoolState
from .reclaim import Reclaim, Reclaimer
from .running import RunningTable
from .settings import Settings, load_settings

log = logging.getLogger("delayed.supervisor")

HEARTBEAT_INTERVAL = 1.0
MEMORY_CHECK_INTERVAL = 1.0
UNREAPED_LIMIT = 10.0  # seconds a SIGKILLed child may stay unreaped before we stop waiting
MAX_QUEUED_SIGNALS = 10


class DatabaseDown(enum.Enum):
    """How many worker children report that they cannot reach the database."""

    NONE = "none"
    SOME = "some"  # some do, others reach it
    ALL = "all"  # every child that has said anything says so


class Processes:
    """The system calls the arbiter makes on other processes (replaced in unit tests)."""

    def fork(self, spec: ChildSpec) -> int:
        """Fork a child that runs `spec` and never returns; its pid. OSError when fork fails."""
        for handler in logging.getLogger().handlers:
            handler.flush()
        pid = os.fork()
        if pid == 0:  # the child
            status = 1
            try:
                os.setpgid(0, 0)  # its own group, before it starts anything a kill must reach
                status = run_child(spec)
            except BaseException:
                log.exception("child %d crashed", os.getpid())
            finally:
                with contextlib.suppress(Exception):
                    for handler in logging.getLogger().handlers:
                        handler.flush()
                os._exit(status)
        # Also here, so the group exists before fork() returns to the loop, whichever of the
        # two runs first (EACCES/ESRCH: the child did it already, or is gone).
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        return pid

    def kill(self, pid: int, sig: int) -> None:
        """Send `sig` to the child alone; one already gone is not an error (the reaper sees it)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def kill_group(self, pid: int, sig: int) -> None:
        """Send `sig` to the child's process group: the child and whatever its jobs started.

        Safe after the child was reaped: while a process of the group lives, the group's id
        (the child's pid) cannot be given to a new process. No group (the child never made
        it): the child alone.
        """
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            self.kill(pid, sig)

    def wait(self, pid: int = -1, block: bool = False) -> tuple[int, int]:
        """(pid, status) of an exited child, (0, 0) when none; ChildProcessError when none is left."""
        return os.waitpid(pid, 0 if block else os.WNOHANG)

    def rss_mb(self, pid: int) -> float | None:
        """Resident memory in MiB; None when the process cannot be read."""
        try:
            return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
        except psutil.Error:
            return None


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

    def __init__(
        self,
        settings: Settings,
        notifier: systemd.Notifier | None = None,
        processes: Processes | None = None,
    ) -> None:
        self.settings = settings
        self.pools = [PoolState.of(pool) for pool in settings.pools]
        self.notifier = notifier or systemd.Notifier()
        self.processes = processes or Processes()
        self.reclaimer = Reclaimer()
        self.children: dict[int, Child] = {}
        self.pid = os.getpid()
        self.signals: list[int] = []  # queued by the handler, handled by the loop
        self.ignored_signals: list[int] = []  # over MAX_QUEUED_SIGNALS; logged by the loop
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stopping = False
        self.stop_deadline = 0.0
        self.ready_sent = False
        self.running_logged = False  # "all children are running": said once every child works
        self.database_down = DatabaseDown.NONE
        self._title = ""

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped; the exit status (0 after TERM/INT/QUIT)."""
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)
        log.info(
            "supervisor %d starting: %s; database %s",
            self.pid,
            ", ".join(f"{p.name} {p.workers}x{p.max_claims}" for p in self.pools),
            redact(self.settings.config.database_url),
        )
        status = 0
        try:
            self.manage(time.monotonic())
            while not (self.stopping and not self.children):
                self._sleep(time.monotonic())
                self.handle_signals()
                now = time.monotonic()
                self.reap(now)
                self.murder(now)
                if not self.stopping:
                    self.recycle(now)
                    self.manage(now)
                self.reclaimer.retry(now)
                self.report(now)
        except Exception:
            log.exception("the supervisor failed; killing its children")
            self._emergency_stop()
            status = 1
        self._last_reclaims()
        self.reclaimer.dispose()
        log.info("supervisor %d exiting", self.pid)
        return status

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """The signal handler: record, wake the loop; nothing else (no logging, no locks)."""
        if signum != signal.SIGCHLD:
            if len(self.signals) < MAX_QUEUED_SIGNALS:
                self.signals.append(signum)
            else:
                self.ignored_signals.append(signum)
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.wake_w, b".")

    def _last_reclaims(self) -> None:
        """Before exit: one last try for what the database refused, when its retry is due.

        Waits at most RECLAIM_RETRY_INTERVAL (a reclaim refused just before the stop is not
        retried milliseconds later); a signal during the wait skips those last tries.
        """
        wait = self.reclaimer.seconds_to_last_tries(time.monotonic())
        interrupted = False
        if wait > 0:
            log.warning(
                "exiting with %d reclaim(s) the database refused: one last try in %.0f s "
                "(another signal skips it)",
                len(self.reclaimer.failed()),
                wait,
            )
            interrupted = self._wait_for_signal(wait)
        self.reclaimer.flush(skip_failed=interrupted)

    def _wait_for_signal(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True when a signal (other than SIGCHLD) came."""
        deadline = time.monotonic() + timeout
        while not self.signals:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            readable, _, _ = select.select([self.wake_r], [], [], left)
            if readable:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self.wake_r, 4096):
                        pass
        while self.signals:
            name = signal.Signals(self.signals.pop(0)).name
            log.info("%s received while exiting: skipping the last reclaim tries", name)
        return True

    def _sleep(self, now: float) -> None:
        """Wait for a signal, a report or the next deadline (at most 1 s); read the reports."""
        timeout = 1.0
        waits = [p.next_spawn_at - now for p in self.pools if p.next_spawn_at > now]
        ping = self.notifier.seconds_to_ping(now)
        timeout = max(0.0, min([timeout, *waits, *([ping] if ping is not None else [])]))
        fds = [self.wake_r] + [c.fd for c in self.children.values() if not c.eof]
        if self.signals:
            timeout = 0.0
        readable, _, _ = select.select(fds, [], [], timeout)
        if self.wake_r in readable:
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
            child.feed(data)
            if not until_eof:
                return

    # -- signals ---------------------------------------------------------------------------
    def handle_signals(self) -> None:
        """Log what the handler recorded, then call handle_<name> for each queued signal."""
        if self.ignored_signals:
            ignored, self.ignored_signals = self.ignored_signals, []
            for signum in ignored:
                log.warning("ignoring %s: too many signals queued", signal.Signals(signum).name)
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
            self._retire(child, Reason.SHUTDOWN, now)

    handle_int = handle_term

    def handle_quit(self) -> None:
        """Fast stop: SIGKILL every child; the reaper releases their jobs at once."""
        now = time.monotonic()
        if not self.stopping:
            self.notifier.stopping("stopping now (QUIT)")
        self.stopping = True
        self.stop_deadline = now
        for child in list(self.children.values()):
            self._kill(child, Reason.QUIT, now)

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
            settings = dataclasses.replace(settings, pidfile=self.settings.pidfile)
        if (settings.log_level, settings.log_file) != (self.settings.log_level, self.settings.log_file):
            setup_logging(settings.log_level, settings.log_file)
        set_config(settings.config)
        statsd.install(settings.config)  # a changed [statsd] takes effect for the master too
        self.settings = settings
        self.pools = [PoolState.of(pool) for pool in settings.pools]
        self.reclaimer.dispose()
        old = list(self.children.values())
        now = time.monotonic()
        self.manage(now)
        for child in old:
            self._retire(child, Reason.RELOAD, now)
        self.ready_sent = self.running_logged = False
        log.info(
            "reloaded %s: %s; %d old child(ren) draining",
            settings.path,
            ", ".join(f"{p.name} {p.workers}x{p.max_claims}" for p in self.pools),
            len(old),
        )

    def handle_ttin(self) -> None:
        """One more child in the first worker pool."""
        pool = self._first_worker_pool()
        if pool is not None and not self.stopping:
            pool.workers += 1
            log.info("TTIN: pool %s now wants %d children", pool.name, pool.workers)

    def handle_ttou(self) -> None:
        """One child fewer in the first worker pool: the newest drains."""
        pool = self._first_worker_pool()
        if pool is None or self.stopping or pool.workers == 0:
            return
        pool.workers -= 1
        log.info("TTOU: pool %s now wants %d children", pool.name, pool.workers)
        live = self._live(pool)
        if len(live) > pool.workers:
            newest = max(live, key=lambda c: c.spawned_at)
            self._retire(newest, Reason.SCALE_DOWN, time.monotonic())

    def handle_usr1(self) -> None:
        """Reopen our log files (after a rotation) and ask every child to do the same."""
        count = reopen_log_files()
        log.info("USR1: reopened %d log file(s); asking the children to do the same", count)
        for child in self.children.values():
            self.processes.kill(child.pid, signal.SIGUSR1)

    def _first_worker_pool(self) -> PoolState | None:
        return next((p for p in self.pools if p.kind == "worker"), None)

    # -- asking children to go -------------------------------------------------------------
    def _retire(self, child: Child, reason: Reason, now: float) -> None:
        """SIGTERM: stop claiming, finish running jobs, exit. A replacement may start now."""
        deadline = now + self.settings.graceful_timeout
        if self.stopping:
            deadline = min(deadline, self.stop_deadline)
        if not child.drain(reason, deadline):
            if self.stopping and child.state is State.DRAINING:
                child.term_deadline = min(child.term_deadline, self.stop_deadline)
            return
        log.info("asking child %d (pool %s) to drain: %s", child.pid, child.pool.name, reason)
        self.processes.kill(child.pid, signal.SIGTERM)

    def _kill(self, child: Child, reason: Reason, now: float) -> None:
        """SIGKILL the child's process group: the child and what its jobs started."""
        if not child.kill(reason, now):
            return
        log.warning("killing child %d (pool %s): %s", child.pid, child.pool.name, reason)
        self.processes.kill_group(child.pid, signal.SIGKILL)

    # -- murder: what must die -------------------------------------------------------------
    def murder(self, now: float) -> None:
        """max_run_time, heartbeats and drain deadlines; also give up on unreapable children."""
        for child in list(self.children.values()):
            if child.state is State.KILLED:
                assert child.killed_at is not None
                if now - child.killed_at > UNREAPED_LIMIT:
                    log.error(
                        "child %d did not die %.0f s after SIGKILL; forgetting it", child.pid, UNREAPED_LIMIT
                    )
                    self._forget(child, None, now)
                continue
            child.refresh()
            self._mark_overdue(child, now)
            grace = self.settings.max_run_time_grace
            due = [j for j in child.overdue.values() if now >= j.started + j.max_run_time + grace]
            if due:
                child.killed_jobs = dict(child.overdue)
                self._kill(child, Reason.MAX_RUN_TIME, now)
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
                self._kill(child, Reason.HEARTBEAT, now)
            elif child.state is State.DRAINING and now >= child.term_deadline:
                self._kill(child, Reason.DRAIN_TIMEOUT, now)

    def _mark_overdue(self, child: Child, now: float) -> None:
        """A job past its max_run_time: its child stops claiming, and dies after the grace."""
        grace = self.settings.max_run_time_grace
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
                self._retire(child, Reason.MAX_RUN_TIME, now)

    def recycle(self, now: float) -> None:
        """Drain (and so replace) live children whose RSS passed max_memory_mb."""
        limit = self.settings.max_memory_mb
        if limit is None:
            return
        for child in list(self.children.values()):
            if not child.live or now < child.next_memory_check:
                continue
            child.next_memory_check = now + MEMORY_CHECK_INTERVAL
            rss_mb = self.processes.rss_mb(child.pid)
            if rss_mb is not None and rss_mb > limit:
                log.warning(
                    "child %d (pool %s) uses %.0f MiB, over max_memory_mb = %d: replacing it",
                    child.pid,
                    child.pool.name,
                    rss_mb,
                    limit,
                )
                self._retire(child, Reason.MEMORY, now)

    # -- reaping ---------------------------------------------------------------------------
    def reap(self, now: float) -> None:
        """waitpid every exited child; read its last reports; forget it."""
        while True:
            try:
                pid, status = self.processes.wait()
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self.children.get(pid)
            if child is not None:
                if not exited_cleanly(status) and child.state is not State.KILLED:
                    # It crashed: what its jobs started must not run on beside their retries.
                    self.processes.kill_group(pid, signal.SIGKILL)
                self._read_child(child, until_eof=True)  # the last reports, if any
                self._forget(child, status, now)

    def _forget(self, child: Child, status: int | None, now: float) -> None:
        """The child is gone: log and emit why, count a crash, reclaim the jobs it held."""
        self.children.pop(child.pid, None)
        with contextlib.suppress(OSError):
            os.close(child.fd)
        reason = child.exit_reason(status)
        child.state = State.REAPED
        ending = ENDINGS[reason]
        lifetime = now - child.spawned_at
        how = describe_status(status)
        log.log(
            logging.WARNING if ending.warn else logging.INFO,
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
            reason=reason.value,
            status=status,
            lifetime=lifetime,
        )
        self._count_crash(child, ending, now)
        if child.holds_rows:
            # A child that exited by itself finished its claims; a killed one may not have.
            request = child.reclaim(reason, how, self.settings.heartbeat_timeout)
            self.reclaimer.submit(request, recheck=not exited_cleanly(status))
        if child.running is not None:
            child.running.close()

    def _count_crash(self, child: Child, ending: Ending, now: float) -> None:
        """Back off when children die unexplained before doing any work (never spin).

        Only such early deaths count: a child that had finished jobs, or lived a while, is
        replaced at once whatever killed it (a job that crashes its process is limited by
        its attempts, which the reclaim counts).
        """
        pool = child.pool
        if not child.early(now):
            pool.healthy()
            return
        if not ending.unexplained:
            return
        delay = pool.early_death(now)
        log.warning(
            "pool %s: %d child(ren) in a row died %s%s; next spawn in %.0f s",
            pool.name,
            pool.failures,
            "before finishing a job" if child.booted else "before booting",
            " (crash loop)" if pool.failures > 1 else "",
            delay,
        )

    def _emergency_stop(self) -> None:
        """The loop itself failed: SIGKILL and wait for every child, release all their jobs."""
        for child in list(self.children.values()):
            self.processes.kill_group(child.pid, signal.SIGKILL)
        for child in list(self.children.values()):
            with contextlib.suppress(ChildProcessError):
                self.processes.wait(child.pid, block=True)
            if child.holds_rows:
                assert child.name is not None
                self.reclaimer.submit(Reclaim(child.pid, child.name, child.config))
            if child.running is not None:
                child.running.close()
        self.children.clear()

    # -- spawning --------------------------------------------------------------------------
    def _live(self, pool: PoolState) -> list[Child]:
        return [c for c in self.children.values() if c.pool is pool and c.live]

    def manage(self, now: float) -> None:
        """Spawn what each pool is missing, unless its crash-loop back-off says wait."""
        for pool in self.pools:
            if pool.failures and any(
                c.state is State.RUNNING and now - c.spawned_at >= CRASH_WINDOW for c in self._live(pool)
            ):
                pool.healthy()  # a healthy child: whatever crashed before is not a loop
            if not pool.may_spawn(now):
                continue
            for _ in range(pool.workers - len(self._live(pool))):
                if not self.spawn(pool, now):
                    break

    def spawn(self, pool: PoolState, now: float) -> bool:
        """Fork one child for `pool`; False when fork failed (the pool waits a few seconds)."""
        settings = self.settings
        read_fd, write_fd = os.pipe()
        running = RunningTable(pool.max_claims) if pool.kind == "worker" else None
        spec = ChildSpec(
            kind=pool.kind,
            pool_name=pool.name,
            queues=list(pool.pool.queues),
            min_priority=pool.pool.min_priority,
            max_priority=pool.pool.max_priority,
            max_claims=pool.max_claims,
            config=settings.config,
            master_pid=self.pid,
            report_fd=write_fd,
            close_fds=[read_fd, self.wake_r, self.wake_w, *(c.fd for c in self.children.values())],
            on_worker_boot=settings.on_worker_boot,
            heartbeat_interval=min(HEARTBEAT_INTERVAL, settings.heartbeat_timeout / 3),
            tracing=settings.tracing,
            cron_entries=settings.cron_entries,
            running=running,
        )
        self.reclaimer.dispose()  # NullPool holds nothing; dispose anyway so no engine state crosses
        try:
            pid = self.processes.fork(spec)
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            if running is not None:
                running.close()
            pool.fork_failed(now)
            log.error("cannot fork a child for pool %s: %s; trying again in 5 s", pool.name, exc)
            return False
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.children[pid] = Child(pid, pool, settings.config, read_fd, now, last_seen=now, running=running)
        log.info("spawned child %d for pool %s", pid, pool.name)
        events.emit("delayed.supervisor.child_spawned", pid=pid, pool=pool.name)
        return True

    # -- titles, systemd -------------------------------------------------------------------
    def report(self, now: float) -> None:
        """Process title and systemd status; READY=1 once every pool is up; the watchdog.

        READY=1 follows the boots (the service started, whatever the database does), but
        "all children are running" is logged only once every worker child has reached
        the database; while they cannot, the log (once per change), the title and STATUS=
        say so.
        """
        counts = []
        for pool in self.pools:
            counts.append(f"{pool.name} {len(self._live(pool))}/{pool.workers}")
        busy = sum(c.busy for c in self.children.values())
        draining = sum(1 for c in self.children.values() if not c.live)
        status = ", ".join(counts) + f"; {busy} jobs running"
        if draining:
            status += f"; {draining} draining"
        workers = [c for c in self.children.values() if c.live and c.booted and c.pool.kind == "worker"]
        down = [c for c in workers if c.database is Database.DOWN]
        if down:
            status += f"; database unreachable from {len(down)}/{len(workers)} children"
        if self.stopping:
            status = "stopping: " + status
        title = f"master {status} [{self.settings.path or 'defaults'}]"
        if title != self._title:
            self._title = title
            set_title(title)
        if not self.stopping:
            self._log_database(workers, down)
        if not self.ready_sent and not self.stopping and self._all_booted():
            self.ready_sent = True
            self.notifier.ready(status)
        working = all(c.database is Database.UP for c in workers)
        if self.ready_sent and not self.running_logged and not self.stopping and working:
            self.running_logged = True
            log.info("all children are running: %s", status)
        self.notifier.status(status)
        self.notifier.ping(now)

    def _log_database(self, workers: list[Child], down: list[Child]) -> None:
        """Say once per change whether the worker children reach the database.

        Children that have not finished a pickup yet (a replacement, say) do not count
        either way, so one being replaced does not make the state flap.
        """
        up = [c for c in workers if c.database is Database.UP]
        if not up and not down:
            return  # nothing known yet (booting, or only replacements that have not said)
        state = DatabaseDown.NONE if not down else DatabaseDown.SOME if up else DatabaseDown.ALL
        if state is self.database_down:
            return
        self.database_down = state
        where = redact(self.settings.config.database_url)
        if state is DatabaseDown.ALL:
            log.error(
                "worker children cannot reach the database %s (%d of %d report it, none reaches "
                "it): %s; they keep trying with back-off",
                where,
                len(down),
                len(workers),
                down[0].database_error,
            )
        elif state is DatabaseDown.SOME:
            log.warning(
                "%d of %d worker children cannot reach the database %s (the others do): %s; they keep "
                "trying with back-off",
                len(down),
                len(workers),
                where,
                down[0].database_error,
            )
        else:
            log.info("every worker child reaches the database %s again", where)

    def _all_booted(self) -> bool:
        for pool in self.pools:
            running = [c for c in self._live(pool) if c.state is State.RUNNING]
            if len(running) < pool.workers:
                return False
        return True
