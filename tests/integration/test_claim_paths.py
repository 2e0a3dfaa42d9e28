"""The worker's claim connection talks to the driver directly (PostgreSQL, SQLite); a caller's
connection goes through SQLAlchemy. Both must claim the same rows and read them the same."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.backends import ClaimFilter, backend_for
from delayed.config import build_config, set_config
from delayed.record import Outcome
from delayed.timeutil import utcnow
from tests.jobs.sample_jobs import Remember

LOCK_TIMEOUT = 600.0


def enqueue_mix(db) -> dict[str, int]:
    """Rows that each filter takes or leaves: queues, priorities, future, failed, locked, stale."""
    ids = {
        "a1": Remember.set(queue="a", priority=1).perform_later("a1"),
        "b5": Remember.set(queue="b", priority=5).perform_later("b5"),
        "a9": Remember.set(queue="a", priority=9).perform_later("a9"),
        "later": Remember.set(queue="a", priority=1, wait=3600).perform_later("later"),
        "failed": Remember.set(queue="a").perform_later("failed"),
        "locked": Remember.set(queue="a").perform_later("locked"),
        "stale": Remember.set(queue="a", priority=7).perform_later("stale"),
    }
    now = utcnow()
    db.update(ids["failed"], failed_at=now)
    db.update(ids["locked"], locked_at=now, locked_by="someone else")
    db.update(ids["stale"], locked_at=now - timedelta(seconds=LOCK_TIMEOUT + 5), locked_by="dead worker")
    return ids


FILTERS = {
    "all": (ClaimFilter(), ["a1", "b5", "stale", "a9"]),
    "queue_a": (ClaimFilter(queues=("a",)), ["a1", "stale", "a9"]),
    "queues_a_b": (ClaimFilter(queues=("b", "a")), ["a1", "b5", "stale", "a9"]),
    "priority_2_to_8": (ClaimFilter(min_priority=2, max_priority=8), ["b5", "stale"]),
    "queue_a_up_to_5": (ClaimFilter(queues=("a",), max_priority=5), ["a1"]),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_the_claim_connection_and_a_callers_connection_claim_and_read_alike(db, name: str) -> None:
    flt, expected = FILTERS[name]
    backend = backend_for(delayed.db.get_engine(), db.table)
    ids = enqueue_mix(db)
    with backend.connect() as conn:  # the worker's: autocommit, straight to the driver
        direct = backend.claim(conn, "direct", 10, flt, LOCK_TIMEOUT, 5)
    assert [r.id for r in direct] == [ids[k] for k in expected], "pickup order"
    for record in direct:
        row = db.row(record.id)
        assert row["locked_by"] == "direct" and record.locked_by == "direct"
        for field in ("handler", "priority", "queue", "name", "run_at", "created_at", "attempts"):
            assert getattr(record, field) == row[field], field
        assert abs(record.locked_at - row["locked_at"]) < timedelta(seconds=1)  # type: ignore[operator]
    released = backend_for(delayed.db.get_engine(), db.table)
    with delayed.db.get_engine().connect() as conn:
        released.release(conn, "direct", [r.id for r in direct])
        if conn.in_transaction():
            conn.commit()
    with delayed.db.get_engine().connect() as conn:  # a caller's: SQLAlchemy
        through = backend.claim(conn, "through", 10, flt, LOCK_TIMEOUT, 5)
        conn.commit()
    assert [r.id for r in through] == [r.id for r in direct]
    for a, b in zip(direct, through, strict=True):  # updated_at: the release wrote it
        assert (a.handler, a.run_at, a.created_at, a.queue) == (b.handler, b.run_at, b.created_at, b.queue)


def test_a_claim_takes_at_most_its_limit_and_a_success_batch_deletes_only_its_own_rows(db) -> None:
    backend = backend_for(delayed.db.get_engine(), db.table)
    ids = [Remember.perform_later(i) for i in range(5)]
    with backend.connect() as conn:
        first = backend.claim(conn, "w1", 3, ClaimFilter(), LOCK_TIMEOUT, 5)
        second = backend.claim(conn, "w2", 3, ClaimFilter(), LOCK_TIMEOUT, 5)
    assert [r.id for r in first] == ids[:3] and [r.id for r in second] == ids[3:]
    with backend.write_connection() as conn:
        # w1's successes, one of them naming a row w2 holds: that one is not w1's to delete.
        backend.complete(conn, [Outcome("delete", i, "w1") for i in (*ids[:2], ids[3])])
    assert [db.row(i) is None for i in ids] == [True, True, False, False, False]
    assert db.row(ids[3])["locked_by"] == "w2"


def test_the_direct_paths_work_on_a_schema_qualified_table(db) -> None:
    """The claim and success-batch SQL the backends send to the driver themselves quote the
    table with SQLAlchemy's preparer, schema part included (SQLite's `main`, MySQL's
    database, PostgreSQL's `public`)."""
    if db.backend == "sqlite":
        owner = "main"
    elif db.backend == "mysql":
        owner = sa.make_url(db.url).database
    else:
        owner = "public"
    configured = f"{owner}.direct_{uuid.uuid4().hex[:6]}"
    set_config(build_config(environ={}, overrides={"database_url": db.url, "table_name": configured}))
    table = schema.get_table(configured)
    engine = delayed.db.create_engine(db.url)
    try:
        schema.apply(engine, table)
        ids = [Remember.perform_later(i) for i in range(3)]
        assert delayed.Worker(sleep_delay=0.05).run(exit_on_complete=True, install_signals=False) == 0
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
        assert len(ids) == 3
    finally:
        names = schema.TableNames.for_jobs(configured)
        with engine.begin() as conn:
            for name in (names.versions, names.cron_entries, names.cron_runs, names.jobs):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {names.jobs}_notify()")
        engine.dispose()
