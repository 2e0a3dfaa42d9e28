"""The master's record of one child: its state, what it runs, and why it ended.

A child goes through these states, and only forwards:

    BOOTING ──B report──> RUNNING ──SIGTERM──> DRAINING ──SIGKILL──> KILLED ──waitpid──> REAPED
       └────────────── SIGTERM / SIGKILL ───────────┘──────────────────┘

BOOTING and RUNNING are "live": the child counts towards its pool's wanted number. The
master sends SIGTERM to drain (`reason`: shutdown, reload, scale_down, memory,
max_run_time) and SIGKILL to kill (`reason`: max_run_time, heartbeat, drain_timeout,
quit); a kill replaces the drain's reason. A child may also say it booted while it is
already draining, so `booted` is kept apart from the state.

When it is reaped, `exit_reason` says why it ended and `ENDINGS[reason]` what that means:
whether it is logged as a warning, whether it counts towards a crash loop, and what
happens to the jobs it still held (design.md "Decisions"):
- it exited after a drain we asked for: leftover locks (normally none) are released;
- it was killed for max_run_time: the overdue job counts a failed attempt with last_error
  "max_run_time of N s exceeded"; its other jobs are released without losing an attempt;
- it died unexplained (crash, OOM, SIGKILL from outside) or stopped heartbeating: each job
  it reported started and not ended counts an attempt, with a last_error naming the signal
  or exit status, so a job that kills its process cannot retry forever.

Only what the child reported counts (a job thread writes its job to the shared table,
running.py, before perform starts, and clears it when the job ends), because only that is
known to have run: a row it
claimed but never started, and a job it reported ended whose outcome was still queued in
its completer, are released with attempts unchanged. The latter runs again although it
ran once (at least once allows that; counting an attempt instead could fail or, with
destroy_failed_jobs, delete a job for an error it never had).
"""

from __future__ import annotations

import enum
import logging
import os
import signal
from dataclasses import dataclass, field

from ..config import Config
from . import protocol
from .pools import CRASH_WINDOW, PoolState
from .reclaim import Reclaim
from .running import RunningTable

log = logging.getLogger("delayed.supervisor")


class State(enum.Enum):
    BOOTING = "booting"  # forked; has not reported B yet
    RUNNING = "running"  # reported B; works
    DRAINING = "draining"  # sent SIGTERM: finishes its running jobs, then exits
    KILLED = "killed"  # sent SIGKILL
    REAPED = "reaped"  # waited for (or given up on); no longer the master's


LIVE = (State.BOOTING, State.RUNNING)


class Database(enum.Enum):
    """Whether a worker child reaches its database, as it last reported (protocol D/U)."""

    UNKNOWN = "unknown"  # no pickup finished yet (or a monitor child, which does not say)
    UP = "up"
    DOWN = "down"


class Reason(enum.StrEnum):
    """Why a child drains, was killed, or ended (the `reason` of delayed.supervisor.child_exited)."""

    CRASHED = "crashed"  # died on its own: signal or non-zero status (attempts + 1 on its started jobs)
    EXITED = "exited"  # exited 0 without being asked
    HEARTBEAT = "heartbeat"  # killed: no heartbeat for heartbeat_timeout (attempts + 1 on started jobs)
    MAX_RUN_TIME = "max_run_time"  # a job passed its max_run_time (+ grace)
    MEMORY = "memory"  # drained: RSS over max_memory_mb
    RELOAD = "reload"  # drained: replaced after HUP
    SCALE_DOWN = "scale_down"  # drained: TTOU
    SHUTDOWN = "shutdown"  # drained: TERM/INT
    DRAIN_TIMEOUT = "drain_timeout"  # killed: did not finish draining within graceful_timeout
    QUIT = "quit"  # killed: QUIT (fast stop)
    ABANDONED = "abandoned"  # killed but never reaped (should not happen)


class Fate(enum.Enum):
    """What happens to the jobs a child still held when it ended."""

    RELEASE = "release"  # run again, no attempt lost
    # The jobs it reported started and not ended count a failed attempt (last_error saying how
    # it died); the others (claimed but not started, or ended with the outcome unwritten) are released.
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_OVERDUE = "attempt_overdue"  # the overdue ones count an attempt; the others are released


