"""Recurring jobs with real processes on each database: supervisors, `delayed work`, `delayed cron`.

- three `delayed supervise` with the same `[[cron]]` entry (`every = "1s"`) for 15 s: every
  tick of the window is enqueued exactly once (job rows counted per run_at), no gap;
- `delayed cron pause` stops the ticks of running supervisors, `resume` starts them again,
  `delayed cron run` enqueues one now, `delayed cron list --json` shows it all;
- a supervisor stopped and started again catches up the last missed tick once, skips the
  older ones and says so in one line;
- `delayed work` with `[scheduler] in_work` runs the scheduler and the job sees its tick;
- a bad entry is exit 2 naming it, for `delayed cron`, `delayed supervise` and `--check`.

Supervisors run with `workers = 0` where the test counts job rows, so nothing deletes them.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from delayed.schema import cron_tables, jobs
from delayed.timeutil import utcnow
from tests.helpers import (
    TESTS,
    kill_session,
    run_delayed,
    start_delayed,
    subprocess_env,
    wait_for,
    write_toml,
)
from tests.jobs.cron_jobs import SEEN_DDL

pytestmark = pytest.mark.slow

JOB = "tests.cron.tick"


class Supervisor:
    """One `delayed supervise` in its own session (teardown kills the whole session)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        out = open(log, "a")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "delayed.cli", "supervise", "-c", str(config)],
            env=subprocess_env(None),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=str(TESTS),
            start_new_session=True,
        )
        out.close()

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def scheduling(self) -> bool:
        return "cron scheduler started" in self.log()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        kill_session(self.proc.pid)  # the children lead their own process groups
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    made: list[Supervisor] = []
    yield made
    for sup in made:
        sup.kill()


def write_config(tmp_path: Path, db: Any, *entries: dict[str, Any], **sections: Any) -> Path:
    body: dict[str, Any] = {
        "delayed": {"database_url": db.url, "require": ["cron_jobs"], "sleep_delay": 0.2},
        "supervisor": {"workers": 0},
        **sections,
    }
    if entries:
        body["cron"] = list(entries)
    return write_toml(tmp_path / f"delayed-{uuid.uuid4().hex[:6]}.toml", body)


def key() -> str:
    return f"acc-{uuid.uuid4().hex[:10]}"


def ticks_of(db: Any, cron_key: str) -> Counter[datetime]:
    """run_at -> job rows, for the jobs the entry's run rows point at."""
    runs, _ = cron_tables()
    with db.engine.connect() as conn:
        ids = list(conn.execute(sa.select(runs.c.job_id).where(runs.c.cron_key == cron_key)).scalars())
        if not ids:
            return Counter()
        return Counter(conn.execute(sa.select(jobs.c.run_at).where(jobs.c.id.in_(ids))).scalars())


def jobs_per_run_at(db: Any, queue: str) -> Counter[datetime]:
    """run_at -> job rows in `queue` (a queue only this test uses): duplicates would show here."""
    with db.engine.connect() as conn:
        query = sa.select(jobs.c.run_at).where(jobs.c.queue == queue, jobs.c.name == JOB)
        return Counter(conn.execute(query).scalars())


def whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


# ----------------------------------------------------------------------------- exactly once
def test_three_supervisors_enqueue_every_tick_once(db: Any, tmp_path: Path, supervisors: list) -> None:
    queue = key()
    config = write_config(tmp_path, db, {"key": queue, "every": "1s", "job": JOB, "queue": queue})
    for number in range(3):
        supervisors.append(Supervisor(config, tmp_path / f"sup{number}.log"))
    wait_for(lambda: all(sup.scheduling() for sup in supervisors), timeout=120)
    start = whole_second(utcnow()) + timedelta(seconds=2)  # the window: 15 ticks all three saw
    window = [start + timedelta(seconds=i) for i in range(15)]
    wait_for(lambda: utcnow() > window[-1] + timedelta(seconds=2), timeout=60, interval=0.2)
    assert all(sup.proc.poll() is None for sup in supervisors), supervisors[0].log()[-3000:]
    for sup in supervisors:
        assert sup.stop() == 0
    per_tick = jobs_per_run_at(db, queue)
    assert {tick: per_tick[tick] for tick in window} == {tick: 1 for tick in window}, per_tick
    assert max(per_tick.values()) == 1  # outside the window too: never twice
    assert ticks_of(db, queue) == per_tick  # each job is the one its run row names
    logs = "".join(sup.log() for sup in supervisors)
    assert "Traceback" not in logs and "ERROR" not in logs and "Duplicate" not in logs


