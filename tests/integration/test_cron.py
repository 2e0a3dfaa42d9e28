"""Recurring jobs against each real database: one enqueue per tick, pause, catch-up, pruning.

Schedulers here are in-process with a clock the test moves (`Scheduler(clock=...)`), so the
outage, the catch-up window and the ticks are exact; the database and its unique run row are
real. Every test uses its own entry keys, so tests never see each other's runs.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

import delayed
from delayed.config import get_config, set_config
from delayed.errors import ConfigError
from delayed.recurring import CronStore, Scheduler, api
from delayed.recurring.entries import CronEntry, _entry
from delayed.schema import cron_tables, jobs

T0 = datetime(2031, 5, 4, 12, 0, 0)  # a fixed "now" far from today: ticks never collide with real time
seen: list[tuple[str, datetime]] = []


class CronProbe(delayed.Job, name="tests.integration.cron.probe"):
    """Remembers the tick it serves: `self.record.run_at`."""

    def perform(self, label: str) -> None:
        assert self.record is not None
        seen.append((label, self.record.run_at))


def entry(every: str | None = "1m", schedule: str | None = None, **extra: Any) -> CronEntry:
    return _entry(
        key=f"t-{uuid.uuid4().hex[:10]}",
        schedule=schedule,
        every=every if schedule is None else None,
        job="tests.integration.cron.probe",
        args=extra.pop("args", ["x"]),
        kwargs={},
        queue=extra.pop("queue", "cron-tests"),
        priority=None,
        timezone=extra.pop("timezone", "UTC"),
        source="test",
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def job_ticks(db: Any, key_entry: CronEntry) -> Counter[datetime]:
    """run_at -> number of job rows for the entry's job (its queue is unique to the test run)."""
    runs, _ = cron_tables()
    with db.engine.connect() as conn:
        ids = [r for (r,) in conn.execute(sa.select(runs.c.job_id).where(runs.c.cron_key == key_entry.key))]
        rows = conn.execute(sa.select(jobs.c.run_at).where(jobs.c.id.in_(ids))).scalars().all() if ids else []
    return Counter(rows)


def run_rows(db: Any, key: str) -> list[tuple[datetime, str, int | None]]:
    runs, _ = cron_tables()
    with db.engine.connect() as conn:
        query = sa.select(runs.c.run_at, runs.c.kind, runs.c.job_id).where(runs.c.cron_key == key)
        return [tuple(r) for r in conn.execute(query.order_by(runs.c.run_at))]


def all_jobs_at(db: Any, when: datetime) -> int:
    with db.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.run_at == when)
        return conn.execute(query.where(jobs.c.name == "tests.integration.cron.probe")).scalar_one()


# ----------------------------------------------------------------------------- exactly once
def test_racing_schedulers_enqueue_each_tick_once(db: Any) -> None:
    """Eight threads, each its own store and connection, try the same 15 ticks at once."""
    beat = entry(every="1s")
    ticks = [T0 + timedelta(seconds=i) for i in range(15)]
    won: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def host() -> None:
        store = CronStore(get_config())
        try:
            barrier.wait()
            for tick in ticks:
                job_id = store.enqueue_tick(beat, tick)
                if job_id is not None:
                    won.append(job_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=host) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(won) == 15 and len(set(won)) == 15
    assert job_ticks(db, beat) == Counter({tick: 1 for tick in ticks})
    assert all(all_jobs_at(db, tick) == 1 for tick in ticks)
    rows = run_rows(db, beat.key)
    assert [r[0] for r in rows] == ticks and sorted(r[2] for r in rows) == sorted(won)


