"""Async jobs on every database: one event loop per worker, its own cap, sync jobs beside it."""

from __future__ import annotations

import re
import threading

import delayed
from delayed import events
from delayed.executor import ASYNC_CANCEL_GRACE
from delayed.worker import Worker
from tests.helpers import wait_for
from tests.jobs import async_jobs
from tests.jobs.async_jobs import Hangs, Hooked, Nap, Sleeps, WaitsForAsync, WaitsForSync, decorated


def test_a_thousand_async_jobs_run_concurrently_on_one_loop_within_the_cap(db) -> None:
    async_jobs.reset()
    delayed.enqueue_many([Nap.build(0.05) for _ in range(1000)])
    worker = Worker(max_claims=2, max_async_claims=100, sleep_delay=0.05)
    assert worker.work_off(1000) == (1000, 0)
    assert async_jobs.state["done"] == 1000 and db.count() == 0
    assert 10 < async_jobs.state["peak"] <= 100, "many at once on one loop, never past the cap"


def test_sync_and_async_jobs_run_side_by_side_in_one_worker(db) -> None:
    """Each kind waits (up to 10 s) for the other to have started: only true with two lanes."""
    async_jobs.reset()
    delayed.enqueue_many([WaitsForAsync.build() for _ in range(3)] + [WaitsForSync.build() for _ in range(3)])
    assert Worker(max_claims=3, max_async_claims=3, sleep_delay=0.05).work_off(6) == (6, 0)
    assert sorted(async_jobs.log) == ["async saw sync: True"] * 3 + ["sync saw async: True"] * 3


def test_max_run_time_cancels_an_async_job_on_the_loop_and_counts_a_failed_attempt(db) -> None:
    async_jobs.reset()
    job_id = Hangs.perform_later()
    worker = Worker(max_async_claims=5)
    reported: list[float] = []
    worker.executor.on_job_start = lambda record, max_run_time: reported.append(max_run_time)
    assert worker.work_off(1) == (0, 1)
    assert async_jobs.log == ["cancelled"]
    row = db.row(job_id)
    assert row is not None and row["attempts"] == 1 and row["failed_at"] is None and row["locked_by"] is None
    assert row["last_error"].startswith(
        "MaxRunTimeExceeded: max_run_time of 0.3 s exceeded (cancelled on the event loop)"
    )
    assert reported == [0.3 + ASYNC_CANCEL_GRACE], "a supervisor's kill comes only after the loop's cancel"


def test_async_callbacks_run_awaited_and_the_run_event_is_emitted(db) -> None:
    async_jobs.reset()
    received: list[str] = []
    unsubscribe = events.subscribe(
        re.compile(r"delayed\.job\.run"), lambda e: received.append(e.payload["job_name"])
    )
    try:
        Hooked.perform_later(1)
        decorated.perform_later(7)
        assert Worker(max_async_claims=5).work_off(2) == (2, 0)
    finally:
        unsubscribe()
    assert async_jobs.log[:5] == ["before (1,)", "around>", "perform", "<around", "after"]
    assert "decorated 7" in async_jobs.log
    assert sorted(received) == ["tests.async.decorated", "tests.async.hooked"]


def test_perform_now_runs_an_async_job_and_its_callbacks() -> None:
    async_jobs.reset()
    assert Hooked.perform_now(41) == 42
    assert async_jobs.log == ["before (41,)", "around>", "perform", "<around", "after"]


def test_a_forced_stop_cancels_running_async_jobs_and_releases_their_rows(db) -> None:
    async_jobs.reset()
    ids = [Sleeps.perform_later() for _ in range(3)]
    worker = Worker(max_async_claims=5, sleep_delay=0.05)
    unsubscribe = events.subscribe("delayed.job.run", lambda e: None)  # perform inside the run event
    statuses: list[int] = []
    runner = threading.Thread(target=lambda: statuses.append(worker.run(install_signals=False)))
    try:
        runner.start()
        assert wait_for(lambda: len(worker.running_jobs()) == 3, timeout=10)
        worker.stop()
        worker.stop()  # the second stop forces: running jobs are released
        runner.join(10)
    finally:
        unsubscribe()
    assert statuses == [1] and not runner.is_alive()
    assert async_jobs.log == ["cancelled"] * 3, "cancelled on the loop, not left running"
    for job_id in ids:
        row = db.row(job_id)
        assert row is not None and row["locked_by"] is None and row["attempts"] == 0
