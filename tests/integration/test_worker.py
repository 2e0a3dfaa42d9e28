"""The worker on every database: pickup order and filters, outcomes, retries, failures, locks."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest

import delayed
from delayed.backends import ClaimFilter, backend_for
from delayed.timeutil import utcnow
from delayed.worker import Worker
from tests.helpers import GatedBackend, wait_for
from tests.jobs import sample_jobs
from tests.jobs.sample_jobs import AlwaysFails, FailsDefault, Noop, QuickRetry, Remember, Sleep, add


@pytest.fixture(autouse=True)
def _clear_performed():
    sample_jobs.performed.clear()
    yield
    sample_jobs.performed.clear()


def as_dt(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def remembered() -> list[object]:
    return [value[0] for kind, value in sample_jobs.performed if kind == "remember"]


def test_enqueue_run_delete(db) -> None:
    job_id = Remember.perform_later("one")
    assert Worker().work_off() == (1, 0)
    assert db.row(job_id) is None
    assert db.count() == 0
    assert remembered() == ["one"]


def test_priority_then_run_at_then_id_order(db) -> None:
    now = utcnow()
    a = Remember.set(priority=5).perform_later("p5")
    b = Remember.set(priority=1).perform_later("p1-late")
    c = Remember.set(priority=1).perform_later("p1-early")
    d = Remember.set(priority=1).perform_later("p1-early-second")
    db.update(b, run_at=now - timedelta(seconds=10))
    db.update(c, run_at=now - timedelta(seconds=20))
    db.update(d, run_at=now - timedelta(seconds=20))  # same run_at as c: id decides
    e = Remember.set(priority="reporting").perform_later("p30")
    assert Worker(max_claims=1).work_off(10) == (5, 0)
    assert remembered() == ["p1-early", "p1-early-second", "p1-late", "p5", "p30"]
    assert all(db.row(i) is None for i in (a, b, c, d, e))


def test_queue_filter(db) -> None:
    Remember.set(queue="mail").perform_later("mail")
    Remember.set(queue="video").perform_later("video")
    Remember.set(queue="other").perform_later("other")
    assert Worker(queues=["mail", "video"]).work_off() == (2, 0)
    assert sorted(remembered()) == ["mail", "video"]
    assert [r["queue"] for r in db.rows()] == ["other"]
    assert Worker().work_off() == (1, 0)  # empty queues = every queue


def test_null_queue_is_worked_by_unfiltered_worker(db) -> None:
    job_id = Remember.perform_later("null queue")
    db.update(job_id, queue=None)
    assert Worker(queues=["default"]).work_off() == (0, 0)
    assert Worker().work_off() == (1, 0)


def test_priority_range_is_inclusive(db) -> None:
    for p in (0, 9, 10, 19, 20, 35):
        Remember.set(priority=p).perform_later(p)
    assert Worker(min_priority=9, max_priority=19).work_off() == (3, 0)
    assert sorted(remembered()) == [9, 10, 19]
    assert Worker(min_priority="eventual").work_off() == (2, 0)
    assert sorted(remembered()) == [9, 10, 19, 20, 35]
    assert Worker(max_priority="interactive").work_off() == (1, 0)


def test_future_jobs_are_not_picked(db) -> None:
    future = Remember.set(wait=3600).perform_later("later")
    Remember.perform_later("now")
    assert Worker().work_off() == (1, 0)
    assert remembered() == ["now"]
    assert db.row(future) is not None
    db.update(future, run_at=utcnow() - timedelta(seconds=1))
    assert Worker().work_off() == (1, 0)


def test_backoff_schedule(db) -> None:
    job_id = AlwaysFails.set(queue="x").perform_later("first")
    started = utcnow()
    assert Worker().work_off() == (0, 1)
    row = db.row(job_id)
    assert row["attempts"] == 1
    assert row["locked_at"] is None and row["locked_by"] is None and row["failed_at"] is None
    delay = (as_dt(row["run_at"]) - started).total_seconds()
    assert 6 - 1 <= delay <= 6 + 5, delay  # 1**4 + 5
    assert row["last_error"].startswith("RuntimeError: first\n")
    assert "Traceback" in row["last_error"]

    db.update(job_id, run_at=utcnow() - timedelta(seconds=1))
    started = utcnow()
    assert Worker().work_off() == (0, 1)
    row = db.row(job_id)
    assert row["attempts"] == 2
    delay = (as_dt(row["run_at"]) - started).total_seconds()
    assert 21 - 1 <= delay <= 21 + 5, delay  # 2**4 + 5


def test_failure_kept_at_max_attempts(db) -> None:
    job_id = AlwaysFails.perform_later("always")
    failures = []
    errors = []
    unsubscribe_f = delayed.events.subscribe("delayed.job.failure", failures.append)
    unsubscribe_e = delayed.events.subscribe("delayed.job.error", errors.append)
    try:
        for _ in range(3):
            db.update(job_id, run_at=utcnow() - timedelta(seconds=1))
            assert Worker().work_off() == (0, 1)
    finally:
        unsubscribe_f()
        unsubscribe_e()
    row = db.row(job_id)
    assert row["attempts"] == 3  # AlwaysFails.max_attempts
    assert row["failed_at"] is not None
    assert row["last_error"].startswith("RuntimeError: always")
    assert len(errors) == 3 and len(failures) == 1
    assert failures[0].payload["job"].attempts == 3
    # A failed job is never picked up again.
    db.update(job_id, run_at=utcnow() - timedelta(seconds=1))
    assert Worker().work_off() == (0, 0)


def test_global_max_attempts_and_destroy_failed_jobs(db) -> None:
    delayed.configure(max_attempts=1)
    kept = FailsDefault.perform_later()
    assert Worker().work_off() == (0, 1)
    assert db.row(kept)["failed_at"] is not None
    delayed.configure(destroy_failed_jobs=True)
    gone = FailsDefault.perform_later()
    assert Worker().work_off() == (0, 1)
    assert db.row(gone) is None


def test_job_backoff_override_and_eventual_success(db) -> None:
    job_id = QuickRetry.perform_later(3)
    results = [Worker().work_off(1) for _ in range(3)]
    assert results == [(0, 1), (0, 1), (1, 0)]
    assert db.row(job_id) is None
    assert ("quick_retry", 3) in sample_jobs.performed


def test_stale_lock_is_picked_again_fresh_one_is_not(db) -> None:
    config = delayed.get_config()
    fresh = Remember.perform_later("fresh")
    stale = Remember.perform_later("stale")
    db.update(fresh, locked_at=utcnow() - timedelta(seconds=60), locked_by="host:elsewhere pid:1")
    db.update(
        stale,
        locked_at=utcnow() - timedelta(seconds=config.lock_timeout + 5),
        locked_by="host:elsewhere pid:2",
    )
    assert Worker().work_off() == (1, 0)
    assert remembered() == ["stale"]
    assert db.row(fresh)["locked_by"] == "host:elsewhere pid:1"


def test_lock_timeout_is_max_run_time_plus_30s() -> None:
    config = delayed.get_config().replace(max_run_time=60)
    assert config.lock_timeout == 90


def test_outcome_only_written_where_still_locked_by_us(db) -> None:
    """A worker whose lock was taken over changes nothing (design decision)."""
    job_id = Remember.perform_later("taken over")
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        claimed = backend.claim(conn, "worker-a", 1, ClaimFilter(), 60, 5)
    assert [r.id for r in claimed] == [job_id]
    db.update(job_id, locked_by="worker-b")
    with db.engine.connect() as conn:
        backend.complete(conn, [delayed.Outcome("delete", job_id, "worker-a")])
    assert db.row(job_id)["locked_by"] == "worker-b"
    with db.engine.connect() as conn:
        backend.complete(conn, [delayed.Outcome("delete", job_id, "worker-b")])
    assert db.row(job_id) is None


def test_claim_sets_lock_and_respects_limit(db) -> None:
    ids = delayed.enqueue_many([Remember.build(i) for i in range(7)])
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        first = backend.claim(conn, "host:h pid:1", 5, ClaimFilter(), 60, 5)
        second = backend.claim(conn, "host:h pid:2", 5, ClaimFilter(), 60, 5)
        third = backend.claim(conn, "host:h pid:3", 5, ClaimFilter(), 60, 5)
    assert [r.id for r in first] == ids[:5]
    assert [r.id for r in second] == ids[5:]
    assert third == []
    rows = {r["id"]: r for r in db.rows()}
    assert {rows[i]["locked_by"] for i in ids[:5]} == {"host:h pid:1"}
    assert all(rows[i]["locked_at"] is not None for i in ids)


def test_release_clears_only_that_workers_live_locks(db) -> None:
    ids = delayed.enqueue_many([Remember.build(i) for i in range(3)])
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        backend.claim(conn, "w1", 2, ClaimFilter(), 60, 5)
        backend.claim(conn, "w2", 2, ClaimFilter(), 60, 5)
    with db.engine.connect() as conn:
        assert [r.id for r in backend.locked_rows(conn, "w1")] == ids[:2]
        assert backend.release(conn, "w1") == 2
    assert [r["locked_by"] for r in db.rows()] == [None, None, "w2"]


def test_unknown_job_name_fails_at_once_and_worker_goes_on(db) -> None:
    bad = Noop.perform_later()
    db.update(bad, name="gone.Job", handler='{"job": "gone.Job", "args": [], "kwargs": {}}')
    good = Remember.perform_later("after")
    failures = []
    unsubscribe = delayed.events.subscribe("delayed.job.failure", failures.append)
    try:
        assert Worker().work_off() == (1, 1)
    finally:
        unsubscribe()
    row = db.row(bad)
    assert row["failed_at"] is not None
    assert row["attempts"] == 0
    assert "UnknownJobError" in row["last_error"] and "'gone.Job'" in row["last_error"]
    assert db.row(good) is None
    assert len(failures) == 1


@pytest.mark.parametrize(
    "handler,message",
    [
        ("--- !ruby/object:Foo", "not JSON"),
        ('["a list"]', 'no "job" name'),
        ('{"job": "tests.noop", "args": {"a": 1}}', "args must be a list"),
    ],
)
def test_undecodable_handler_fails_with_clear_error(db, handler: str, message: str) -> None:
    bad = Noop.perform_later()
    db.update(bad, handler=handler)
    assert Worker().work_off() == (0, 1)
    row = db.row(bad)
    assert row["failed_at"] is not None
    assert "HandlerError" in row["last_error"] and message in row["last_error"]


def test_events_run_error_reserve_and_raising_subscriber(db) -> None:
    seen: dict[str, list[delayed.events.Event]] = {}

    def record(event: delayed.events.Event) -> None:
        seen.setdefault(event.name, []).append(event)

    def explode(event: delayed.events.Event) -> None:
        raise RuntimeError("subscriber bug")

    import re

    unsubscribes = [
        delayed.events.subscribe(re.compile(r"^delayed\."), record),
        delayed.events.subscribe(re.compile(r"^delayed\."), explode),
    ]
    try:
        ok = Remember.perform_later("evented")
        AlwaysFails.perform_later()
        assert Worker().work_off() == (1, 1)
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()
    assert db.row(ok) is None  # the raising subscriber broke nothing
    run = seen["delayed.job.run"]
    assert {e.payload["job_name"] for e in run} == {"tests.remember", "tests.always_fails"}
    assert all(e.duration >= 0 for e in run)
    failed_run = next(e for e in run if e.payload["job_name"] == "tests.always_fails")
    assert isinstance(failed_run.error, RuntimeError)
    assert seen["delayed.job.error"][0].payload["job"].attempts == 1
    assert seen["delayed.job.enqueue"]
    reserve = seen["delayed.worker.reserve_jobs"]
    assert reserve[0].payload["max_claims"] == 5 and reserve[0].payload["count"] == 2


def test_threads_run_concurrently_up_to_max_claims(db) -> None:
    ids = delayed.enqueue_many([sample_jobs.Sleep.build(0.3, f"t{i}") for i in range(4)])
    assert Worker(max_claims=4).work_off() == (4, 0)
    kinds = [kind for kind, _ in sample_jobs.performed]
    # All four started before the first one ended: they ran side by side.
    assert kinds[:4] == ["sleep_start"] * 4
    assert all(db.row(i) is None for i in ids)


def test_a_free_thread_takes_the_next_job_without_waiting_for_the_batch(db) -> None:
    slow = sample_jobs.Sleep.set(priority=0).perform_later(1.0, "slow")
    delayed.enqueue_many([sample_jobs.Sleep.set(priority=1).build(0.01, f"fast{i}") for i in range(5)])
    assert Worker(max_claims=2).work_off() == (6, 0)
    tokens = [token for kind, token in sample_jobs.performed if kind == "sleep_end"]
    assert tokens[-1] == "slow"  # five fast jobs ran on the other thread meanwhile
    assert db.row(slow) is None


def test_function_job(db) -> None:
    add.perform_later(2, 3)
    assert Worker(queues=["functions"]).work_off() == (1, 0)
    assert ("add", 5) in sample_jobs.performed


def test_mysql_read_ahead_form_claims_in_order_and_skips_taken_rows(mysql_db) -> None:
    """The form for MySQL servers without SKIP LOCKED (forced here on MariaDB)."""
    db = mysql_db
    from delayed.backends import MySQLBackend
    from delayed.schema import jobs

    ids = delayed.enqueue_many([Remember.set(priority=p).build(p) for p in (3, 1, 2, 4)])
    backend = MySQLBackend(db.engine, jobs, skip_locked=False)
    db.update(ids[1], locked_by="other", locked_at=utcnow())  # priority 1, taken by another worker
    with backend.connect() as conn:
        first = backend.claim(conn, "ra-1", 2, ClaimFilter(), 60, read_ahead=5)
        second = backend.claim(conn, "ra-2", 5, ClaimFilter(), 60, read_ahead=1)
        third = backend.claim(conn, "ra-3", 5, ClaimFilter(), 60, read_ahead=5)
    assert [r.priority for r in first] == [2, 3]
    assert [r.priority for r in second] == [4]
    assert third == []
    assert {r["locked_by"] for r in db.rows()} == {"ra-1", "ra-2", "other"}
    # And a worker on this form runs jobs end to end.
    db.update(ids[1], locked_by=None, locked_at=None)
    worker = Worker(backend=backend)
    assert worker.work_off() == (1, 0)


def test_stop_before_run_is_not_lost(db) -> None:
    job_id = Remember.perform_later("never")
    worker = Worker()
    worker.stop()
    assert worker.run(install_signals=False) == 0
    assert db.row(job_id)["locked_by"] is None  # nothing was claimed
    assert worker.work_off() == (1, 0)  # the flags were reset for the next run


def test_jobs_claimed_as_the_stop_arrives_are_released_not_started(db) -> None:
    ids = delayed.enqueue_many([Remember.build(i) for i in range(3)])
    worker = Worker()
    # The reserve event is published as the claim returns: stop right then.
    unsubscribe = delayed.events.subscribe("delayed.worker.reserve_jobs", lambda e: worker.stop())
    try:
        assert worker.run(install_signals=False) == 0
    finally:
        unsubscribe()
    assert remembered() == []
    rows = db.rows()
    assert [r["id"] for r in rows] == ids
    assert all(r["locked_by"] is None and r["attempts"] == 0 for r in rows)


def test_rows_locked_by_a_lost_pickup_are_released_and_run(db) -> None:
    """A claim that committed while its reply was lost leaves rows under our name."""
    job_id = Remember.perform_later("orphan")
    worker = Worker()
    backend = backend_for(db.engine, db.table)
    with backend.connect() as conn:
        assert [r.id for r in backend.claim(conn, worker.name, 1, ClaimFilter(), 60, 5)] == [job_id]
    assert Worker(name="someone else").work_off() == (0, 0)  # fresh lock: not claimable
    worker._reserve_failures = 1  # as after a pickup whose connection died
    assert worker.work_off() == (1, 0)
    assert remembered() == ["orphan"]
    assert db.row(job_id) is None


def test_claims_are_not_durable_unless_durable_claims(pg) -> None:
    """[delayed] durable_claims turns synchronous_commit back on for the claim connection."""
    for durable, expected in ((False, "off"), (True, "on")):
        worker = delayed.Worker(config=delayed.get_config().replace(durable_claims=durable))
        conn = worker.backend.connect(worker.config.durable_claims)
        try:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == expected
        finally:
            conn.invalidate()
            conn.close()


def test_exit_on_complete_looks_again_once_its_own_outcomes_are_written(db) -> None:
    """An empty claim made while the worker's outcomes are unwritten does not end the run:
    on MariaDB the completer's transaction can hide ready rows from it. The worker waits for
    its writes, claims again, and exits only after an empty claim with nothing unwritten."""
    delayed.enqueue_many([Remember.build(i) for i in range(3)])
    gated = GatedBackend(backend_for(db.engine, db.table))
    worker = Worker(max_claims=3, backend=gated.backend)
    empty_claims: list[int] = []
    unsubscribe = delayed.events.subscribe(
        "delayed.worker.reserve_jobs",
        lambda e: empty_claims.append(1) if e.payload.get("count") == 0 else None,
    )
    thread = threading.Thread(target=worker.run, kwargs={"exit_on_complete": True, "install_signals": False})
    thread.start()
    try:
        wait_for(lambda: sorted(remembered()) == [0, 1, 2] and gated.calls >= 1 and empty_claims, timeout=30)
        late = Remember.perform_later("late")  # ready while the first outcomes wait to be written
    finally:
        gated.gate.set()
        thread.join(60)
        unsubscribe()
    assert not thread.is_alive()
    assert "late" in remembered(), "claimed by the look after the writes"
    assert db.row(late) is None and db.count() == 0


def test_exit_on_complete_runs_every_ready_job_run_after_run(db) -> None:
    """Many short exit-on-complete runs (the flaky MariaDB case in-process): every one of them
    ends with no ready job left."""
    for run in range(25):
        ids = delayed.enqueue_many([Remember.set(queue="cli").build(i) for i in range(20)])
        status = Worker(queues=["cli"], max_claims=3).run(exit_on_complete=True, install_signals=False)
        assert status == 0
        left = [i for i in ids if db.row(i) is not None]
        assert left == [], f"run {run}: ready jobs left behind {left}"


def test_work_off_on_a_missing_table_returns_instead_of_spinning(db) -> None:
    worker = Worker(config=delayed.get_config().replace(table_name="missing_jobs"))
    assert worker.run(exit_on_complete=True, install_signals=False) == 1
    assert worker._reserve_failures == 1, "gave up at the first claim: the table is missing"


def _job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("delayed-job")]


def test_a_second_stop_writes_queued_outcomes_before_releasing_anything(db) -> None:
    """Second stop while the completer holds a finished job's outcome (its writes held back)
    and another job still runs: the finished job's outcome is written, never released; the
    job that ends while the completer stops has its outcome written too, not released."""
    quick = Sleep.set(priority=0).perform_later(0.05, "quick")
    slow = Sleep.set(priority=1).perform_later(1.5, "slow")
    gated = GatedBackend(backend_for(db.engine, db.table))
    worker = Worker(max_claims=2, backend=gated.backend)
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(worker.run(install_signals=False)))
    thread.start()
    try:
        wait_for(lambda: ("sleep_end", "quick") in sample_jobs.performed and gated.calls >= 1, timeout=30)
        worker.stop()
        worker.stop()  # the second one: stop waiting for running jobs
        wait_for(lambda: ("sleep_end", "slow") in sample_jobs.performed, timeout=30)
    finally:
        gated.gate.set()
        thread.join(60)
    assert statuses == [1]
    assert db.row(quick) is None, "its queued outcome was written"
    assert db.row(slow) is None, "it ended before the completer closed: written, not released"


def test_a_second_stop_releases_running_jobs_and_leaves_no_thread_that_blocks_exit(db) -> None:
    long_job = Sleep.perform_later(1.0, "long")
    worker = Worker(max_claims=2)
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(worker.run(install_signals=False)))
    thread.start()
    wait_for(lambda: ("sleep_start", "long") in sample_jobs.performed, timeout=30)
    worker.stop()
    worker.stop()
    thread.join(30)
    assert statuses == [1]
    row = db.row(long_job)
    assert (row["locked_by"], row["attempts"]) == (None, 0), "released to run again"
    running = [t for t in _job_threads() if t.is_alive()]
    assert running, "the released job is still running in its thread"
    assert all(t.daemon for t in running), "abandoned job threads never keep the interpreter alive"
    # When it ends, its outcome is dropped (the row is no longer ours) and the worker's
    # counters are left alone: the same Worker runs again cleanly.
    wait_for(lambda: ("sleep_end", "long") in sample_jobs.performed, timeout=30)
    wait_for(lambda: not [t for t in running if t.is_alive()], timeout=30)
    assert db.row(long_job)["locked_by"] is None
    assert (worker.busy, worker.running_jobs()) == (0, [])
    assert worker.work_off(1) == (1, 0)
    assert db.row(long_job) is None


def test_worker_warns_once_when_autovacuum_is_off_for_the_table(pg, caplog) -> None:
    """A queue table without vacuum keeps every finished job's dead row: the worker says so at
    start-up (the table's own autovacuum_enabled = false here; the server's switch likewise)."""
    with pg.engine.connect() as conn:
        server_on = conn.exec_driver_sql("SHOW autovacuum").scalar_one() == "on"
    pg.execute("ALTER TABLE delayed_jobs SET (autovacuum_enabled = false)")
    try:
        with caplog.at_level("WARNING", logger="delayed"):
            worker = Worker()
            worker.check_schema()
            worker.check_schema()  # once per worker
    finally:
        pg.execute("ALTER TABLE delayed_jobs RESET (autovacuum_enabled)")
    warned = [r.getMessage() for r in caplog.records if "autovacuum is off" in r.getMessage()]
    assert len(warned) == 1, warned
    if server_on:
        assert "for table delayed_jobs" in warned[0] and "RESET (autovacuum_enabled)" in warned[0]
    else:  # the server-wide switch is named first: it is the one to fix
        assert "off on this server" in warned[0] and "autovacuum = on" in warned[0]

    caplog.clear()
    with caplog.at_level("WARNING", logger="delayed"):
        Worker().check_schema()
    again = [r.getMessage() for r in caplog.records if "autovacuum is off" in r.getMessage()]
    assert len(again) == (0 if server_on else 1), again
