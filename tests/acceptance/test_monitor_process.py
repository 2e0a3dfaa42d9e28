"""The monitor's figures against a table of known rows, on every backend."""

from __future__ import annotations

import json
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from delayed.monitor import METRICS
from delayed.schema import jobs
from delayed.timeutil import utcnow
from tests.helpers import run_delayed, start_delayed, subprocess_env
from tests.statsd_helpers import UdpListener, write_toml

NAMES = ("interactive", "user_visible", "eventual", "reporting")
# Slack for ages: rows are written with the test's clock and measured with the database's a
# moment later; on a loaded machine that moment can be long. Never a speed assertion.
SLACK = 45.0


def insert(
    db: Any,
    *,
    priority: int,
    queue: str | None = "default",
    run_in: float = 0.0,
    locked_ago: float | None = None,
    failed: bool = False,
    attempts: int = 0,
) -> None:
    """A row whose times are relative to now (seconds)."""
    now = utcnow()
    row = {
        "priority": priority,
        "attempts": attempts,
        "handler": '{"job":"tests.noop","args":[],"kwargs":{}}',
        "name": "tests.noop",
        "queue": queue,
        "run_at": now + timedelta(seconds=run_in),
        "locked_at": None if locked_ago is None else now - timedelta(seconds=locked_ago),
        "locked_by": None if locked_ago is None else "host:test pid:1",
        "failed_at": now if failed else None,
        "created_at": now,
        "updated_at": now,
    }
    with db.engine.begin() as conn:
        conn.execute(jobs.insert().values(**row))


def fill_known_table(db: Any) -> None:
    """The fixture behind the expected figures below (lock timeout 330 s: max_run_time 300)."""
    # interactive (0-9, and negatives), queue default
    insert(db, priority=0, run_in=-30)  # A workable
    insert(db, priority=5, run_in=3600, attempts=1)  # B future, erroring
    insert(db, priority=3, run_in=-600, locked_ago=180)  # C working: max_lock_age 180
    insert(db, priority=0, run_in=-1000, failed=True, attempts=25)  # D failed (not erroring)
    insert(db, priority=9, run_in=-90, locked_ago=400, attempts=2)  # E stale lock: workable, oldest
    insert(db, priority=-5, run_in=-5)  # N negative: bucketed as interactive
    # user_visible, default
    insert(db, priority=10, run_in=-90)  # F workable: max_age 90 = 50 % of 180 s
    # reporting, default
    insert(db, priority=100, run_in=-40, locked_ago=30)  # H working
    # queue "mail", eventual: failed only
    insert(db, priority=20, queue="mail", run_in=-10, failed=True, attempts=3)  # I
    # no queue, user_visible
    insert(db, priority=15, queue=None, run_in=-10)  # J workable


# ----------------------------------------------------------------------------- the command
def test_once_json_and_statsd_from_a_real_process(db: Any, tmp_path: Path) -> None:
    fill_known_table(db)
    with UdpListener() as listener:
        path = write_toml(
            tmp_path / "delayed.toml",
            {
                "delayed": {"database_url": db.url, "max_run_time": 300},
                "statsd": {"host": "127.0.0.1", "port": listener.port, "prefix": "ops"},
            },
        )
        result = run_delayed("monitor", "-c", str(path), "--once", "--format", "json", env=subprocess_env())
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        got = {(m["metric"], m["priority"], m["queue"]): m["value"] for m in document["metrics"]}
        assert got[("count", "interactive", "default")] == 6
        assert got[("workable_count", "interactive", "default")] == 3
        assert got[("alert_age_percent", "interactive", "default")] == 100.0
        assert 50.0 <= got[("alert_age_percent", "user_visible", "default")] < 50.0 + SLACK / 180 * 100
        assert got[("failed_count", "eventual", "mail")] == 1
        assert all(got[(m, "eventual", "default")] == 0 for m in METRICS)
        assert document["database_adapter"] == db.backend and document["table"] == "delayed_jobs"

        wanted = {
            "ops.job.count.default.interactive:6|g",
            "ops.job.workable_count.default.interactive:3|g",
            "ops.job.failed_count.mail.eventual:1|g",
            "ops.job.count._none.user_visible:1|g",
            "ops.job.alert_age_percent.default.interactive:100.0|g",
            "ops.job.count.default.eventual:0|g",
        }
        lines = listener.wait_for_lines(
            lambda lines: wanted <= set(lines) and _has(lines, "ops.monitor.run:")
        )
        assert any(re.fullmatch(r"ops\.job\.max_age\.default\.interactive:\d+(\.\d+)?\|g", x) for x in lines)


def _has(lines: list[str], prefix: str) -> bool:
    return any(line.startswith(prefix) for line in lines)


def test_once_text(db: Any, tmp_path: Path) -> None:
    fill_known_table(db)
    env = subprocess_env(DELAYED_MAX_RUN_TIME="300")  # the environment reaches the monitor too
    result = run_delayed("monitor", "--database-url", db.url, "--once", "--queues", "default,mail", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["queue", "priority", "metrics"]
    interactive = next(line for line in lines if line.split()[:2] == ["default", "interactive"])
    assert "count=6 " in interactive and "workable_count=3 " in interactive
    assert len(lines) == 1 + len(NAMES) * 2


def test_loop_until_sigterm(db: Any, tmp_path: Path) -> None:
    insert(db, priority=0, run_in=-5)
    with UdpListener() as listener:
        path = write_toml(
            tmp_path / "delayed.toml",
            {"delayed": {"database_url": db.url}, "statsd": {"host": "127.0.0.1", "port": listener.port}},
        )
        proc = start_delayed("monitor", "-c", str(path), "--interval", "0.2", env=subprocess_env())
        try:
            listener.wait_for_lines(
                lambda lines: (
                    sum(x.startswith("delayed.monitor.run:") for x in lines) >= 2
                    and "delayed.job.count.default.interactive:1|g" in lines
                )
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_bad_settings_exit_2(db: Any, tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "bad.toml",
        {"delayed": {"database_url": db.url, "priority_alerts": {"urgent": {"age": 5}}}},
    )
    result = run_delayed("monitor", "-c", str(path), "--once", env=subprocess_env())
    assert result.returncode == 2
    assert "priority_alerts" in result.stderr and "urgent" in result.stderr
    result = run_delayed(
        "monitor", "--database-url", db.url, "--once", "--interval", "soon", env=subprocess_env()
    )
    assert result.returncode == 2 and "--interval" in result.stderr
    path = write_toml(
        tmp_path / "bad2.toml", {"delayed": {"database_url": db.url}, "monitor": {"interval": 0}}
    )
    result = run_delayed("monitor", "-c", str(path), "--once", env=subprocess_env())
    assert result.returncode == 2 and "interval" in result.stderr
