"""The master loop in-process: fork, kill, waitpid and RSS replaced (gunicorn's test_arbiter way).

Children are fake: `FakeProcesses.fork` keeps the write end of the child's report pipe, so a
test speaks for the child with real protocol bytes, and its exits are waitpid statuses the
test queues. Rows live in SQLite, so reclaims are real writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delayed import systemd
from delayed.config import build_config
from delayed.supervisor import protocol, reclaim
from delayed.supervisor.arbiter import MAX_QUEUED_SIGNALS, UNREAPED_LIMIT, Processes, Supervisor
from delayed.supervisor.child import Child, State
from delayed.supervisor.child_process import ChildSpec
from delayed.supervisor.pools import CRASH_WINDOW, MAX_BACKOFF
from delayed.supervisor.reclaim import Reclaim
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
        self.groups: list[tuple[int, signal.Signals]] = []  # (process group, signal) of kill_group
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

    def kill_group(self, pid: int, sig: int) -> None:
        self.groups.append((pid, signal.Signals(sig)))
        self.kill(pid, sig)

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

    def group_signals_to(self, pid: int) -> list[signal.Signals]:
        """What went to the process group the child leads (the child and what its jobs started)."""
        return [sig for p, sig in self.groups if p == pid]

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


@contextlib.contextmanager
def supervising(path: Path, fake: FakeProcesses) -> Iterator[Supervisor]:
    """A Supervisor on the file at `path` with fake processes; its pipes closed afterwards."""
    supervisor = Supervisor(load_settings(str(path), environ={}), RecordingNotifier(), fake)
    try:
        yield supervisor
    finally:
        for child in supervisor.children.values():
            os.close(child.fd)
        supervisor.reclaimer.dispose()
        os.close(supervisor.wake_r)
        os.close(supervisor.wake_w)


@pytest.fixture
def sup(toml: Path, fake: FakeProcesses) -> Iterator[Supervisor]:
    with supervising(toml, fake) as supervisor:
        yield supervisor


def worker_name(pid: int) -> str:
    """A name as a child's Worker makes it: the master cannot derive it from the pid."""
    return f"host:unit pid:{pid} {secrets.token_hex(4)}"


def boot(sup: Supervisor, fake: FakeProcesses, now: float) -> list[Child]:
    """Spawn every child and have each report that it booted, with its name."""
    sup.manage(now)
    children = list(sup.children.values())
    for child in children:
        fake.say(child.pid, protocol.Booted(worker_name(child.pid)))
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
    fake.say(first.pid, protocol.Booted(worker_name(first.pid)), protocol.Heartbeat(0))
    sup._sleep(now)
    assert (first.state, second.state) == (State.RUNNING, State.BOOTING)
    fake.say(second.pid, protocol.Booted(worker_name(second.pid)))
    sup._sleep(now)
    sup.report(now)
    assert "READY=1" in sup.notifier.lines  # type: ignore[attr-defined]


