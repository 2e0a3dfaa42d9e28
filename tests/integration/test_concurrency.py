"""Concurrency limits (issue 13) on every database: leases granted in the claim's transaction."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

import delayed
from delayed.backends import ClaimFilter, backend_for
from delayed.cli import main
from delayed.monitor import Monitor
from delayed.record import Outcome
from delayed.schema import leases_table
from delayed.timeutil import utcnow
from tests.jobs.unique_jobs import Keyless, Limited

PATH = "/dev/null"


def _backend(db: Any) -> Any:
    return backend_for(db.engine, db.table)


def _claim(db: Any, worker: str, limit: int = 10, lock_timeout: float = 60) -> list[Any]:
    backend = _backend(db)
    conn = backend.connect()
    try:
        return backend.claim(conn, worker, limit, ClaimFilter(), lock_timeout, 5)
    finally:
        conn.close()


def _leases(db: Any) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(leases_table())).scalar_one()


def test_key_and_limit_are_stored(db) -> None:
    a = Limited.perform_later(7, 1, PATH)
    b = Limited.set(concurrency_key="other", concurrency_limit=5).perform_later(7, 2, PATH)
    c = Keyless.set(concurrency_key="k-{0}").perform_later(3, PATH)
    assert (db.row(a)["concurrency_key"], db.row(a)["concurrency_limit"]) == ("customer:7", 2)
    assert (db.row(b)["concurrency_key"], db.row(b)["concurrency_limit"]) == ("other", 5)
    assert (db.row(c)["concurrency_key"], db.row(c)["concurrency_limit"]) == ("k-3", 1)


def test_keys_at_their_limit_are_skipped_and_keyless_rows_are_not_held_up(db) -> None:
    keyed = [Limited.perform_later(1, n, PATH) for n in range(5)]
    plain = [Keyless.perform_later(n, PATH) for n in range(3)]
    first = _claim(db, "w1")
    assert sorted(r.id for r in first) == sorted(keyed[:2] + plain)
    assert _leases(db) == 2
    assert _claim(db, "w2") == []  # the key is at its limit: nothing claimed and given back
    assert [db.row(i)["locked_by"] for i in keyed[2:]] == [None, None, None]
    # An outcome frees its slot (and deletes the lease in the same transaction).
    backend = _backend(db)
    with backend.write_connection() as conn:
        backend.complete(conn, [Outcome("delete", keyed[0], "w1", leased=True)])
    assert _leases(db) == 1
    assert [r.id for r in _claim(db, "w2")] == [keyed[2]]
    assert _claim(db, "w3") == []


def test_release_and_lock_timeout_free_slots(db) -> None:
    keyed = [Limited.perform_later(1, n, PATH) for n in range(6)]
    assert len(_claim(db, "w1")) == 2
    backend = _backend(db)
    with backend.write_connection() as conn:
        assert backend.release(conn, "w1") == 2  # a reclaim / rescue path unlocks the rows
    assert _leases(db) == 0
    second = _claim(db, "w2")
    assert len(second) == 2
    # w2's locks expire: its leases are dead, so the slots are free again (the rows too).
    for record in second:
        db.update(record.id, locked_at=utcnow() - timedelta(hours=1))
    third = _claim(db, "w3", lock_timeout=60)
    assert len(third) == 2
    assert {r.id for r in third} <= set(keyed)


def test_a_lease_left_behind_by_an_unlocked_row_does_not_count(db) -> None:
    keyed = [Limited.perform_later(1, n, PATH) for n in range(3)]
    assert len(_claim(db, "w1")) == 2
    for job_id in keyed[:2]:  # unlocked by something that did not delete the leases
        db.update(job_id, locked_at=None, locked_by=None)
    assert _leases(db) == 2
    assert len(_claim(db, "w2")) == 2
    assert _leases(db) == 2  # the dead ones were replaced


def test_concurrent_claims_never_exceed_the_limit(db) -> None:
    for n in range(30):
        Limited.perform_later(1, n, PATH)
    for _ in range(20):
        Keyless.perform_later(0, PATH)
    start = threading.Barrier(6)
    got: dict[str, list[Any]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        start.wait()
        try:
            got[name] = _claim(db, name, limit=4)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    claimed = [r for rows in got.values() for r in rows]
    keyed = [r for r in claimed if r.concurrency_key is not None]
    assert len(keyed) == 2
    assert len(claimed) == len({r.id for r in claimed})
    locked = [row for row in db.rows() if row["locked_by"] is not None]
    assert len(locked) == len(claimed)  # rows that lost the race were given back


def test_release_leases_is_harmless_twice(db) -> None:
    Limited.perform_later(1, 0, PATH)
    [record] = _claim(db, "w1")
    backend = _backend(db)
    with backend.write_connection() as conn, conn.begin():
        assert backend.release_leases(conn, [record.id]) == 1
        assert backend.release_leases(conn, [record.id]) == 0
    assert delayed.Job.concurrency_limit is None


def test_monitor_reports_keys_at_their_limit(db) -> None:
    for n in range(5):
        Limited.perform_later(1, n, PATH)  # limit 2: 3 wait once 2 run
    for n in range(2):
        Limited.perform_later(2, n, PATH)  # limit 2, both run: not at the limit with waiters
    Limited.perform_later(3, 0, PATH)  # not running at all
    assert len(_claim(db, "w1", limit=4)) == 4
    monitor = Monitor(delayed.get_config())
    monitor.run_once()
    assert [(k.key, k.waiting, k.limit) for k in monitor.limited] == [("customer:1", 3, 2)]


def test_jobs_show_prints_the_keys(db) -> None:
    job_id = Limited.set(unique_key="only-one").perform_later(4, 0, PATH)
    result = CliRunner().invoke(main, ["jobs", "show", str(job_id), "--database-url", db.url])
    assert result.exit_code == 0, result.output
    assert "unique_key:" in result.output and "only-one" in result.output
    assert "customer:4 (limit 2)" in result.output