@dataclass(frozen=True)
class Ending:
    fate: Fate
    warn: bool = False  # logged as a warning (else info: we asked for it)
    unexplained: bool = False  # may be part of a crash loop (when it happened early)
    last_error: str = ""  # for ATTEMPT_STARTED: formatted with pid, name, how, heartbeat_timeout


ENDINGS: dict[Reason, Ending] = {
    Reason.CRASHED: Ending(
        Fate.ATTEMPT_STARTED,
        warn=True,
        unexplained=True,
        last_error="worker process {pid} ({name}) {how} while running this job",
    ),
    Reason.HEARTBEAT: Ending(
        Fate.ATTEMPT_STARTED,
        warn=True,
        last_error="worker process {pid} ({name}) sent no heartbeat for {heartbeat_timeout:g} s "
        "and was killed while running this job",
    ),
    Reason.MAX_RUN_TIME: Ending(Fate.ATTEMPT_OVERDUE, warn=True),
    Reason.EXITED: Ending(Fate.RELEASE, warn=True, unexplained=True),
    Reason.MEMORY: Ending(Fate.RELEASE),
    Reason.RELOAD: Ending(Fate.RELEASE),
    Reason.SCALE_DOWN: Ending(Fate.RELEASE),
    Reason.SHUTDOWN: Ending(Fate.RELEASE),
    Reason.DRAIN_TIMEOUT: Ending(Fate.RELEASE),
    Reason.QUIT: Ending(Fate.RELEASE),
    Reason.ABANDONED: Ending(Fate.RELEASE),
}


@dataclass
class RunningJob:
    id: int
    started: float  # time.monotonic() in the child, one clock for the whole host
    max_run_time: float
    thread: str


