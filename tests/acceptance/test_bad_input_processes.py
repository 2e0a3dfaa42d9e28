"""The bad-input matrix (issue 7): each bad input gets a clear message, and no secret leaks.

Config: every [delayed] key with a wrong type (taken from delayed.config.SECTIONS, so a new key
is covered without touching this file), unknown keys and sections, a missing file, broken TOML,
through build_config and through a real `delayed work -c bad.toml` (exit 2).
Database: unreachable at start (the worker logs, backs off, keeps trying, and stops cleanly on
SIGTERM), unreachable at enqueue, a password in the URL (never in logs, titles or errors).
Rows: an unknown job name, handlers that are not pydelayed's JSON. Arguments that are not JSON.
Queue names with quotes and SQL in them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import delayed
from delayed.config import SECTIONS
from delayed.timeutil import utcnow
from tests.helpers import run_delayed, start_delayed, subprocess_env, toml_value, wait_for
from tests.jobs.sample_jobs import Noop

SECRET = "s3cret"
CLOSED_URLS = {
    "postgresql": f"postgresql://postgres:{SECRET}@127.0.0.1:1/nowhere",
    "mysql": f"mysql://root:{SECRET}@127.0.0.1:1/nowhere",
}


# ----------------------------------------------------------------------------- helpers
def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


DELAYED_KEYS = sorted(SECTIONS["delayed"].settings)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("key", DELAYED_KEYS)
def test_delayed_work_exits_2_on_a_wrong_type_naming_file_and_key(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f"[delayed]\n{key} = {toml_value({'x': 'y'})}\n")
    env = subprocess_env()
    result = run_delayed(
        "work", "-c", str(path), "--exit-on-complete", "--database-url", f"sqlite:///{tmp_path}/x.db", env=env
    )
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr and key in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "text,pattern",
    [
        ("[delayd]\nmax_claims = 1\n", r"unknown section \[delayd\]"),
        ("[delayed]\nmax_claimz = 3\n", "unknown key 'max_claimz'"),
        ("[delayed\n", "not valid TOML"),
        (None, "config file not found"),
    ],
)
def test_delayed_work_exits_2_on_a_bad_file(tmp_path: Path, text: str | None, pattern: str) -> None:
    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    result = run_delayed("work", "-c", str(path), "--exit-on-complete", env=subprocess_env())
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert pattern.replace("\\", "") in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- database
@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(CLOSED_URLS))
def test_worker_on_an_unreachable_database_logs_backs_off_and_stops_on_sigterm(
    tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "worker.log"
    env = subprocess_env(CLOSED_URLS[backend])  # from the environment: not in the process's argv
    proc = start_delayed("work", "--require", "sample_jobs", env=env, log=log)
    try:
        # Attempt 3 comes after two back-off waits (0.5 s doubling): it keeps trying.
        wait_for(lambda: "Error while reserving jobs (attempt 3)" in log.read_text(), timeout=90)
        assert proc.poll() is None, log.read_text()
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert code == 0, text
    assert "Connection refused" in text and "127.0.0.1" in text
    assert SECRET not in text and SECRET not in cmdline
    assert "Traceback" not in text
    assert "SIGTERM received" in text


@pytest.mark.parametrize("backend", sorted(CLOSED_URLS))
def test_migrate_failure_names_the_redacted_url(tmp_path: Path, backend: str) -> None:
    result = run_delayed("migrate", env=subprocess_env(CLOSED_URLS[backend]))
    assert result.returncode == 1  # a database failure at run time (2 is for bad input)
    assert "root:***@127.0.0.1:1" in result.stderr or "postgres:***@127.0.0.1:1" in result.stderr
    assert "Connection refused" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_mysql_wrong_password_is_not_echoed() -> None:
    result = run_delayed("migrate", env=subprocess_env(f"mysql://root:{SECRET}@127.0.0.1:3306/test"))
    if result.returncode == 0:  # pragma: no cover - a server that ignores passwords
        pytest.skip("this MariaDB accepts any password for root")
    assert result.returncode == 1
    assert "Access denied" in result.stderr and "root:***@" in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.slow
def test_password_never_printed_by_a_real_worker_migrate_or_jobs_command(pg, tmp_path: Path) -> None:
    """PostgreSQL trust auth accepts any password: a working URL that carries a secret."""
    url = sa.make_url(pg.url).set(password=SECRET).render_as_string(hide_password=False)
    env = subprocess_env(url, DELAYED_LOG_LEVEL="DEBUG")
    migrated = run_delayed("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "***" in migrated.stdout
    delayed.enqueue_many([Noop.build(1), Noop.set(queue="x").build(2)])
    # A job whose class this worker does not know: its failure is logged too.
    with pg.engine.begin() as conn:
        conn.execute(delayed.jobs_table.insert().values(_row("no.such.Job", '{"job": "no.such.Job"}')))
    log = tmp_path / "worker.log"
    proc = start_delayed("work", "--require", "sample_jobs", env=env, log=log)
    try:
        wait_for(lambda: pg.count() == 1, timeout=90)  # the two Noops ran; the unknown one failed
        wait_for(lambda: pg.rows()[0]["failed_at"] is not None, timeout=90)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        comm = Path(f"/proc/{proc.pid}/comm").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    listed = run_delayed("jobs", "list", "--failed", env=env)
    assert listed.returncode == 0, listed.stderr
    text = log.read_text()
    assert "no.such.Job" in text and "FAILED" in text
    for output in (text, cmdline, comm, migrated.stdout, migrated.stderr, listed.stdout, listed.stderr):
        assert SECRET not in output


# ----------------------------------------------------------------------------- rows
def _row(name: str, handler: str, queue: str = "default") -> dict[str, Any]:
    now = utcnow()
    return {
        "priority": 0,
        "attempts": 0,
        "handler": handler,
        "run_at": now,
        "queue": queue,
        "name": name,
        "created_at": now,
        "updated_at": now,
    }


def test_a_worker_without_require_fails_the_row_naming_the_job(db) -> None:
    job_id = Noop.perform_later(1)
    result = run_delayed("work", "--exit-on-complete", env=subprocess_env(db.url))
    assert result.returncode == 0, result.stderr
    row = db.row(job_id)
    assert row["failed_at"] is not None
    assert "no job class is registered as 'tests.noop'" in row["last_error"]
    assert "tests.noop" in result.stderr


# ----------------------------------------------------------------------------- arguments
# ----------------------------------------------------------------------------- queue names
EVIL_QUEUES = [
    "q'; DROP TABLE delayed_jobs; --",
    "\"; DELETE FROM delayed_jobs WHERE ''='",
    "back\\slash' OR '1'='1",
    "100%_like",
    "snow ☃ o'clock",
]


@pytest.mark.slow
def test_delayed_work_on_a_queue_named_like_sql(db) -> None:
    evil = EVIL_QUEUES[0]
    target = Noop.set(queue=evil).perform_later(1)
    control = Noop.set(queue="default").perform_later(2)
    env = subprocess_env(db.url)
    result = run_delayed("work", "--queue", evil, "--require", "sample_jobs", "--exit-on-complete", env=env)
    assert result.returncode == 0, result.stderr
    assert db.row(target) is None and db.row(control) is not None
    listed = run_delayed("jobs", "list", "--queue", evil, env=env)
    assert listed.returncode == 0 and "No jobs match." in listed.stderr
    stats = run_delayed("jobs", "stats", "--json", env=env)
    assert [(g["queue"], g["total"]) for g in json.loads(stats.stdout)] == [("default", 1)]


@pytest.mark.slow
def test_supervisor_on_an_unreachable_database_keeps_children_retrying(tmp_path: Path) -> None:
    """Under the supervisor: children log the error and back off; titles and logs hide the password."""
    import psutil

    path = write(
        tmp_path,
        f'[delayed]\ndatabase_url = "{CLOSED_URLS["postgresql"]}"\nrequire = ["sample_jobs"]\n'
        "[supervisor]\nworkers = 1\n",
        "delayed.toml",
    )
    log = tmp_path / "supervisor.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "delayed.supervisor", "-c", str(path)],
            env=subprocess_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),
            start_new_session=True,
        )
    try:
        wait_for(lambda: "Error while reserving jobs (attempt 3)" in log.read_text(), timeout=90)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]
        titles = [" ".join(p.cmdline()) for p in family]
        assert any("delayed-supervisor: worker" in t for t in titles), titles
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code == 0, text
    assert "Connection refused" in text and "postgres:***@127.0.0.1:1" in text
    assert SECRET not in text and not [t for t in titles if SECRET in t]