def test_a_duplicate_attempt_is_silent(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    beat = entry()
    store = CronStore(get_config())
    with caplog.at_level(logging.DEBUG):
        first = store.enqueue_tick(beat, T0)
        again = store.enqueue_tick(beat, T0)
    assert first is not None and again is None
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    assert job_ticks(db, beat) == Counter({T0: 1})


def test_the_job_knows_its_tick(db: Any) -> None:
    """The tick is the job's run_at, so `self.record.run_at` says which tick it serves."""
    beat = entry(args=["which"])
    tick = datetime(2020, 1, 1, 3, 0)  # in the past: ready at once
    CronStore(get_config()).enqueue_tick(beat, tick)
    seen.clear()
    worker = delayed.Worker(queues=["cron-tests"], config=get_config())
    assert worker.run(exit_on_complete=True, install_signals=False) == 0
    assert seen == [("which", tick)]


# ----------------------------------------------------------------------------- pause
def test_pause_holds_in_the_database_and_run_now_ignores_it(db: Any) -> None:
    beat = entry()
    store = CronStore(get_config())
    assert store.set_paused(beat.key, True) is True
    assert store.set_paused(beat.key, True) is False
    assert store.enqueue_tick(beat, T0) is None  # a scheduler's tick: skipped
    other = CronStore(get_config())  # another host sees the same
    assert other.enqueue_tick(beat, T0 + timedelta(minutes=1)) is None
    manual = store.enqueue_tick(beat, T0 + timedelta(seconds=7), "manual")
    assert manual is not None
    assert store.set_paused(beat.key, False) is True
    assert store.enqueue_tick(beat, T0 + timedelta(minutes=2)) is not None
    assert [(r[0], r[1]) for r in run_rows(db, beat.key)] == [
        (T0 + timedelta(seconds=7), "manual"),
        (T0 + timedelta(minutes=2), "schedule"),
    ]
    state = store.states([beat.key])[beat.key]
    assert not state.paused and state.paused_at is not None and state.resumed_at is not None


# ----------------------------------------------------------------------------- the scheduler
def test_the_scheduler_enqueues_each_tick_as_time_passes(db: Any) -> None:
    beat = entry(every="10s")
    clock = Clock(T0 - timedelta(seconds=1))
    scheduler = Scheduler(get_config(), [beat], clock=clock)
    scheduler.start()
    assert scheduler.run_due() == T0  # nothing due yet: wake at the next tick
    for step in range(1, 40):  # 39 s in steps of one second
        clock.now = T0 - timedelta(seconds=1) + timedelta(seconds=step)
        wake = scheduler.run_due()
        assert wake > clock.now
    expected = [T0 + timedelta(seconds=10 * i) for i in range(4)]  # 12:00:00 .. 12:00:30
    assert job_ticks(db, beat) == Counter({tick: 1 for tick in expected})
    assert [r[1] for r in run_rows(db, beat.key)] == ["schedule"] * 4


def test_two_schedulers_side_by_side_enqueue_each_tick_once(db: Any) -> None:
    beat = entry(every="1s")
    clock = Clock(T0 - timedelta(seconds=1))
    hosts = [Scheduler(get_config(), [beat], clock=clock) for _ in range(3)]
    for host in hosts:
        host.start()
    for step in range(20):
        clock.now = T0 + timedelta(milliseconds=500 * step)
        for host in hosts:
            host.run_due()
    expected = [T0 + timedelta(seconds=i) for i in range(10)]
    assert job_ticks(db, beat) == Counter({tick: 1 for tick in expected})
    assert sum(host.enqueued for host in hosts) == 10


def outage(db: Any, beat: CronEntry, down_for: timedelta, catch_up: float) -> tuple[Scheduler, Clock]:
    """A scheduler ran until T0 (its tick is recorded), then nothing ran for `down_for`."""
    before = Scheduler(get_config(), [beat], clock=Clock(T0 - timedelta(seconds=1)))
    before.start()
    before.clock = Clock(T0)  # type: ignore[assignment]
    before.run_due()
    assert job_ticks(db, beat) == Counter({T0: 1})
    set_config(get_config().with_section("scheduler", catch_up=catch_up))
    clock = Clock(T0 + down_for)
    return Scheduler(get_config(), [beat], clock=clock), clock


def test_after_an_outage_the_last_missed_tick_is_enqueued_once(
    db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    beat = entry(every="1m")
    after, clock = outage(db, beat, timedelta(minutes=10, seconds=20), catch_up=3600)
    second_host = Scheduler(get_config(), [beat], clock=clock)
    with caplog.at_level(logging.INFO, logger="delayed.cron"):
        after.start()
        second_host.start()
        after.run_due()
        second_host.run_due()
        clock.now += timedelta(seconds=30)  # no new tick yet: nothing more
        after.run_due()
        second_host.run_due()
    last_missed = T0 + timedelta(minutes=10)
    assert job_ticks(db, beat) == Counter({T0: 1, last_missed: 1})
    assert run_rows(db, beat.key)[-1][:2] == (last_missed, "catch_up")
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    # one line per scheduler that saw the outage, none per tick: 9 older ticks (12:01 .. 12:09)
    assert len(skipped) == 2
    assert all("skipped 9 missed tick(s) from 2031-05-04T12:01:00" in line for line in skipped)
    assert all("enqueued only the most recent one (2031-05-04T12:10:00)" in line for line in skipped)


def test_missed_ticks_older_than_catch_up_are_all_skipped(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    beat = entry(schedule="0 * * * *")  # hourly; the outage ends 40 min after the last missed tick
    after, clock = outage(db, beat, timedelta(hours=3, minutes=40), catch_up=1800)
    with caplog.at_level(logging.INFO, logger="delayed.cron"):
        after.start()
        next_wake = after.run_due()
    assert job_ticks(db, beat) == Counter({T0: 1})
    assert after.cursors[beat.key].pending == T0 + timedelta(hours=4)
    assert next_wake == clock.now + timedelta(seconds=60)  # wake_interval caps every sleep
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "skipped 3 missed tick(s) from 2031-05-04T13:00:00 to 2031-05-04T15:00:00" in line
    assert "more than catch_up (1800 s) ago" in line
    clock.now = T0 + timedelta(hours=4, seconds=1)  # the next tick comes as usual
    after.run_due()
    assert job_ticks(db, beat) == Counter({T0: 1, T0 + timedelta(hours=4): 1})


def test_ticks_while_paused_are_not_caught_up(db: Any) -> None:
    beat = entry(every="1m")
    after, _ = outage(db, beat, timedelta(minutes=5, seconds=10), catch_up=3600)
    store = CronStore(get_config())
    store.set_paused(beat.key, True, now=T0 + timedelta(seconds=30))
    store.set_paused(beat.key, False, now=T0 + timedelta(minutes=5, seconds=5))  # after 12:05's tick
    after.start()
    after.run_due()
    assert job_ticks(db, beat) == Counter({T0: 1})


def test_a_new_entry_does_not_enqueue_its_past_ticks(db: Any) -> None:
    beat = entry(schedule="0 3 * * *")
    scheduler = Scheduler(get_config(), [beat], clock=Clock(datetime(2031, 5, 4, 3, 20)))
    scheduler.start()
    assert scheduler.run_due() == datetime(2031, 5, 4, 3, 21)  # wakes after wake_interval, nothing due
    assert run_rows(db, beat.key) == []


def test_a_paused_entry_is_skipped_by_running_schedulers(db: Any) -> None:
    beat = entry(every="1s")
    clock = Clock(T0 - timedelta(milliseconds=100))
    scheduler = Scheduler(get_config(), [beat], clock=clock)
    scheduler.start()
    clock.now = T0
    scheduler.run_due()
    CronStore(get_config()).set_paused(beat.key, True)
    for second in range(1, 4):
        clock.now = T0 + timedelta(seconds=second)
        scheduler.run_due()
    CronStore(get_config()).set_paused(beat.key, False)
    clock.now = T0 + timedelta(seconds=4)
    scheduler.run_due()
    assert job_ticks(db, beat) == Counter({T0: 1, T0 + timedelta(seconds=4): 1})


# ----------------------------------------------------------------------------- pruning
def test_prune_deletes_old_runs_in_batches_and_keeps_each_newest(db: Any) -> None:
    busy, quiet = entry(every="1s"), entry(every="1h")
    store = CronStore(get_config())
    for i in range(25):
        store.enqueue_tick(busy, T0 + timedelta(seconds=i))
    store.enqueue_tick(quiet, T0 - timedelta(days=30))  # the newest of its key, however old
    store.enqueue_tick(busy, T0 + timedelta(seconds=30), "manual")
    deleted = store.prune(T0 + timedelta(days=1), batch=4)
    assert deleted >= 24  # other tests' old runs in this database go too
    assert [r[:2] for r in run_rows(db, busy.key)] == [
        (T0 + timedelta(seconds=24), "schedule"),
        (T0 + timedelta(seconds=30), "manual"),
    ]
    assert len(run_rows(db, quiet.key)) == 1
    assert store.prune(T0 + timedelta(days=1), batch=4) == 0  # what is left is each key's newest


# ----------------------------------------------------------------------------- the operator API
def test_status_run_now_pause_resume(db: Any, tmp_path: Any) -> None:
    key = f"api-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "delayed.toml"
    path.write_text(
        f'[delayed]\ndatabase_url = "{db.url}"\n\n[[cron]]\nkey = "{key}"\nschedule = "0 3 * * *"\n'
        'job = "tests.integration.cron.probe"\nargs = ["api"]\ntimezone = "Europe/Zurich"\n'
    )
    config = delayed.config.build_config(path, environ={})
    (status,) = [s for s in api.status(config) if s.key == key]
    assert status.last_run is None and not status.paused and status.next_tick is not None
    job_id, run_at = api.run_now(config, key)
    (status,) = [s for s in api.status(config) if s.key == key]
    assert (
        status.last_run is not None and status.last_run.job_id == job_id and status.last_run.kind == "manual"
    )
    assert status.last_job_state == "waiting"
    db.update(job_id, failed_at=run_at, attempts=25)
    assert [s.last_job_state for s in api.status(config) if s.key == key] == ["failed"]
    with db.engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.id == job_id))
    (status,) = [s for s in api.status(config) if s.key == key]
    assert status.last_job_state == "finished"
    document = status.as_dict()
    assert document["last_job_id"] == job_id and document["timezone"] == "Europe/Zurich"
    assert api.pause(config, key) is True
    (status,) = [s for s in api.status(config) if s.key == key]
    assert status.paused and status.next_tick is None
    assert api.resume(config, key) is True and api.resume(config, key) is False
    with pytest.raises(ConfigError, match="no cron entry has the key 'nope'"):
        api.pause(config, "nope")