@dataclass(eq=False)
class Child:
    pid: int
    pool: PoolState
    config: Config  # the one it was forked with (a HUP changes only later children's)
    fd: int  # read end of its report pipe
    spawned_at: float
    last_seen: float  # when it last wrote anything
    # The name its rows are locked by, as it reported it (B): made in the child, never rebuilt
    # here from its pid (the name has a random part). None until it booted, and a child that
    # never booted has claimed nothing.
    name: str | None = None
    state: State = State.BOOTING
    reason: Reason | None = None  # why it drains or was killed
    booted: bool = False  # it reported B (possibly while already draining)
    eof: bool = False  # its pipe is closed: it is dead or dying
    busy: int = 0
    done: int = 0  # jobs it reported finished (the shared table's and the pipe's)
    decoder: protocol.Decoder = field(default_factory=protocol.Decoder)
    jobs: dict[int, RunningJob] = field(default_factory=dict)  # reported started, not yet ended
    # Its job threads write what they run here (running.py); `refresh` reads it into `jobs`.
    running: RunningTable | None = None
    piped: dict[int, RunningJob] = field(default_factory=dict)  # S/E reports: threads without a slot
    piped_done: int = 0
    overdue: dict[int, RunningJob] = field(default_factory=dict)
    term_deadline: float = float("inf")  # once draining: SIGKILL after this
    killed_at: float | None = None
    killed_jobs: dict[int, RunningJob] = field(default_factory=dict)  # overdue when killed
    next_memory_check: float = 0.0
    database: Database = Database.UNKNOWN
    database_error: str = ""  # what its worker said when it reported DOWN

    # -- state -----------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """Counts towards its pool: not asked to go."""
        return self.state in LIVE

    def drain(self, reason: Reason, deadline: float) -> bool:
        """Live -> DRAINING; False when it was already on its way out."""
        if not self.live:
            return False
        self.state, self.reason, self.term_deadline = State.DRAINING, reason, deadline
        return True

    def kill(self, reason: Reason, now: float) -> bool:
        """-> KILLED (the kill's reason replaces a drain's); False when it already was."""
        if self.state in (State.KILLED, State.REAPED):
            return False
        self.state, self.reason, self.killed_at = State.KILLED, reason, now
        return True

    def exit_reason(self, status: int | None) -> Reason:
        """Why it ended, from its state and its waitpid status (None: never reaped)."""
        clean = exited_cleanly(status)
        if self.state is State.KILLED:
            assert self.reason is not None
            return self.reason if status is not None else Reason.ABANDONED
        if self.state is State.DRAINING and clean:
            assert self.reason is not None
            return self.reason
        return Reason.EXITED if clean else Reason.CRASHED

    def early(self, now: float) -> bool:
        """It ended (or is) before doing any work: never booted, or no job done and young."""
        return not self.booted or (self.done == 0 and now - self.spawned_at < CRASH_WINDOW)

    # -- reports ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Apply the reports in `data`, bytes read from its pipe (a line may be cut anywhere)."""
        for report in self.decoder.feed(data):
            if isinstance(report, protocol.Heartbeat):
                self.busy = report.busy
            elif isinstance(report, protocol.Started):
                self.on_started(report)
            elif isinstance(report, protocol.Ended):
                self.on_ended(report.job_id)
            elif isinstance(report, protocol.Booted):
                self.on_booted(report.worker)
            elif isinstance(report, protocol.DatabaseDown):
                self.database, self.database_error = Database.DOWN, report.error
            elif isinstance(report, protocol.DatabaseUp):
                self.database, self.database_error = Database.UP, ""
            elif isinstance(report, protocol.Malformed):
                log.warning("malformed report from child %d: %r", self.pid, report.line)
            else:
                log.debug("unknown report from child %d: %r", self.pid, report.line)

    def on_booted(self, worker: str) -> None:
        self.booted = True
        if self.state is State.BOOTING:
            self.state = State.RUNNING
        self.name = worker  # a Worker's name; the monitor says "monitor pid:N"

    @property
    def holds_rows(self) -> bool:
        """It may have left rows locked under its name: a worker child that said who it is."""
        return self.pool.kind == "worker" and self.name is not None

    def on_started(self, report: protocol.Started) -> None:
        job = RunningJob(report.job_id, report.started, report.max_run_time, report.thread)
        self.piped[job.id] = job
        self.jobs[job.id] = job
        self.busy = len(self.jobs)

    def on_ended(self, job_id: int) -> None:
        if self.piped.pop(job_id, None) is not None:
            self.piped_done += 1
            self.done += 1
        self.jobs.pop(job_id, None)
        self.overdue.pop(job_id, None)
        self.busy = len(self.jobs)

    def refresh(self) -> None:
        """Read the shared table: `jobs` = what its threads run now (plus the pipe's reports).

        The master calls it before it looks at `jobs`: each loop pass (max_run_time) and
        once the child is dead (the reclaim), when the table holds exactly what was
        started and not ended.
        """
        if self.running is None:
            return
        running, done = self.running.read()
        jobs = dict(self.piped)
        for job in running:
            jobs[job.job_id] = RunningJob(job.job_id, job.started, job.max_run_time, f"slot {job.slot}")
        self.jobs = jobs
        self.done = self.piped_done + done
        self.busy = len(jobs)
        for job_id in [j for j in self.overdue if j not in jobs]:
            del self.overdue[job_id]  # ended within the grace

    # -- the end ---------------------------------------------------------------------------
    def reclaim(self, reason: Reason, how: str, heartbeat_timeout: float) -> Reclaim:
        """What the master does with the rows it still holds (ENDINGS[reason].fate).

        Only the jobs named in `attempt` count an attempt: those the child reported started
        and not ended (a crash, a stale heartbeat) or the overdue ones (max_run_time). The
        master never charges a row it does not know ran; `reclaim.plan` releases the rest.
        """
        assert self.name is not None, "only a child that reported its name holds rows"
        self.refresh()
        request = Reclaim(self.pid, self.name, self.config)
        ending = ENDINGS[reason]
        if ending.fate is Fate.ATTEMPT_STARTED:
            error = ending.last_error.format(
                pid=self.pid, name=self.name, how=how, heartbeat_timeout=heartbeat_timeout
            )
            request.attempt = dict.fromkeys(self.jobs, error)
        elif ending.fate is Fate.ATTEMPT_OVERDUE:
            request.attempt = {
                job.id: f"max_run_time of {job.max_run_time:g} s exceeded"
                for job in self.killed_jobs.values()
            }
        return request


def exited_cleanly(status: int | None) -> bool:
    """Exit status 0 (not a signal, not never reaped)."""
    return status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


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
