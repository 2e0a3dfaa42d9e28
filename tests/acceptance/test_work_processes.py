"""Real `delayed work` processes: two workers on one table, SIGTERM drain, a lost connection."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import delayed
from tests.helpers import start_delayed, subprocess_env, wait_for
from tests.jobs.sample_jobs import DUPES_DDL, RUNS_DDL, RecordRun, Sleep

from ..conftest import _only

pytestmark = pytest.mark.slow


def _runs_table(db) -> None:
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS job_runs")
        conn.exec_driver_sql("DROP TABLE IF EXISTS job_dupes")
        conn.exec_driver_sql(RUNS_DDL)
        conn.exec_driver_sql(DUPES_DDL)


def _runs(db) -> list[tuple[str, int]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT token, pid FROM job_runs"))]


def _dupes(db) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.text("SELECT COUNT(*) FROM job_dupes")).scalar_one()


def _stop(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_two_worker_processes_run_5000_jobs_exactly_once(db, tmp_path: Path) -> None:
    _runs_table(db)
    total = 5000
    delayed.enqueue_many([RecordRun.build(f"job-{i}") for i in range(total)])
    env = subprocess_env(db.url)
    args = ("work", "--require", "sample_jobs", "--exit-on-complete", "--max-claims", "5")
    workers = [start_delayed(*args, env=env, log=tmp_path / f"w{i}.log") for i in range(2)]
    try:
        codes = [w.wait(timeout=600) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    logs = "\n".join((tmp_path / f"w{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], logs
    runs = _runs(db)
    tokens = [token for token, _ in runs]
    assert len(tokens) == len(set(tokens)) == total
    assert _dupes(db) == 0, "no job ran twice"
    assert db.count() == 0, db.rows()[:3]
    assert len({pid for _, pid in runs}) == 2, "both processes should have worked"
    assert "FAILED" not in logs


def test_sigterm_finishes_running_jobs_and_starts_no_new_one(db, tmp_path: Path) -> None:
    delayed.enqueue_many([Sleep.build(2.0, f"s{i}") for i in range(6)])
    env = subprocess_env(db.url)
    log = tmp_path / "worker.log"
    proc = start_delayed("work", "--require", "sample_jobs", "--max-claims", "3", env=env, log=log)
    try:
        # Three jobs locked (running), three waiting.
        wait_for(lambda: sum(1 for r in db.rows() if r["locked_by"]) == 3, timeout=60)
        running = {r["id"] for r in db.rows() if r["locked_by"]}
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()
    rows = db.rows()
    left = {r["id"] for r in rows}
    assert left.isdisjoint(running), "every running job finished and was deleted"
    assert len(left) == 3, "no job started after the signal"
    assert all(r["locked_by"] is None and r["attempts"] == 0 for r in rows)
    assert "SIGTERM received" in log.read_text()


def _kill_connections(db) -> int:
    """Terminate every other session on the test database, as a server restart would."""
    name = sa.make_url(db.url).database
    with db.engine.connect() as conn:
        if db.backend == "postgresql":
            result = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            return len(result.all())
        ids = conn.execute(
            sa.text(
                "SELECT id FROM information_schema.processlist WHERE db = :name AND id <> CONNECTION_ID()"
            ),
            {"name": name},
        ).scalars()
        count = 0
        for session_id in list(ids):
            try:
                conn.exec_driver_sql(f"KILL {int(session_id)}")
                count += 1
            except sa.exc.DBAPIError:
                pass  # already gone
        return count


@pytest.fixture(params=["postgresql", "mysql"])
def server_db(request: pytest.FixtureRequest, servers):
    """The backends with a server connection to lose."""
    yield from _only(servers, request.param)


def test_lost_connection_is_retried_and_loses_no_job(server_db, tmp_path: Path) -> None:
    db = server_db
    _runs_table(db)
    total = 600
    delayed.enqueue_many([RecordRun.build(f"lost-{i}", sleep=0.01) for i in range(total)])
    env = subprocess_env(db.url)
    log = tmp_path / "worker.log"
    proc = start_delayed(
        "work", "--require", "sample_jobs", "--max-claims", "4", "--sleep-delay", "0.2", env=env, log=log
    )
    try:
        wait_for(lambda: len(_runs(db)) >= 50, timeout=120)
        killed = 0
        for _ in range(3):
            killed += _kill_connections(db)
            time.sleep(0.3)
        assert killed > 0
        wait_for(lambda: db.count() == 0, timeout=300, interval=0.2)
    finally:
        code = _stop(proc)
    text = log.read_text()
    assert code == 0, text
    tokens = [t for t, _ in _runs(db)]
    assert len(set(tokens)) == total, "every job ran"
    # A job whose outcome was lost with the connection may run again (at least once); each
    # such duplicate needs a kill to explain it, so there are at most a few per kill round.
    assert _dupes(db) <= 3 * 4 * 2, _dupes(db)
    assert db.count() == 0
    assert "failed" in text.lower() or "error while reserving" in text.lower()


def test_second_sigterm_releases_running_jobs_and_exits_1_at_once(db, tmp_path: Path) -> None:
    ids = delayed.enqueue_many([Sleep.build(60.0, f"long{i}") for i in range(2)])
    log = tmp_path / "worker.log"
    proc = start_delayed(
        "work", "--require", "sample_jobs", "--max-claims", "2", env=subprocess_env(db.url), log=log
    )
    try:
        wait_for(lambda: all(db.row(i)["locked_by"] for i in ids), timeout=60)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log.read_text(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)  # far less than the jobs' 60 s
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1, log.read_text()
    rows = db.rows()
    assert [r["id"] for r in rows] == ids
    assert all(r["locked_by"] is None and r["attempts"] == 0 for r in rows), "released to run again"


EMBEDDED = """
import logging
import sys

import sample_jobs  # noqa: F401 - registers the jobs
from delayed.worker import Worker

logging.basicConfig(level=logging.INFO)
logging.getLogger("delayed.worker").setLevel(logging.DEBUG)  # "Job ... (id=N) RUNNING"
status = Worker(max_claims=2).run()
print(f"run() returned {status}", flush=True)
sys.exit(status)
"""


def test_code_that_embeds_worker_exits_after_a_second_sigterm_without_waiting_for_jobs(
    db, tmp_path: Path
) -> None:
    """Worker.run() in a user's script: after a second SIGTERM run() returns 1, the running
    job is released, and the interpreter exits although the job's thread still runs (a daemon
    thread): before, it waited for the 120 s job."""
    job_id = Sleep.perform_later(120.0, "embedded")
    script = tmp_path / "embedded.py"
    script.write_text(EMBEDDED)
    log = tmp_path / "embedded.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script)], env=subprocess_env(db.url), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        # Running, not just claimed: a TERM during the claim releases the row and run() returns 0.
        wait_for(lambda: f"(id={job_id}) RUNNING" in log.read_text(), timeout=60)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM received" in log.read_text(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)  # far less than the job's 120 s
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 1, text
    assert "run() returned 1" in text
    row = db.row(job_id)
    assert (row["locked_by"], row["attempts"]) == (None, 0), "released to run again"
