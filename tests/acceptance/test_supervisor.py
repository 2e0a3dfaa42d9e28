"""`delayed-supervisor`: real master and child processes, real signals, PostgreSQL.

Each test writes a delayed.toml pointing at the session's PostgreSQL database, starts the
supervisor in its own process group (so teardown can kill everything it made), and polls
the table, the sup_runs table and the log until a condition holds. No timing is asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
import sqlalchemy as sa

from delayed import systemd
from tests.helpers import TESTS, kill_session, render_toml, run_delayed, subprocess_env, wait_for
from tests.jobs.supervisor_jobs import RUNS_DDL, Crash, Hang, Hog, Run, Spawner

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- helpers
class Sup:
    """One `delayed-supervisor` process and its files."""

    def __init__(self, tmp: Path, url: str, supervisor: dict[str, Any], **sections: Any) -> None:
        self.tmp = tmp
        self.url = url
        self.path = tmp / "delayed.toml"
        self.log_path = tmp / "supervisor.log"
        self.proc: subprocess.Popen[str] | None = None
        self.write(supervisor, **sections)

    def write(self, supervisor: dict[str, Any], **sections: Any) -> None:
        delayed_section = {
            "database_url": self.url,
            "require": ["sample_jobs", "supervisor_jobs"],
            "sleep_delay": 0.5,
            **sections.pop("delayed", {}),
        }
        self.path.write_text(render_toml({"delayed": delayed_section, "supervisor": supervisor, **sections}))

    def start(self, **env: str) -> Sup:
        out = open(self.log_path, "a")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "delayed.supervisor", "-c", str(self.path)],
            env=subprocess_env(None, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=str(TESTS),
            start_new_session=True,
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def children(self, kind: str = "worker") -> list[int]:
        """Pids of live children whose title names `kind` ("worker" or "monitor")."""
        found = []
        try:
            procs = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return []
        for proc in procs:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if f"delayed-supervisor: {kind}" in " ".join(proc.cmdline()):
                    found.append(proc.pid)
            except psutil.NoSuchProcess:
                continue
        return sorted(found)

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 90) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        """Kill the whole session we started (master, children, their jobs' subprocesses)."""
        if self.proc is None:
            return
        kill_session(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def sups(pg, tmp_path: Path) -> Iterator[Any]:
    """Make supervisors for a test; all of them are killed (with their children) afterwards."""
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sup_runs")
        conn.exec_driver_sql(RUNS_DDL)
    made: list[Sup] = []

    def make(supervisor: dict[str, Any], **sections: Any) -> Sup:
        sup = Sup(tmp_path, pg.url, supervisor, **sections)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.cleanup()


def runs(pg) -> list[dict[str, Any]]:
    with pg.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT token, pid, phase, at, attempts FROM sup_runs ORDER BY at"))
        return [dict(r._mapping) for r in rows]


def tokens(pg, phase: str) -> list[str]:
    return [r["token"] for r in runs(pg) if r["phase"] == phase]


def read_events(path: Path) -> list[dict[str, Any]]:
    """The supervisor's events, as supervisor_jobs records them with SUP_EVENTS_FILE."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dump(sup: Sup, pg) -> str:
    return f"--- log ---\n{sup.log()[-6000:]}\n--- rows ---\n{pg.rows()[:10]}\n--- runs ---\n{runs(pg)[-20:]}"


# ----------------------------------------------------------------------------- TERM / QUIT
def test_sigterm_lets_running_jobs_finish_starts_none_and_exits_0(sups, pg) -> None:
    ids = [Run.perform_later(f"t{i}", sleep=4) for i in range(8)]
    sup = sups({"workers": 2, "max_claims": 2, "graceful_timeout": 60}).start()
    wait_for(lambda: len(tokens(pg, "start")) == 4, timeout=90)
    signalled_at = time.time()
    sup.signal(signal.SIGTERM)
    code = sup.wait()
    assert code == 0, dump(sup, pg)
    started, ended = tokens(pg, "start"), tokens(pg, "end")
    assert sorted(started) == sorted(ended), "every running job finished"
    assert all(r["at"] < signalled_at for r in runs(pg) if r["phase"] == "start"), "no job started after TERM"
    left = pg.rows()
    assert len(left) == len(ids) - len(started)
    assert all(r["locked_by"] is None and r["attempts"] == 0 for r in left), left
    text = sup.log()
    assert "SIGTERM received" in text and "killing child" not in text
    # Both children drained themselves.
    assert len(re.findall(r"exited with status 0 after [\d.]+ s: shutdown", text)) == 2, text


def test_sigquit_kills_children_and_releases_their_jobs(sups, pg) -> None:
    for i in range(3):
        Run.perform_later(f"q{i}", sleep=120)
    sup = sups({"workers": 1, "max_claims": 3}).start()
    wait_for(lambda: len(tokens(pg, "start")) == 3, timeout=90)
    sup.signal(signal.SIGQUIT)
    assert sup.wait() == 0, dump(sup, pg)
    rows = pg.rows()
    assert len(rows) == 3 and not tokens(pg, "end")
    assert all(r["locked_by"] is None and r["attempts"] == 0 for r in rows), rows
    assert "quit" in sup.log()


def test_graceful_timeout_kills_late_children_and_releases_their_jobs_at_once(sups, pg) -> None:
    slow = Run.perform_later("slow", sleep=120)
    sup = sups({"workers": 1, "max_claims": 2, "graceful_timeout": 2}).start()
    wait_for(lambda: "slow" in tokens(pg, "start"), timeout=60)
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, dump(sup, pg)
    row = pg.row(slow)
    assert row is not None and row["locked_by"] is None and row["attempts"] == 0, row
    assert ": drain_timeout" in sup.log()


# ----------------------------------------------------------------------------- child death
def test_sigkill_of_a_child_mid_job_replaces_it_and_loses_no_job(sups, pg) -> None:
    total = 12
    for i in range(total):
        Run.perform_later(f"k{i}", sleep=1.5)
    sup = sups({"workers": 2, "max_claims": 2})
    events_file = sup.tmp / "events.jsonl"
    sup.start(SUP_EVENTS_FILE=str(events_file))
    wait_for(lambda: len(sup.children()) == 2, timeout=60)
    victim_token = wait_for(lambda: next(iter(set(tokens(pg, "start")) - set(tokens(pg, "end"))), None))
    victim = next(r["pid"] for r in runs(pg) if r["token"] == victim_token)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in sup.children() and len(sup.children()) == 2, timeout=60)
    wait_for(lambda: pg.count() == 0, timeout=120, interval=0.2)
    assert set(tokens(pg, "end")) == {f"k{i}" for i in range(total)}, dump(sup, pg)
    assert tokens(pg, "start").count(victim_token) >= 2, "the killed job ran again"
    text = sup.log()
    assert f"child {victim} (pool default) was killed by signal SIGKILL" in text
    # The master reclaims under the name the child made (with its random part) and reported.
    started = re.search(rf"Starting worker (host:\S+ pid:{victim} [0-9a-f]{{8}}):", text)
    assert started is not None, text
    assert re.search(rf"reclaimed \d+ job\(s\) of {re.escape(started[1])}: ", text), text
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    sup_events = read_events(events_file)
    spawned = [e["pid"] for e in sup_events if e["name"] == "delayed.supervisor.child_spawned"]
    assert (
        victim in spawned
        and len(spawned) == 3
        and all(e["pool"] == "default" for e in sup_events if "pool" in e)
    )
    exited = {e["pid"]: e for e in sup_events if e["name"] == "delayed.supervisor.child_exited"}
    assert exited[victim]["reason"] == "crashed" and exited[victim]["lifetime"] > 0
    assert sorted(e["reason"] for pid, e in exited.items() if pid != victim) == ["shutdown", "shutdown"]
    reclaimed = next(
        e for e in sup_events if e["name"] == "delayed.supervisor.locks_reclaimed" and e["pid"] == victim
    )
    # The job it was running counts an attempt; a row it had claimed but not started, or whose
    # outcome it had not written yet, would be released.
    assert reclaimed["attempted"] >= 1, reclaimed
    assert reclaimed["attempted"] + reclaimed["released"] == reclaimed["count"], reclaimed


def test_a_job_that_ended_before_its_child_died_is_released_not_charged(sups, pg) -> None:
    """Issue 11 item 4: the child dies with a finished job's delete still unwritten.

    The test holds the row's lock in PostgreSQL so the child's completer waits on its DELETE,
    SIGKILLs the child and ends that DELETE's server session (a dead client's autocommit
    DELETE would still run once the lock is free). With max_attempts = 1 and
    destroy_failed_jobs, charging that row an attempt would delete it without its running
    again; it must be released and run again instead (at least once: it ran twice).
    """
    job = Run.perform_later("ended", sleep=5)  # room for the test to lock the row before it ends
    settings = {"workers": 1, "max_claims": 2}
    sup = sups(settings, delayed={"max_attempts": 1, "destroy_failed_jobs": True})
    events_file = sup.tmp / "events.jsonl"
    sup.start(SUP_EVENTS_FILE=str(events_file))
    wait_for(lambda: "ended" in tokens(pg, "start"), timeout=90)
    child = next(r["pid"] for r in runs(pg) if r["token"] == "ended")
    waiting_delete = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query ILIKE 'DELETE FROM%delayed_jobs%'"
    )
    with pg.engine.connect() as holder:
        holder.execute(sa.text("SELECT id FROM delayed_jobs WHERE id = :id FOR UPDATE"), {"id": job})
        wait_for(lambda: "ended" in tokens(pg, "end"), timeout=60)
        with pg.engine.connect() as probe:
            [backend] = wait_for(lambda: probe.execute(waiting_delete).scalars().all(), timeout=60)
            os.kill(child, signal.SIGKILL)
            wait_for(
                lambda: f"child {child} (pool default) was killed by signal SIGKILL" in sup.log(), timeout=60
            )
            assert probe.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend}).scalar_one()
        holder.rollback()
    wait_for(lambda: tokens(pg, "end").count("ended") == 2, timeout=90)
    assert [r["attempts"] for r in runs(pg) if r["token"] == "ended"] == [0, 0, 0, 0], dump(sup, pg)
    wait_for(lambda: pg.row(job) is None, timeout=60)
    reclaimed = next(
        e
        for e in read_events(events_file)
        if e["name"] == "delayed.supervisor.locks_reclaimed" and e["pid"] == child
    )
    assert (reclaimed["count"], reclaimed["attempted"], reclaimed["released"]) == (1, 0, 1), reclaimed
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


def test_a_job_that_kills_its_process_counts_attempts_until_it_fails(sups, pg) -> None:
    crash = Crash.perform_later("c", status=7)
    other = [Run.perform_later(f"o{i}", sleep=0.2) for i in range(3)]
    sup = sups({"workers": 1, "max_claims": 2}).start()
    wait_for(lambda: (pg.row(crash) or {}).get("failed_at") is not None, timeout=120)
    row = pg.row(crash)
    assert row is not None and row["attempts"] == 2, dump(sup, pg)
    assert "exited with status 7" in row["last_error"]
    wait_for(lambda: all(pg.row(i) is None for i in other), timeout=120)
    assert sup.alive()
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


def test_a_child_that_stops_heartbeating_is_killed_and_its_jobs_count_an_attempt(sups, pg) -> None:
    job = Run.perform_later("frozen", sleep=1)
    sup = sups({"workers": 1, "max_claims": 1, "heartbeat_timeout": 3}).start()
    wait_for(lambda: "frozen" in tokens(pg, "start"), timeout=60)
    frozen = sup.children()[0]
    os.kill(frozen, signal.SIGSTOP)  # alive, but silent: as a process stuck holding the GIL
    wait_for(lambda: f"killing child {frozen} (pool default): heartbeat" in sup.log(), timeout=60)
    wait_for(lambda: len(sup.children()) == 1 and frozen not in sup.children(), timeout=60)
    row = wait_for(lambda: pg.row(job) if (pg.row(job) or {}).get("attempts") == 1 else None, timeout=60)
    assert "sent no heartbeat for 3 s" in row["last_error"], row
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


def test_children_drain_and_exit_when_the_master_dies(sups, pg) -> None:
    sup = sups({"workers": 2, "max_claims": 1}).start()
    kids = wait_for(lambda: len(sup.children()) == 2 and sup.children(), timeout=60)
    Run.perform_later("orphan", sleep=2)
    wait_for(lambda: "orphan" in tokens(pg, "start"), timeout=60)
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait()

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(pid) for pid in kids), timeout=60)
    assert tokens(pg, "end") == ["orphan"], "the running job finished before its child left"
    wait_for(lambda: pg.count() == 0, timeout=30)
    assert "the supervisor (pid" in sup.log() and "is gone: draining and exiting" in sup.log()


# ----------------------------------------------------------------------------- max_run_time
def test_a_job_past_its_max_run_time_gets_its_child_replaced(sups, pg) -> None:
    hang = Hang.set(priority=0).perform_later("hang")
    others = [f"r{i}" for i in range(4)]
    for token in others:
        Run.perform_later(token, sleep=5)
    sup = sups({"workers": 1, "max_claims": 3, "max_run_time_grace": 2})
    events_file = sup.tmp / "events.jsonl"
    sup.start(SUP_EVENTS_FILE=str(events_file))
    first = wait_for(lambda: sup.children(), timeout=60)[0]
    # Killed twice (max_attempts = 2): then failed for good, with the reason.
    wait_for(lambda: (pg.row(hang) or {}).get("failed_at") is not None, timeout=150, interval=0.2)
    row = pg.row(hang)
    assert row is not None and row["attempts"] == 2, dump(sup, pg)
    assert row["last_error"].startswith("max_run_time of 2 s exceeded")
    assert first not in sup.children()
    wait_for(lambda: set(tokens(pg, "end")) == set(others), timeout=120)
    # The other jobs were released, never charged an attempt, though some were killed mid-run.
    assert all(r["attempts"] == 0 for r in runs(pg) if r["token"] in others)
    wait_for(lambda: pg.count() == 1, timeout=60)  # only the failed job is left
    text = sup.log()
    assert f"killing child {first} (pool default): max_run_time" in text
    assert re.search(
        rf"reclaimed \d+ job\(s\) of host:\S+ pid:{first} [0-9a-f]{{8}}: \d+ released, 1 counted", text
    )
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    sup_events = read_events(events_file)
    killed = [e for e in sup_events if e["name"] == "delayed.supervisor.job_killed"]
    assert [e["job_id"] for e in killed] == [hang, hang] and killed[0]["pid"] == first
    assert all(e["max_run_time"] == 2 and e["run_time"] >= 4 for e in killed), killed
    exited = [e for e in sup_events if e["name"] == "delayed.supervisor.child_exited"]
    assert [e["reason"] for e in exited][:2] == ["max_run_time", "max_run_time"]
    reclaims = [e for e in sup_events if e["name"] == "delayed.supervisor.locks_reclaimed"]
    assert reclaims[0]["pid"] == first and reclaims[0]["attempted"] == 1
    assert reclaims[0]["released"] == reclaims[0]["count"] - 1


def test_a_max_run_time_kill_takes_the_jobs_subprocesses_with_it(sups, pg) -> None:
    """Issue 11 item 10: each child leads its own process group and the master kills the group."""
    job = Spawner.perform_later("spawner")
    sup = sups({"workers": 1, "max_claims": 1, "max_run_time_grace": 1}).start()
    [child] = wait_for(lambda: sup.children(), timeout=60)
    assert os.getpgid(child) == child != os.getpgid(sup.pid), "the child leads its own group"
    wait_for(lambda: "spawner" in tokens(pg, "start"), timeout=60)
    spawned = [r["pid"] for r in runs(pg) if r["phase"] == "sub"]
    assert len(spawned) == 3 and all(os.getpgid(pid) == child for pid in spawned)
    wait_for(lambda: (pg.row(job) or {}).get("failed_at") is not None, timeout=90)
    assert f"killing child {child} (pool default): max_run_time" in sup.log()

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(pid) for pid in spawned), timeout=10)
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


# ----------------------------------------------------------------------------- HUP, TTIN, TTOU
def test_hup_with_more_workers_reaches_the_new_count_and_loses_no_job(sups, pg) -> None:
    total = 60
    for i in range(total):
        Run.perform_later(f"h{i}", sleep=0.3)
    settings = {"workers": 1, "max_claims": 2}
    sup = sups(settings).start()
    first = wait_for(lambda: sup.children(), timeout=60)[0]
    wait_for(lambda: len(tokens(pg, "end")) >= 3, timeout=60)
    sup.write({**settings, "workers": 3})
    sup.signal(signal.SIGHUP)
    wait_for(lambda: len(sup.children()) == 3 and first not in sup.children(), timeout=90)
    sup.signal(signal.SIGTTIN)
    wait_for(lambda: len(sup.children()) == 4, timeout=60)
    sup.signal(signal.SIGTTOU)
    wait_for(lambda: len(sup.children()) == 3, timeout=60)
    wait_for(lambda: pg.count() == 0, timeout=120, interval=0.2)
    assert set(tokens(pg, "end")) == {f"h{i}" for i in range(total)}, dump(sup, pg)
    text = sup.log()
    assert f"child {first} (pool default) exited with status 0" in text and ": reload" in text
    # A broken file on HUP: the error is logged and the running children stay.
    running = sup.children()
    sup.path.write_text(sup.path.read_text() + '\n[supervisor]\nworkers = "many"\n')
    sup.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed, keeping the running configuration" in sup.log(), timeout=60)
    assert sup.alive() and sup.children() == running
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


# ----------------------------------------------------------------------------- crash loop
def test_a_crash_looping_child_backs_off_and_the_master_stays_up(sups, pg) -> None:
    sup = sups({"workers": 2, "on_worker_boot": "supervisor_jobs:boot_fails"}).start()
    # Two children die per round: the back-off doubles with each death (1, 2, 4, 8 s ...).
    wait_for(lambda: "; next spawn in 8 s" in sup.log(), timeout=120)
    spawned = sup.log().count("spawned child")
    time.sleep(3)
    # The next round is 8 s away: three seconds later at most that one round has started.
    assert sup.log().count("spawned child") <= spawned + 2, sup.log()
    assert sup.alive(), sup.log()
    delays = [float(d) for d in re.findall(r"next spawn in (\d+) s", sup.log())]
    assert delays == sorted(delays) and delays[:4] == [1, 2, 4, 8], delays
    assert "(crash loop)" in sup.log()
    assert "on_worker_boot says no" in sup.log()
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


# ----------------------------------------------------------------------------- memory
def test_a_child_over_max_memory_is_drained_and_replaced(sups, pg) -> None:
    sup = sups({"workers": 1, "max_claims": 2, "max_memory_mb": 200}).start()
    first = wait_for(lambda: sup.children(), timeout=60)[0]
    Hog.perform_later("hog", mb=300)
    wait_for(lambda: first not in sup.children() and len(sup.children()) == 1, timeout=90)
    assert f"child {first} (pool default) uses" in sup.log()
    wait_for(lambda: f"child {first} (pool default) exited with status 0" in sup.log(), timeout=30)
    assert tokens(pg, "end") == ["hog"]
    Run.perform_later("after")
    wait_for(lambda: "after" in tokens(pg, "end"), timeout=60)
    assert "pool default) exited with status 0 after" in sup.log() and ": memory" in sup.log()
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0


# ----------------------------------------------------------------------------- bad files
BAD_FILES = [
    ('[supervisor]\nworkers = "two"\n', ["[supervisor] workers", "expected an integer"]),
    ("[supervisor]\nworkerz = 2\n", ["[supervisor] unknown key 'workerz'"]),
    ('[supervisor]\ngraceful_timeout = "soon"\n', ["[supervisor] graceful_timeout"]),
    ('[supervisor]\non_worker_boot = "nocolon"\n', ["[supervisor] on_worker_boot", "module:function"]),
    (
        '[supervisor]\non_worker_boot = "supervisor_jobs:missing"\n',
        ["on_worker_boot", "no function 'missing'"],
    ),
    (
        '[[pool]]\nname = "a"\nmax_priority = "urgent"\n',
        ["[[pool]] #1 max_priority", "unknown priority name"],
    ),
    ('[[pool]]\nname = "a"\n[[pool]]\nname = "a"\n', ["[[pool]] #2", "used by two pools"]),
    ("[[pool]]\nworkers = -1\n", ["[[pool]] #1", "workers", "at least 0"]),
    ("[delayed]\nmax_run_time = 0\n", ["[delayed] max_run_time"]),
    ('[delayed]\nrequire = ["no_such_module_xyz"]\n', ["no_such_module_xyz"]),
    ("[supervisor\nworkers = 2\n", ["not valid TOML"]),
    ("[supervisor]\nmax_run_time_grace = 30\n", ["[supervisor] max_run_time_grace", "must be below 20 s"]),
]


@pytest.mark.parametrize(("body", "expected"), BAD_FILES)
def test_a_bad_config_file_exits_2_naming_the_file_and_key(
    tmp_path: Path, body: str, expected: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = subprocess.run(
        [sys.executable, "-m", "delayed.supervisor", "-c", str(path)],
        env=subprocess_env(None),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(TESTS),
    )
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr or "no_such_module" in body
    for text in expected:
        assert text in result.stderr, result.stderr


def test_check_refuses_a_grace_that_outlives_the_lock(tmp_path: Path) -> None:
    """Issue 11 item 5: `delayed supervise --check` exits 2 naming the key and the bound."""
    path = tmp_path / "grace.toml"
    path.write_text("[supervisor]\nmax_run_time_grace = 25\n")
    result = run_delayed("supervise", "--check", "-c", str(path), env=subprocess_env(None))
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"{path}: [supervisor] max_run_time_grace: 25 s is too long; it must be below 20 s" in result.stderr
    )
    path.write_text("[supervisor]\nmax_run_time_grace = 19\n")
    assert run_delayed("supervise", "--check", "-c", str(path), env=subprocess_env(None)).returncode == 0


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = subprocess.run(
        ["delayed-supervisor", "-c", str(path)], capture_output=True, text=True, timeout=60, cwd=str(TESTS)
    )
    assert result.returncode == 2
    assert f"{path}: config file not found" in result.stderr


# ----------------------------------------------------------------------------- systemd
class NotifyListener:
    """A real AF_UNIX datagram socket, as systemd's NOTIFY_SOCKET, collecting every message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def lines(self) -> list[str]:
        return [line for message in list(self.messages) for line in message.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_ready_reloading_stopping_and_watchdog_reach_a_real_notify_socket(sups, pg, tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        sup = sups({"workers": 2, "max_claims": 1})
        sup.start(NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="1000000")
        wait_for(lambda: "READY=1" in listener.lines(), timeout=60)
        assert len(sup.children()) == 2, "READY=1 comes once the children run"
        wait_for(lambda: listener.lines().count("WATCHDOG=1") >= 3, timeout=60)
        assert any(line.startswith("STATUS=default 2/2") for line in listener.lines()), listener.lines()
        sup.signal(signal.SIGHUP)
        wait_for(lambda: "RELOADING=1" in listener.lines(), timeout=60)
        wait_for(lambda: listener.lines().count("READY=1") >= 2, timeout=60)
        sup.signal(signal.SIGTERM)
        assert sup.wait() == 0, sup.log()
        wait_for(lambda: "STOPPING=1" in listener.lines(), timeout=10)
        lines = listener.lines()
        assert lines.index("READY=1") < lines.index("RELOADING=1") < lines.index("STOPPING=1")
    finally:
        listener.close()


CLOSED_PORT = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


def log_time(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_children_that_cannot_reach_the_database_are_reported_and_the_last_reclaim_waits(
    tmp_path: Path,
) -> None:
    """Issue 11 item 13, with a closed port: the master never says "all children are running";
    it logs the outage once, shows it in its title and STATUS=; on SIGTERM each drained child's
    reclaim, refused with "trying again in 5 s", gets its last try when that is due."""
    listener = NotifyListener(tmp_path / "notify.sock")
    sup = Sup(tmp_path, CLOSED_PORT, {"workers": 2, "max_claims": 1})
    try:
        sup.start(NOTIFY_SOCKET=str(listener.path))
        wait_for(lambda: "worker children cannot reach the database" in sup.log(), timeout=60)
        unreachable = "database unreachable from 2/2 children"
        wait_for(lambda: any(unreachable in line for line in listener.lines()), timeout=30)
        assert "READY=1" in listener.lines(), "the service started; STATUS= says it does not work"
        assert unreachable in " ".join(psutil.Process(sup.pid).cmdline())
        sup.signal(signal.SIGTERM)
        assert sup.wait() == 0, sup.log()
    finally:
        sup.cleanup()
        listener.close()
    lines = sup.log().splitlines()
    text = "\n".join(lines)
    assert "all children are running" not in text
    assert text.count(f"worker children cannot reach the database {CLOSED_PORT}") == 1
    assert "report it, none reaches it): OperationalError: connection" in text, text
    failed = r"reclaiming the jobs of (.+?) on \S+ failed \(try 1\).*trying again in 5 s"
    refused = {match[1]: log_time(line) for line in lines if (match := re.search(failed, line))}
    last = {
        match[1]: log_time(line)
        for line in lines
        if (match := re.search(r"last try to reclaim the jobs of (.+?) on \S+ before exit failed", line))
    }
    assert len(refused) == 2 and set(last) == set(refused), text
    for worker, at in refused.items():
        assert (last[worker] - at).total_seconds() >= 4.9, f"{worker}: a hot retry\n{text}"
    assert "one last try in" in text


def test_notify_reaches_an_abstract_socket_and_watchdog_follows_the_env() -> None:
    name = f"pydelayed-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert systemd.notify("READY=1\nSTATUS=hello", f"@{name}")
        assert sock.recv(4096) == b"READY=1\nSTATUS=hello"
    assert not systemd.notify("READY=1", None)
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "4000000"}) == 2.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({}) is None
    env = {"NOTIFY_SOCKET": f"@{name}", "WATCHDOG_USEC": "2000000"}
    notifier = systemd.Notifier(env)
    assert notifier.enabled and notifier.watchdog == 1.0 and env == {}, "the env is cleaned for children"


# ----------------------------------------------------------------------------- files, hooks, monitor
def test_pidfile_log_file_usr1_and_on_worker_boot(sups, pg, tmp_path: Path) -> None:
    boot_dir = tmp_path / "boots"
    boot_dir.mkdir()
    log_file = tmp_path / "sup-file.log"
    settings = {
        "workers": 2,
        "max_claims": 1,
        "pidfile": str(tmp_path / "sup.pid"),
        "log_file": str(log_file),
        "on_worker_boot": "supervisor_jobs:boot_marks",
    }
    sup = sups(settings).start(SUP_BOOT_DIR=str(boot_dir))
    children = wait_for(lambda: len(sup.children()) == 2 and sup.children(), timeout=60)
    assert (tmp_path / "sup.pid").read_text().strip() == str(sup.pid)
    wait_for(lambda: sorted(int(p.name) for p in boot_dir.iterdir()) == children, timeout=30)
    assert all(p.read_text() == str(sup.pid) for p in boot_dir.iterdir()), "the hook ran in the children"
    wait_for(lambda: log_file.exists() and "spawned child" in log_file.read_text(), timeout=30)
    log_file.rename(tmp_path / "sup-file.log.1")
    sup.signal(signal.SIGUSR1)
    wait_for(lambda: log_file.exists() and "USR1: reopened" in log_file.read_text(), timeout=30)
    for pid in children:
        wait_for(lambda pid=pid: f"child {pid} reopened 1 log file(s)" in log_file.read_text(), timeout=30)
    Run.perform_later("logged")
    wait_for(lambda: "logged" in tokens(pg, "end"), timeout=60)
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0
    assert not (tmp_path / "sup.pid").exists(), "the pidfile is removed at exit"
    assert "Worker host:" in log_file.read_text(), "children write to the reopened file too"


def test_monitor_true_runs_one_monitor_child(sups, pg) -> None:
    sup = sups({"workers": 1, "monitor": True}).start()
    wait_for(lambda: len(sup.children("monitor")) == 1 and len(sup.children()) == 1, timeout=60)
    sup.signal(signal.SIGTERM)
    assert sup.wait() == 0, sup.log()
    assert "(pool monitor) exited with status 0" in sup.log()