def test_children_that_cannot_reach_the_database_are_reported_not_called_running(
    sup: Supervisor, fake: FakeProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 item 13: READY=1 follows the boots, but the log, title and STATUS= say the truth."""
    notifier: RecordingNotifier = sup.notifier  # type: ignore[assignment]
    now = time.monotonic()
    with caplog.at_level(logging.INFO, logger="delayed.supervisor"):
        first, second = boot(sup, fake, now)
        sup.report(now)
        assert "READY=1" in notifier.lines
        down = protocol.DatabaseDown("OperationalError: connection refused")
        fake.say(first.pid, down)
        fake.say(second.pid, down)
        sup._sleep(now)
        sup._sleep(now)
        for _ in range(3):
            sup.report(now)
    assert "all children are running" not in caplog.text
    assert caplog.text.count("worker children cannot reach the database") == 1, "once per change"
    assert (
        "(2 of 2 report it, none reaches it): OperationalError: connection refused; they keep" in caplog.text
    )
    assert "STATUS=default 2/2; 0 jobs running; database unreachable from 2/2 children" in notifier.lines
    assert "database unreachable from 2/2 children" in sup._title
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="delayed.supervisor"):
        fake.say(first.pid, protocol.DatabaseUp())
        sup._read_child(first)
        sup.report(now)
        fake.say(second.pid, protocol.DatabaseUp())
        sup._read_child(second)
        sup.report(now)
        sup.report(now)
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == [
        "1 of 2 worker children cannot reach the database sqlite",
        "every worker child reaches the database sqlite",
        "all children are running",
    ], messages
    assert "unreachable" not in sup._title


def test_a_child_being_replaced_does_not_make_the_database_state_flap(
    sup: Supervisor, fake: FakeProcesses, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.monotonic()
    first, second = boot(sup, fake, now)
    for child in (first, second):
        fake.say(child.pid, protocol.DatabaseDown("refused"))
        sup._read_child(child)
    with caplog.at_level(logging.INFO, logger="delayed.supervisor"):
        sup.report(now)
        fake.die(first.pid, signal.SIGKILL)
        sup.reap(now + CRASH_WINDOW + 1)
        fake.die(second.pid, signal.SIGKILL)
        sup.reap(now + CRASH_WINDOW + 1)
        boot(sup, fake, now + CRASH_WINDOW + 1)  # replacements: nothing said yet
        sup.report(now + CRASH_WINDOW + 1)
    assert caplog.text.count("reach the database") == 1, caplog.text


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


@pytest.mark.parametrize("destroy", [False, True], ids=["keep_failed", "destroy_failed_jobs"])
def test_a_crash_charges_only_the_jobs_the_child_reported_started(
    tmp_path: Path, fake: FakeProcesses, jobs: SqliteJobs, sup_events: list[Any], destroy: bool
) -> None:
    """Issue 11 item 4: with max_attempts = 1, a row that never ran must not be failed (or deleted)."""
    strict = f"[delayed]\nmax_attempts = 1\ndestroy_failed_jobs = {str(destroy).lower()}\n"
    path = tmp_path / "strict.toml"
    path.write_text(TOML.format(url=jobs.url, workers=1).replace("[delayed]\n", strict))
    with supervising(path, fake) as sup:
        start = time.monotonic()
        [child] = boot(sup, fake, start)
        running, finished, unstarted = jobs.add(child.name), jobs.add(child.name), jobs.add(child.name)
        fake.say(
            child.pid,
            protocol.Started(running, start, 60.0, "t1"),
            protocol.Started(finished, start, 60.0, "t2"),
            protocol.Ended(finished),  # its delete still queued in the child's completer
        )  # `unstarted`: claimed in the same statement, no thread had started it
        sup._read_child(child)
        fake.die(child.pid, signal.SIGKILL)
        sup.reap(start + CRASH_WINDOW + 1)
        if destroy:
            assert jobs.maybe_row(running) is None, "the job that was running used its only attempt"
        else:
            row = jobs.row(running)
            assert (row["attempts"], row["failed_at"] is not None) == (1, True)
            assert "was killed by signal SIGKILL while running this job" in row["last_error"]
        for job_id in (finished, unstarted):
            row = jobs.row(job_id)  # neither failed nor deleted: released to run (again)
            assert (row["attempts"], row["failed_at"], row["locked_by"], row["last_error"]) == (
                0,
                None,
                None,
                None,
            )
        [event] = names(sup_events, "locks_reclaimed")
        assert (event["count"], event["attempted"], event["released"]) == (3, 1, 2)


def test_the_shared_table_is_what_a_crash_charges_and_what_max_run_time_watches(
    tmp_path: Path, fake: FakeProcesses, jobs: SqliteJobs, sup_events: list[Any]
) -> None:
    """The real child writes its running jobs to the table (no report per job): a job whose
    slot is set counts an attempt; one ended, or cut off before its slot named it, does not."""
    strict = "[delayed]\nmax_attempts = 1\n"
    path = tmp_path / "strict.toml"
    path.write_text(TOML.format(url=jobs.url, workers=1).replace("[delayed]\n", strict))
    with supervising(path, fake) as sup:
        start = time.monotonic()
        [child] = boot(sup, fake, start)
        assert child.running is fake.specs[child.pid].running is not None
        table = child.running
        running, finished, cut_off = jobs.add(child.name), jobs.add(child.name), jobs.add(child.name)
        table.start(0, running, start - 6, 5.0)
        table.start(1, finished, start, 60.0)
        table.end(1)
        # Killed inside start(): the times were written, the job id not yet (perform not begun).
        table._map[2 * 32 + 8 : 2 * 32 + 24] = bytes(range(16))
        sup.murder(start)
        assert (sorted(child.jobs), child.done, list(child.overdue)) == ([running], 1, [running])
        assert child.state is State.DRAINING, "over its max_run_time: the child stops claiming"
        fake.die(child.pid, signal.SIGKILL)
        sup.reap(start + 1)
        row = jobs.row(running)
        assert (row["attempts"], row["failed_at"] is not None) == (1, True)
        assert "was killed by signal SIGKILL while running this job" in row["last_error"]
        for job_id in (finished, cut_off):
            row = jobs.row(job_id)
            assert (row["attempts"], row["failed_at"], row["locked_by"]) == (0, None, None)
        [event] = names(sup_events, "locks_reclaimed")
        assert (event["count"], event["attempted"], event["released"]) == (3, 1, 2)
        assert table._map.closed, "unmapped once reclaimed"


def test_a_job_that_ends_in_the_shared_table_within_the_grace_saves_its_child(
    sup: Supervisor, fake: FakeProcesses
) -> None:
    now = time.monotonic()
    child, _ = boot(sup, fake, now)
    assert child.running is not None
    child.running.start(3, 1, now - 6, 5.0)
    sup.murder(now)
    assert list(child.overdue) == [1]
    child.running.end(3)
    sup.murder(now + 3)
    assert (child.jobs, child.overdue, child.done) == ({}, {}, 1)
    assert child.state is State.DRAINING and fake.signals_to(child.pid) == [signal.SIGTERM]


def test_the_reclaim_uses_the_name_the_child_reported_never_one_made_from_its_pid(
    sup: Supervisor, fake: FakeProcesses, jobs: SqliteJobs, sup_events: list[Any]
) -> None:
    """Issue 11 item 6: names have a random part; only the child knows its own."""
    start = time.monotonic()
    sup.manage(start)
    first, second = sup.children.values()
    assert first.name is None, "unknown until the child says it"
    reported = f"host:elsewhere pid:1 {secrets.token_hex(4)}"  # as a child in a pid namespace
    fake.say(first.pid, protocol.Booted(reported))
    sup._read_child(first)
    assert first.name == reported
    held = jobs.add(reported)
    same_host_and_pid = jobs.add(reported.rsplit(" ", 1)[0] + " 00000000")  # another container's
    by_pid = jobs.add(f"host:{socket.gethostname()} pid:{first.pid}")
    fake.say(first.pid, protocol.Started(held, start, 60.0, "t1"))
    sup._read_child(first)
    fake.die(first.pid, signal.SIGKILL)
    fake.die(second.pid, exited(3))  # died before booting: it made no Worker, so holds nothing
    sup.reap(start + CRASH_WINDOW + 1)
    assert (jobs.row(held)["attempts"], jobs.row(held)["locked_by"]) == (1, None)
    assert jobs.row(same_host_and_pid)["locked_by"] == reported.rsplit(" ", 1)[0] + " 00000000"
    assert jobs.row(by_pid)["locked_by"] == f"host:{socket.gethostname()} pid:{first.pid}"
    [event] = names(sup_events, "locks_reclaimed")
    assert (event["worker"], event["pid"], event["count"]) == (reported, first.pid, 1)
    assert [e["pid"] for e in names(sup_events, "child_exited")] == [first.pid, second.pid]


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


def test_a_silent_child_is_killed_and_its_started_jobs_count_an_attempt(
    sup: Supervisor, fake: FakeProcesses, jobs: SqliteJobs
) -> None:
    now = time.monotonic()
    child, _ = boot(sup, fake, now)
    held, unstarted = jobs.add(child.name), jobs.add(child.name)
    fake.say(child.pid, protocol.Started(held, now, 60.0, "t1"))
    sup._read_child(child)
    sup.murder(now + 19)
    assert fake.signals_to(child.pid) == []
    child.last_seen = now
    sup.murder(now + 21)
    assert (child.state, child.reason) == (State.KILLED, "heartbeat")
    sup.reap(now + 21)
    assert jobs.row(held)["attempts"] == 1
    assert "sent no heartbeat for 20 s and was killed" in jobs.row(held)["last_error"]
    assert (jobs.row(unstarted)["attempts"], jobs.row(unstarted)["locked_by"]) == (0, None)


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


def test_hup_to_a_grace_past_the_bound_keeps_the_running_config(
    sup: Supervisor, fake: FakeProcesses, toml: Path, jobs: SqliteJobs, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 item 5: a reload may not bring a grace that lets a lock expire before its kill."""
    running = boot(sup, fake, time.monotonic())
    toml.write_text(
        TOML.format(url=jobs.url, workers=3).replace("max_run_time_grace = 2", "max_run_time_grace = 20")
    )
    with caplog.at_level(logging.ERROR, logger="delayed.supervisor"):
        sup.handle_hup()
    assert sup.settings.max_run_time_grace == 2 and sup.settings.pools[0].workers == WORKERS
    assert list(sup.children.values()) == running and all(c.state is State.RUNNING for c in running)
    assert "reload failed, keeping the running configuration" in caplog.text
    assert "[supervisor] max_run_time_grace: 20 s is too long; it must be below 20 s" in caplog.text


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


# -- process groups ---------------------------------------------------------------------------
def test_every_kill_reaches_the_childs_process_group_and_forwarded_signals_only_the_child(
    sup: Supervisor, fake: FakeProcesses
) -> None:
    """Issue 11 item 10: SIGKILL goes to the group (what the job started dies too); TERM and
    USR1 go to the child alone (a draining child's jobs and their subprocesses may finish)."""
    now = time.monotonic()
    overdue, silent = boot(sup, fake, now)
    fake.say(overdue.pid, protocol.Started(1, now - 10, 5.0, "t1"))
    sup._read_child(overdue)
    silent.last_seen = now - 25
    sup.handle_usr1()
    sup.murder(now)  # 10 s into a 5 s job (grace 2 s); 25 s without a heartbeat (limit 20 s)
    assert (overdue.reason, silent.reason) == ("max_run_time", "heartbeat")
    assert fake.signals_to(overdue.pid) == [signal.SIGUSR1, signal.SIGTERM, signal.SIGKILL]
    assert fake.group_signals_to(overdue.pid) == [signal.SIGKILL]
    assert fake.group_signals_to(silent.pid) == [signal.SIGKILL]
    sup.reap(now)
    draining, quitting = boot(sup, fake, now)
    sup.handle_term()
    assert fake.signals_to(draining.pid) == [signal.SIGTERM] and fake.groups[2:] == []
    sup.murder(now + 11)  # past graceful_timeout (10 s)
    assert fake.group_signals_to(draining.pid) == fake.group_signals_to(quitting.pid) == [signal.SIGKILL]
    assert {draining.reason, quitting.reason} == {"drain_timeout"}


def test_quit_and_the_emergency_stop_kill_whole_groups(sup: Supervisor, fake: FakeProcesses) -> None:
    first, second = boot(sup, fake, time.monotonic())
    sup.handle_quit()
    assert fake.groups == [(first.pid, signal.SIGKILL), (second.pid, signal.SIGKILL)]
    sup.reap(time.monotonic())
    third, fourth = boot(sup, fake, time.monotonic())
    sup._emergency_stop()
    assert fake.groups[2:] == [(third.pid, signal.SIGKILL), (fourth.pid, signal.SIGKILL)]


def test_a_crashed_childs_group_is_swept_and_a_drained_ones_left_alone(
    sup: Supervisor, fake: FakeProcesses
) -> None:
    crashed, drained = boot(sup, fake, time.monotonic())
    fake.die(crashed.pid, signal.SIGSEGV)
    sup.reap(time.monotonic())
    assert fake.group_signals_to(crashed.pid) == [signal.SIGKILL], "its jobs' subprocesses must not live on"
    sup.handle_term()
    assert drained.state is State.DRAINING
    fake.die(drained.pid, exited(0))
    sup.reap(time.monotonic())
    assert fake.group_signals_to(drained.pid) == [], "a clean exit: whatever it left was meant to stay"


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
    fake.say(child.pid, protocol.Booted(worker_name(child.pid)))
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


# -- the last reclaims before exit --------------------------------------------------------------
@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(reclaim, "RECLAIM_RETRY_INTERVAL", 0.5)
    return 0.5


def refused_reclaim(sup: Supervisor, tmp_path: Path) -> Reclaim:
    broken = build_config(None, environ={"DELAYED_DATABASE_URL": f"sqlite:///{tmp_path}/no/such/dir.db"})
    request = Reclaim(1, "host:h pid:1 abcd0123", broken)
    sup.reclaimer.submit(request, recheck=False)
    assert sup.reclaimer.pending == [request]
    return request


def test_a_reclaim_refused_just_before_the_stop_gets_its_last_try_when_it_is_due(
    sup: Supervisor, tmp_path: Path, quick_retry: float, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11 item 13: the "trying again in 5 s" retry must not fire 5 ms later at exit."""
    with caplog.at_level(logging.INFO, logger="delayed.supervisor"):
        refused_reclaim(sup, tmp_path)
        sup._last_reclaims()
    failed, announced, last = caplog.records
    assert "failed (try 1)" in failed.getMessage() and "trying again in 0 s" in failed.getMessage()
    assert "one last try in 0 s (another signal skips it)" in announced.getMessage()
    assert last.getMessage().startswith("last try to reclaim the jobs of host:h pid:1 abcd0123 on sqlite")
    assert "before exit failed" in last.getMessage() and "not trying again" in last.getMessage()
    assert last.created - failed.created >= quick_retry * 0.9, "not a hot retry"
    assert sup.reclaimer.pending == []


def test_a_signal_while_waiting_for_the_last_try_skips_it(
    sup: Supervisor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(reclaim, "RECLAIM_RETRY_INTERVAL", 60.0)
    request = refused_reclaim(sup, tmp_path)
    timer = threading.Timer(0.2, sup._on_signal, (signal.SIGINT, None))
    with caplog.at_level(logging.INFO, logger="delayed.supervisor"):
        timer.start()
        sup._last_reclaims()
    timer.join()
    assert request.tries == 1, "no last try after the signal"
    assert "SIGINT received while exiting: skipping the last reclaim tries" in caplog.text
    assert "not trying again to reclaim the jobs of host:h pid:1 abcd0123 (stop requested)" in caplog.text
    assert sup.reclaimer.pending == []


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