# ----------------------------------------------------------------------------- the CLI
def test_pause_resume_run_and_list_through_the_cli(db: Any, tmp_path: Path, supervisors: list) -> None:
    beat, nightly = key(), key()
    config = write_config(
        tmp_path,
        db,
        {"key": beat, "every": "1s", "job": JOB, "queue": beat},
        {"key": nightly, "schedule": "0 3 * * *", "timezone": "Europe/Zurich", "job": JOB, "queue": nightly},
    )
    env = subprocess_env(None)
    sup = Supervisor(config, tmp_path / "sup.log")
    supervisors.append(sup)
    wait_for(lambda: len(jobs_per_run_at(db, beat)) >= 2, timeout=120)

    paused = run_delayed("cron", "pause", beat, "-c", str(config), env=env)
    assert paused.returncode == 0 and f"cron {beat}: paused" in paused.stdout, paused
    paused_at = utcnow()
    time.sleep(4)  # four ticks the running supervisor must not enqueue
    during = [t for t in jobs_per_run_at(db, beat) if t > paused_at + timedelta(seconds=1)]
    assert during == []
    listed = run_delayed("cron", "list", "--json", "-c", str(config), env=env)
    assert listed.returncode == 0, listed
    by_key = {entry["key"]: entry for entry in json.loads(listed.stdout)}
    assert by_key[beat]["paused"] is True and by_key[beat]["next_tick"] is None
    assert by_key[beat]["schedule"] == "every 1s" and by_key[beat]["last_job_state"] == "waiting"
    assert by_key[nightly]["schedule"] == "0 3 * * * (Europe/Zurich)" and by_key[nightly]["last_tick"] is None

    ran = run_delayed("cron", "run", nightly, "-c", str(config), env=env)
    assert ran.returncode == 0, ran
    job_id = int(re.search(r"enqueued job (\d+)", ran.stdout).group(1))  # type: ignore[union-attr]
    row = db.row(job_id)
    assert (
        row is not None and row["queue"] == nightly and abs(row["run_at"] - utcnow()) < timedelta(seconds=30)
    )
    again = json.loads(run_delayed("cron", "list", "--json", "-c", str(config), env=env).stdout)
    (after_run,) = [entry for entry in again if entry["key"] == nightly]
    assert after_run["last_job_id"] == job_id and after_run["last_kind"] == "manual"

    resumed = run_delayed("cron", "resume", beat, "-c", str(config), env=env)
    assert resumed.returncode == 0 and f"cron {beat}: resumed" in resumed.stdout, resumed
    resumed_at = utcnow()
    wait_for(lambda: any(t > resumed_at for t in jobs_per_run_at(db, beat)), timeout=30)
    text = run_delayed("cron", "list", "-c", str(config), env=env)
    assert text.returncode == 0 and beat in text.stdout and "every 1s" in text.stdout, text
    assert sup.stop() == 0
    assert max(jobs_per_run_at(db, beat).values()) == 1


def test_bad_entries_are_exit_2_naming_the_entry(db: Any, tmp_path: Path) -> None:
    env = subprocess_env(None)
    cases = [
        ({"key": "bad-expr", "schedule": "0 3 * *", "job": JOB}, "has 4 field(s)"),
        (
            {"key": "bad-zone", "schedule": "0 3 * * *", "timezone": "Nowhere/Land", "job": JOB},
            "unknown time zone",
        ),
        (
            {"key": "bad-job", "schedule": "0 3 * * *", "job": "reports.Nope"},
            "'reports.Nope' is not a registered",
        ),
    ]
    for entry, message in cases:
        config = write_config(tmp_path, db, entry)
        for args in (("cron", "list"), ("supervise", "--check")):
            result = run_delayed(*args, "-c", str(config), env=env)
            assert result.returncode == 2, (args, result)
            assert message in result.stderr and entry["key"] in result.stderr, (args, result.stderr)
    good = write_config(tmp_path, db, {"key": "fine", "every": "1h", "job": JOB})
    unknown = run_delayed("cron", "pause", "nope", "-c", str(good), env=env)
    assert unknown.returncode == 2 and "no cron entry has the key 'nope'" in unknown.stderr
    sup = run_delayed("supervise", "-c", str(write_config(tmp_path, db, cases[0][0])), env=env, timeout=60)
    assert sup.returncode == 2 and "bad-expr" in sup.stderr


