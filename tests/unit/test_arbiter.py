"""The master loop in-process: fork, kill, waitpid and RSS replaced (gunicorn's test_arbiter way).

Children are fake: `FakeProcesses.fork` keeps the write end of the child's report pipe, so a
test speaks for the child with real protocol bytes, and its exits are waitpid statuses the
test queues. Rows live in SQLite, so reclaims are real writes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delayed import systemd
from delayed.supervisor import protocol
from delayed.supervisor.arbiter import MAX_QUEUED_SIGNALS, UNREAPED_LIMIT, Processes, Supervisor
from delayed.supervisor.child import Child, State
from delayed.supervisor.child_process import ChildSpec
from delayed.supervisor.pools import CRASH_WINDOW, MAX_BACKOFF
from delayed.supervisor.settings import load_settings

from .conftest import SqliteJobs


def exited(code: int) -> int:
    """A waitpid status: exited with `code`."""
    return code << 8


class FakeProcesses(Processes):
    def __init__(self) -> None:
        self.next_pid = 40_000
        self.specs: dict[int, ChildSpec] = {}
        self.writers: dict[int, int] = {}  # pid -> write end of its report pipe
        self.sent: list[tuple[int, signal.Signals]] = []
        self.dead: list[tuple[int, int]] = []  # waitpid statuses not collected yet
        self.rss: dict[int, float] = {}
        self.exit_on_term = False
        self.fork_error: OSError | None = None

    def fork(self, spec: ChildSpec) -> int:
        if self.fork_error is not None:
            raise self.fork_error
        self.next_pid += 1
        self.specs[self.next_pid] = spec
        self.writers[self.next_pid] = os.dup(spec.report_fd)
        return self.next_pid

    def kill(self, pid: int, sig: int) -> None:
        self.sent.append((pid, signal.Signals(sig)))
        if sig == signal.SIGKILL:
            self.die(pid, signal.SIGKILL)
        elif sig == signal.SIGTERM and self.exit_on_term:
            self.die(pid, exited(0))

    def wait(self, pid: int = -1, block: bool = False) -> tuple[int, int]:
        for i, (dead_pid, status) in enumerate(self.dead):
            if pid in (-1, dead_pid):
                del self.dead[i]
                return dead_pid, status
        if not self.writers:
            raise ChildProcessError
        return 0, 0

    def rss_mb(self, pid: int) -> float | None:
        return self.rss.get(pid)

    # -- the test speaks for the children -----------------------------------------------------
    def say(self, pid: int, *reports: protocol.Report) -> None:
        os.write(self.writers[pid], protocol.encode(*reports))

    def die(self, pid: int, status: int) -> None:
        """The process ends: its pipe closes, waitpid will return `status`."""
        if pid in self.writers:
            os.close(self.writers.pop(pid))
            self.dead.append((pid, status))

    def signals_to(self, pid: int) -> list[signal.Signals]:
        return [sig for p, sig in self.sent if p == pid]

    def close(self) -> None:
        for fd in self.writers.values():
            os.close(fd)
        self.writers.clear()


class RecordingNotifier(systemd.Notifier):
    def __init__(self) -> None:
        super().__init__(environ={})
        self.lines: list[str] = []

    def send(self, *lines: str) -> bool:
        self.lines.extend(lines)
        return True


WORKERS = 2
TOML = """
[delayed]
database_url = "{url}"
[supervisor]
workers = {workers}
graceful_timeout = 10
heartbeat_timeout = 20
max_run_time_grace = 2
max_memory_mb = 100
"""


@pytest.fixture
def toml(tmp_path: Path, jobs: SqliteJobs) -> Path:
    path = tmp_path / "delayed.toml"
    path.write_text(TOML.format(url=jobs.url, workers=WORKERS))
    return path


@pytest.fixture
def fake() -> Iterator[FakeProcesses]:
    processes = FakeProcesses()
    yield processes
    processes.close()


@pytest.fixture
def sup(toml: Path, fake: FakeProcesses) -> Iterator[Supervisor]:
    supervisor = Supervisor(load_settings(str(toml), environ={}), RecordingNotifier(), fake)
    yield supervisor
    for child in supervisor.children.values():
        os.close(child.fd)
    supervisor.reclaimer.dispose()
    os.close(supervisor.wake_r)
    os.close(supervisor.wake_w)


def boot(sup: Supervisor, fake: FakeProcesses, now: float) -> list[Child]:
    """Spawn every child and have each report that it booted."""
    sup.manage(now)
    children = list(sup.children.values())
    for child in children:
        fake.say(child.pid, protocol.Booted(child.name))
        sup._read_child(child)
    return children


def names(events: list[Any], name: str) -> list[dict[str, Any]]:
    return [e.payload for e in events if e.name == f"delayed.supervisor.{name}"]


# -- spawning and booting ---------------------------------------------------------------------
def test_manage_spawns_what_each_pool_wants_and_ready_follows_the_boots(
    sup: Supervisor, fake: FakeProcesses, sup_events: list[Any]
) -> None:
    now = time.monotonic()
    sup.manage(now)
    assert len(sup.children) == WORKERS and all(c.state is State.BOOTING for c in sup.children.values())
    assert [e["pool"] for e in names(sup_events, "child_spawned")] == ["default"] * WORKERS
    spec = fake.specs[min(sup.children)]
    assert (spec.kind, spec.max_claims, spec.master_pid) == ("worker", sup.pools[0].max_claims, os.getpid())
    sup.manage(now)
    assert len(sup.children) == WORKERS, "nothing more to spawn"
    sup.report(now)
    assert "READY=1" not in sup.notifier.lines  # type: ignore[attr-defined]
    first, second = sup.children.values()
    fake.say(first.pid, protocol.Booted(first.name), protocol.Heartbeat(0))
    sup._sleep(now)
    assert (first.state, second.state) == (State.RUNNING, State.BOOTING)
    fake.say(second.pid, protocol.Booted(second.name))
    sup._sleep(now)
    sup.report(now)
    assert "READY=1" in sup.notifier.lines  # type: ignore[attr-defined]


def test_reports_track_the_running_jobs_and_malformed_ones_are_logged(
    sup: Supervisor, fake: FakeProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    child, _ = boot(sup, fake, time.monotonic())
    fake.say(child.pid, protocol.Started(5, 1.0, 60.0, "t1"), protocol.Started(6, 2.0, 60.0, "t2"))
    sup._read_child(child)
    assert (sorted(child.jobs), child.busy, child.done) == ([5, 6], 2, 0)
    os.write(fake.writers[child.pid], b"S 7 soon\nE 5\nX new kind\n")
    with caplog.at_level(logging.DEBUG, logger="delayed.supervisor"):
        sup._read_child(child)
    assert (sorted(child.jobs), child.busy, child.done) == ([6], 1, 1)
    assert f"malformed report from child {child.pid}: 'S 7 soon'" in caplog.text
    assert "unknown report" in caplog.text


def test_a_fork_that_fails_waits_and_tries_again(sup: Supervisor, fake: FakeProcesses) -> None:
    now = time.monotonic()
    fake.fork_error = OSError(11, "Resource temporarily unavailable")
    sup.manage(now)
    assert sup.children == {} and sup.pools[0].next_spawn_at == now + 5.0
    fake.fork_error = None
    sup.manage(now + 1)
    assert sup.children == {}
    sup.manage(now + 5)
    assert len(sup.children) == WORKERS


# -- a child dies -----------------------------------------------------------------------------
def test_a_child_killed_from_outside_is_replaced_and_its_jobs_count_an_attempt(
    sup: Supervisor, fake: FakeProcesses, jobs: SqliteJobs, sup_events: list[Any]
) -> None:
    start = time.monotonic()
    victim, survivor = boot(sup, fake, start)
    held, theirs = jobs.add(victim.name), jobs.add(survivor.name)
    fake.say(victim.pid, protocol.Started(held, start, 60.0, "t1"))
    sup._read_child(victim)
    fake.die(victim.pid, signal.SIGKILL)  # the OOM killer, say
    later = start + CRASH_WINDOW + 1  # it had lived: not a crash loop
    sup.reap(later)
    assert victim.pid not in sup.children and victim.state is State.REAPED
    [exit_event] = names(sup_events, "child_exited")
    assert (exit_event["pid"], exit_event["reason"], exit_event["status"]) == (victim.pid, "crashed", 9)
    row = jobs.row(held)
    assert (row["attempts"], row["locked_by"]) == (1, None)
    assert row["last_error"] == (
        f"worker process {victim.pid} ({victim.name}) was killed by signal SIGKILL while running this job"
    )
    assert jobs.row(theirs)["locked_by"] == survivor.name
    sup.manage(later)
    assert len(sup.children) == WORKERS and victim.pid not in sup.children


def test_a_job_past_max_run_time_drains_its_child_then_kills_it_after_the_grace(
    sup: Supervisor, fake: FakeProcesses, jobs: SqliteJobs, sup_events: list[Any]
) -> None:
    now = time.monotonic()
    child, other = boot(sup, fake, now)
    overdue, fine = jobs.add(child.name), jobs.add(child.name)
    fake.say(
        child.pid,
        protocol.Started(overdue, now - 5.5, 5.0, "t1"),
        protocol.Started(fine, now - 1, 60.0, "t2"),
        protocol.Heartbeat(2),
    )
    sup._read_child(child)
    sup.murder(now)  # 5.5 s into a 5 s job: stop claiming, die 2 s past its limit unless it ends
    assert (child.state, child.reason, list(child.overdue)) == (State.DRAINING, "max_run_time", [overdue])
    assert fake.signals_to(child.pid) == [signal.SIGTERM]
    sup.manage(now)
    assert len(sup._live(sup.pools[0])) == WORKERS, "its replacement starts at once"
    sup.murder(now + 1.4)
    assert fake.signals_to(child.pid) == [signal.SIGTERM]
    sup.murder(now + 1.6)
    assert fake.signals_to(child.pid) == [signal.SIGTERM, signal.SIGKILL]
    [killed] = names(sup_events, "job_killed")
    assert (killed["job_id"], killed["pid"], killed["max_run_time"]) == (overdue, child.pid, 5.0)
    sup.reap(now + 1.6)
    assert [e["reason"] for e in names(sup_events, "child_exited")] == ["max_run_time"]
    assert jobs.row(overdue)["attempts"] == 1
    assert jobs.row(overdue)["last_error"] == "max_run_time of 5 s exceeded"
    assert (jobs.row(fine)["attempts"], jobs.row(fine)["locked_by"]) == (0, None), "released, no attempt lost"
    assert other.state is State.RUNNING and fake.signals_to(other.pid) == []


def test_a_job_that_ends_within_the_grace_saves_its_child_from_the_kill(
    sup: Supervisor, fake: FakeProcesses
) -> None:
    now = time.monotonic()
    child, _ = boot(sup, fake, now)
    fake.say(child.pid, protocol.Started(1, now - 6, 5.0, "t1"))
    sup._read_child(child)
    sup.murder(now)
    fake.say(child.pid, protocol.Ended(1))
    sup._read_child(child)
    sup.murder(now + 3)
    assert child.state is State.DRAINING and fake.signals_to(child.pid) == [signal.SIGTERM]


def test_a_silent_child_is_killed_and_its_jobs_count_an_attempt(
    sup: Supervisor, fake: FakeProcesses, jobs: SqliteJobs
) -> None:
    now = time.monotonic()
    child, _ = boot(sup, fake, now)
    held = jobs.add(child.name)
    sup.murder(now + 19)
    assert fake.signals_to(child.pid) == []
    child.last_seen = now
    sup.murder(now + 21)
    assert (child.state, child.reason) == (State.KILLED, "heartbeat")
    sup.reap(now + 21)
    assert jobs.row(held)["attempts"] == 1
    assert "sent no heartbeat for 20 s and was killed" in jobs.row(held)["last_error"]


def test_a_killed_child_that_is_never_reaped_is_forgotten(
    sup: Supervisor, fake: FakeProcesses, sup_events: list[Any]
) -> None:
    now = time.monotonic()
    boot(sup, fake, now)
    sup.handle_quit()
    fake.dead.clear()  # zombies that waitpid never returns
    sup.murder(now + UNREAPED_LIMIT / 2)
    assert len(sup.children) == WORKERS
    sup.murder(time.monotonic() + UNREAPED_LIMIT + 1)
    assert sup.children == {}
    assert [e["reason"] for e in names(sup_events, "child_exited")] == ["abandoned"] * WORKERS


def test_a_child_over_max_memory_is_drained(sup: Supervisor, fake: FakeProcesses) -> None:
    now = time.monotonic()
    small, big = boot(sup, fake, now)
    fake.rss = {small.pid: 50.0, big.pid: 150.0}
    sup.recycle(now)
    assert (small.state, big.state, big.reason) == (State.RUNNING, State.DRAINING, "memory")
    assert fake.signals_to(big.pid) == [signal.SIGTERM]


# -- signals ----------------------------------------------------------------------------------
def test_term_drains_every_child_then_kills_the_late_ones(
    sup: Supervisor, fake: FakeProcesses, jobs: SqliteJobs, sup_events: list[Any]
) -> None:
    quick, slow = boot(sup, fake, time.monotonic())
    leftover = jobs.add(quick.name)
    sup.handle_term()
    assert sup.stopping and {quick.state, slow.state} == {State.DRAINING}
    assert fake.signals_to(quick.pid) == fake.signals_to(slow.pid) == [signal.SIGTERM]
    fake.die(quick.pid, exited(0))
    sup.reap(time.monotonic())
    assert names(sup_events, "child_exited")[0]["reason"] == "shutdown"
    assert (jobs.row(leftover)["locked_by"], jobs.row(leftover)["attempts"]) == (None, 0)
    sup.murder(time.monotonic() + 10)  # graceful_timeout
    assert fake.signals_to(slow.pid) == [signal.SIGTERM, signal.SIGKILL]
    sup.reap(time.monotonic())
    assert [e["reason"] for e in names(sup_events, "child_exited")] == ["shutdown", "drain_timeout"]
    assert sup.children == {}


def test_a_second_term_kills_at_once(sup: Supervisor, fake: FakeProcesses) -> None:
    child, _ = boot(sup, fake, time.monotonic())
    sup.handle_term()
    sup.handle_term()
    assert (child.state, child.reason) == (State.KILLED, "quit")
    assert fake.signals_to(child.pid) == [signal.SIGTERM, signal.SIGKILL]


def test_hup_starts_children_with_the_new_file_then_drains_the_old(
    sup: Supervisor, fake: FakeProcesses, toml: Path, jobs: SqliteJobs
) -> None:
    old = boot(sup, fake, time.monotonic())
    toml.write_text(TOML.format(url=jobs.url, workers=3))
    sup.handle_hup()
    assert sup.settings.pools[0].workers == 3
    new = [c for c in sup.children.values() if c not in old]
    assert len(new) == 3 and all(c.pool is sup.pools[0] for c in new)
    assert all((c.state, c.reason) == (State.DRAINING, "reload") for c in old)
    toml.write_text("[supervisor]\nworkers = -1\n")
    sup.handle_hup()  # a bad file keeps what runs
    assert sup.settings.pools[0].workers == 3 and len(sup.children) == 5


def test_ttin_and_ttou_move_the_first_pool_by_one(sup: Supervisor, fake: FakeProcesses) -> None:
    now = time.monotonic()
    boot(sup, fake, now)
    sup.handle_ttin()
    sup.manage(now + 1)
    assert sup.pools[0].workers == 3 and len(sup.children) == 3
    newest = max(sup.children.values(), key=lambda c: c.spawned_at)
    sup.handle_ttou()
    sup.handle_ttou()
    assert sup.pools[0].workers == 1
    draining = [c for c in sup.children.values() if c.state is State.DRAINING]
    assert len(draining) == 2 and newest in draining
    assert all(c.reason == "scale_down" for c in draining)


def test_the_handler_only_records_and_the_loop_logs(
    sup: Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        for _ in range(MAX_QUEUED_SIGNALS + 2):
            sup._on_signal(signal.SIGTTIN, None)
        sup._on_signal(signal.SIGCHLD, None)  # only wakes the loop
    assert caplog.records == []
    assert len(sup.signals) == MAX_QUEUED_SIGNALS and sup.ignored_signals == [signal.SIGTTIN] * 2
    assert os.read(sup.wake_r, 4096).count(b".") == MAX_QUEUED_SIGNALS + 3
    with caplog.at_level(logging.INFO):
        sup.handle_signals()
    assert caplog.text.count("ignoring SIGTTIN: too many signals queued") == 2
    assert caplog.text.count("SIGTTIN received") == MAX_QUEUED_SIGNALS
    assert sup.pools[0].workers == WORKERS + MAX_QUEUED_SIGNALS


# -- the crash-loop back-off ------------------------------------------------------------------
def test_children_that_die_before_working_back_off_and_a_healthy_one_resets(
    sup: Supervisor, fake: FakeProcesses
) -> None:
    pool = sup.pools[0]
    pool.workers = 1
    now = time.monotonic()
    delays = []
    for _ in range(8):
        sup.manage(now)
        [child] = sup.children.values()
        fake.die(child.pid, exited(3))  # on_worker_boot raised, say
        sup.reap(now)
        delays.append(pool.next_spawn_at - now)
        sup.manage(now)
        assert sup.children == {}, "no spawn during the back-off"
        now = pool.next_spawn_at
    assert delays == pytest.approx([1, 2, 4, 8, 16, 32, MAX_BACKOFF, MAX_BACKOFF])
    sup.manage(now)
    [child] = sup.children.values()
    fake.say(child.pid, protocol.Booted(child.name))
    sup._read_child(child)
    sup.manage(now + CRASH_WINDOW + 0.1)
    assert pool.failures == 0, "a child that booted and lived is no loop"


def test_a_drained_child_never_counts_as_a_crash(sup: Supervisor, fake: FakeProcesses) -> None:
    now = time.monotonic()
    child, _ = boot(sup, fake, now)
    sup.handle_ttou()
    fake.die(child.pid if child.state is State.DRAINING else _.pid, exited(0))
    sup.reap(now)
    assert sup.pools[0].failures == 0 and sup.pools[0].next_spawn_at == 0.0


# -- the whole loop ---------------------------------------------------------------------------
def test_run_spawns_then_a_real_sigterm_drains_and_returns_0(
    toml: Path, fake: FakeProcesses, sup_events: list[Any]
) -> None:
    fake.exit_on_term = True
    settings = dataclasses.replace(load_settings(str(toml), environ={}), graceful_timeout=5.0)
    sup = Supervisor(settings, RecordingNotifier(), fake)
    saved = {sig: signal.getsignal(sig) for sig in Supervisor.SIGNALS}
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        timer.start()
        assert sup.run() == 0
    finally:
        timer.cancel()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        os.close(sup.wake_r)
        os.close(sup.wake_w)
    assert len(names(sup_events, "child_spawned")) == WORKERS
    assert [e["reason"] for e in names(sup_events, "child_exited")] == ["shutdown"] * WORKERS
    assert "STOPPING=1" in sup.notifier.lines  # type: ignore[attr-defined]
