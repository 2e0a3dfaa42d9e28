"""Unique jobs (issue 13) on every database: insert-or-skip, never check-then-insert."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import delayed
from delayed import events
from delayed.timeutil import utcnow
from delayed.worker import Worker
from tests.jobs.unique_jobs import ByAccount, FailsHolding, FailsUnique, Hourly, PerQueue, SyncAccount

THREADS = 8
PER_THREAD = 100


def _race(target: Callable[[], Any]) -> list[Any]:
    """Run `target` PER_THREAD times on each of THREADS threads released at once."""
    start = threading.Barrier(THREADS)
    results: list[Any] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        start.wait()
        for _ in range(PER_THREAD):
            try:
                value = target()
            except BaseException as exc:  # reported below, with the others
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    return results


def _keyed_rows(db: Any) -> list[dict[str, Any]]:
    return [row for row in db.rows() if row["unique_key"] is not None]


def test_duplicate_returns_the_existing_id(db) -> None:
    first = SyncAccount.perform_later(42)
    assert SyncAccount.perform_later(42) == first
    other = SyncAccount.perform_later(43)
    assert other != first
    assert SyncAccount.perform_later(42, note="x") not in (first, other)  # kwargs are arguments too
    assert db.count() == 3
    key = db.row(first)["unique_key"]
    assert key is not None and len(key) == 64


def test_explicit_key_and_by_args_names(db) -> None:
    a = SyncAccount.set(unique_key="acct-42").perform_later(1)
    assert SyncAccount.set(unique_key="acct-42").perform_later(2) == a
    assert db.row(a)["unique_key"] == "acct-42"
    b = ByAccount.perform_later(7, note="first")
    assert ByAccount.perform_later(account=7, note="second") == b  # note is not part of the key
    assert ByAccount.perform_later(8) != b


def test_by_queue_and_period(db) -> None:
    a = PerQueue.set(queue="q1").perform_later()
    assert PerQueue.set(queue="q1").perform_later() == a
    assert PerQueue.set(queue="q2").perform_later() != a
    top = utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=5)
    h = Hourly.set(wait_until=top + timedelta(minutes=1)).perform_later()
    assert Hourly.set(wait_until=top + timedelta(minutes=59)).perform_later() == h
    assert Hourly.set(wait_until=top + timedelta(hours=1)).perform_later() != h


def test_enqueue_many_reports_duplicates_and_the_event_says_so(db) -> None:
    existing = SyncAccount.perform_later(1)
    seen: list[dict[str, Any]] = []
    unsubscribe = events.subscribe("delayed.job.enqueue", lambda event: seen.append(dict(event.payload)))
    try:
        result = delayed.enqueue_many(
            [
                SyncAccount.build(1),
                SyncAccount.build(2),
                SyncAccount.build(2),
                ByAccount.build(3),
                PerQueue.build(),
            ]
        )
    finally:
        unsubscribe()
    assert isinstance(result, list) and len(result) == 5
    assert result[0] == existing and result[1] == result[2]
    assert result.duplicates == [True, False, True, False, False]
    assert sorted(result.inserted) == sorted({result[1], result[3], result[4]})
    assert seen[-1]["duplicate"] is True and seen[-1]["duplicates"] == result.duplicates
    plain = delayed.enqueue_many([SyncAccount.build(9)])
    assert plain.duplicates == [False]


def _drain() -> None:
    Worker(sleep_delay=0.05).work_off(100)


def test_threads_race_leaves_one_row_then_the_key_is_free_again(db) -> None:
    ids = _race(lambda: SyncAccount.perform_later(42))
    assert len(set(ids)) == 1
    assert len(_keyed_rows(db)) == 1
    _drain()
    assert db.count() == 0
    assert delayed.enqueue_many([SyncAccount.build(42)]).duplicates == [False]  # SQLite may reuse the id
    assert db.count() == 1


def test_threads_race_in_enqueue_many(db) -> None:
    results = _race(lambda: delayed.enqueue_many([SyncAccount.build(5), SyncAccount.build(5)]))
    assert len({r[0] for r in results}) == 1
    assert all(r.duplicates[1] for r in results)
    assert sum(not r.duplicates[0] for r in results) == 1
    assert len(_keyed_rows(db)) == 1
    _drain()
    assert not delayed.enqueue_many([SyncAccount.build(5)]).duplicates[0]


def test_threads_race_inside_callers_transactions(db) -> None:
    def enqueue() -> int:
        with db.engine.begin() as conn:
            return SyncAccount.set(using=conn).perform_later(6)

    ids = _race(enqueue)
    assert len(set(ids)) == 1
    assert len(_keyed_rows(db)) == 1
    _drain()
    with db.engine.begin() as conn:
        fresh = delayed.enqueue_many([SyncAccount.build(6)], using=conn)
    assert fresh.duplicates == [False] and db.count() == 1


def test_rolled_back_enqueue_frees_nothing_and_holds_nothing(db) -> None:
    with db.engine.connect() as conn:
        conn.begin()
        SyncAccount.set(using=conn).perform_later(8)
        conn.rollback()
    assert db.count() == 0
    SyncAccount.perform_later(8)
    assert db.count() == 1


def test_failure_frees_the_key_unless_the_class_holds_it(db) -> None:
    failed = FailsUnique.perform_later(1)
    held = FailsHolding.perform_later(1)
    _drain()
    assert db.row(failed)["failed_at"] is not None and db.row(failed)["unique_key"] is None
    assert db.row(held)["failed_at"] is not None and db.row(held)["unique_key"] is not None
    assert delayed.enqueue_many([FailsUnique.build(1)]).duplicates == [False]
    assert FailsHolding.perform_later(1) == held


def test_psycopg_connection(pg) -> None:
    conninfo = sa.make_url(pg.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        first = SyncAccount.set(using=conn).perform_later(11)
        ids = delayed.enqueue_many([SyncAccount.build(11), SyncAccount.build(12)], using=conn)
    assert ids[0] == first and ids.duplicates == [True, False]
    assert pg.count() == 2


def test_ddl_of_the_migration_step() -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    for dialect in (postgresql.dialect(), mysql.dialect(), sqlite.dialect()):
        [step] = [s for s in delayed.schema.STEPS if s.version == 4]
        text = "\n".join(step.statements(dialect, delayed.schema.TableNames.for_jobs()))
        assert "ADD COLUMN unique_key" in text and "CREATE UNIQUE INDEX uq_delayed_jobs_unique_key" in text
        assert "CREATE TABLE delayed_job_leases" in text


def test_bad_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unique_key"):
        SyncAccount.set(unique_key=5)
    with pytest.raises(TypeError, match="does not take"):

        class Wrong(delayed.Job, name="tests.unique.wrong"):
            unique = delayed.Unique(by_args=["nope"])

            def perform(self, account: int) -> None: ...