# ----------------------------------------------------------------------------- catch-up
def test_a_restarted_supervisor_catches_up_the_last_missed_tick(
    db: Any, tmp_path: Path, supervisors: list
) -> None:
    beat = key()
    config = write_config(tmp_path, db, {"key": beat, "every": "2s", "job": JOB, "queue": beat})
    first = Supervisor(config, tmp_path / "first.log")
    supervisors.append(first)
    wait_for(lambda: len(jobs_per_run_at(db, beat)) >= 2, timeout=120)
    assert first.stop() == 0
    before = max(jobs_per_run_at(db, beat))
    time.sleep(9)  # at least three ticks go by with no scheduler
    second = Supervisor(config, tmp_path / "second.log")
    supervisors.append(second)
    wait_for(lambda: "enqueued only the most recent one" in second.log(), timeout=120)
    line = next(line for line in second.log().splitlines() if "skipped" in line)
    found = re.search(r"skipped (\d+) missed tick\(s\) from (\S+) to before (\S+); .* \((\S+)\)", line)
    assert found is not None, line
    skipped, first_missed, _, caught = int(found[1]), found[2], found[3], found[4]
    caught_up = datetime.fromisoformat(caught)
    assert datetime.fromisoformat(first_missed) == before + timedelta(seconds=2)
    assert skipped == (caught_up - before) // timedelta(seconds=2) - 1 and skipped >= 3
    wait_for(lambda: len([t for t in jobs_per_run_at(db, beat) if t > caught_up]) >= 1, timeout=60)
    assert second.stop() == 0
    ticks = jobs_per_run_at(db, beat)
    assert max(ticks.values()) == 1
    assert [t for t in ticks if before < t < caught_up] == [], "the older missed ticks are skipped"
    assert ticks[caught_up] == 1
    runs, _ = cron_tables()
    with db.engine.connect() as conn:
        kind = conn.execute(
            sa.select(runs.c.kind).where(runs.c.cron_key == beat, runs.c.run_at == caught_up)
        ).scalar_one()
    assert kind == "catch_up"
    assert second.log().count("skipped") == 1


# ----------------------------------------------------------------------------- delayed work
def test_delayed_work_runs_the_scheduler_when_asked_and_the_job_sees_its_tick(
    db: Any, tmp_path: Path
) -> None:
    label = key()
    with db.engine.begin() as conn:
        conn.exec_driver_sql(SEEN_DDL)
    config = write_config(
        tmp_path,
        db,
        {"key": label, "every": "1s", "job": "tests.cron.see_tick", "args": [label], "queue": label},
        scheduler={"in_work": True},
    )
    env = subprocess_env(None)
    worker = start_delayed("work", "-c", str(config), "--queue", label, env=env, log=tmp_path / "work.log")
    try:

        def seen() -> list[str]:
            with db.engine.connect() as conn:
                query = sa.text("SELECT run_at FROM cron_seen WHERE label = :label")
                return [row for (row,) in conn.execute(query, {"label": label})]

        wait_for(lambda: len(seen()) >= 3, timeout=120)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    for text in seen():
        tick = datetime.fromisoformat(text)
        assert tick.microsecond == 0  # whole seconds: the ticks of every = "1s", not "now"
    assert len(set(seen())) == len(seen())
    assert "cron scheduler started" in (tmp_path / "work.log").read_text()


def test_an_unreachable_database_is_exit_1_with_the_url_redacted(tmp_path: Path) -> None:
    config = tmp_path / "d.toml"
    config.write_text(
        '[delayed]\ndatabase_url = "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"\n'
        'require = ["cron_jobs"]\n'
        f'[[cron]]\nkey = "k"\nevery = "1h"\njob = "{JOB}"\n'
    )
    for args in (("list",), ("pause", "k"), ("run", "k")):
        result = run_delayed("cron", *args, "-c", str(config), env=subprocess_env(None))
        assert result.returncode == 1, (args, result.stderr)
        assert "postgresql://postgres:***@127.0.0.1:1/nowhere" in result.stderr
        assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr
