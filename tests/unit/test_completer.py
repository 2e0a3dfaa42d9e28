"""The completer on its own: batches, flush and stop, and a failed write kept and retried."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from delayed import schema
from delayed.backends import backend_for
from delayed.completer import Completer
from delayed.db import create_engine
from delayed.record import Outcome
from delayed.timeutil import utcnow


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'completer.sqlite3'}")
    schema.migrate(engine)
    yield engine
    engine.dispose()


def _locked_rows(engine: sa.Engine, count: int, worker: str = "w1") -> list[int]:
    t = schema.jobs
    now = utcnow()
    rows = [
        {
            "priority": 0,
            "attempts": 0,
            "handler": "{}",
            "name": "x",
            "run_at": now,
            "locked_at": now,
            "locked_by": worker,
        }
        for _ in range(count)
    ]
    with engine.begin() as conn:
        return [conn.execute(t.insert().values(**row)).inserted_primary_key[0] for row in rows]


def _rows(engine: sa.Engine) -> dict[int, dict]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(schema.jobs)).mappings()}


def test_outcomes_are_written_and_flush_waits_for_them(sqlite: sa.Engine) -> None:
    ids = _locked_rows(sqlite, 3)
    completer = Completer(backend_for(sqlite, schema.jobs)).start()
    later = utcnow()
    completer.put(Outcome("delete", ids[0], "w1"))
    completer.put(Outcome("retry", ids[1], "w1", attempts=1, run_at=later, last_error="boom"))
    completer.put(Outcome("fail", ids[2], "w1", attempts=25, last_error="dead"))
    assert completer.flush(timeout=10)
    assert completer.pending == 0 and completer.pending_ids() == set()
    rows = _rows(sqlite)
    assert ids[0] not in rows
    assert (rows[ids[1]]["attempts"], rows[ids[1]]["locked_by"], rows[ids[1]]["last_error"]) == (
        1,
        None,
        "boom",
    )
    assert rows[ids[2]]["failed_at"] is not None and rows[ids[2]]["locked_by"] is None
    assert completer.stop(timeout=5)


def test_an_outcome_for_a_row_another_worker_holds_changes_nothing(sqlite: sa.Engine) -> None:
    (job_id,) = _locked_rows(sqlite, 1, worker="someone else")
    completer = Completer(backend_for(sqlite, schema.jobs)).start()
    completer.put(Outcome("delete", job_id, "w1"))
    assert completer.stop(timeout=5)
    assert _rows(sqlite)[job_id]["locked_by"] == "someone else"


def test_a_failed_write_is_kept_and_retried_until_it_lands(sqlite: sa.Engine, tmp_path: Path) -> None:
    ids = _locked_rows(sqlite, 2)
    other = sa.MetaData()
    missing = schema.make_table("not_yet_there", other)
    completer = Completer(backend_for(sqlite, missing)).start()
    completer.put(Outcome("delete", ids[0], "w1"))
    assert not completer.flush(timeout=0.5)  # the table does not exist: the batch is kept
    assert completer.pending_ids() == {ids[0]}
    with sqlite.begin() as conn:
        missing.create(conn)
        conn.execute(missing.insert().from_select(list(schema.jobs.c.keys()), sa.select(schema.jobs)))
    assert completer.flush(timeout=15)  # retried with back-off until the write succeeds
    with sqlite.connect() as conn:
        left = conn.execute(sa.select(missing.c.id)).scalars().all()
    assert left == [ids[1]]
    assert completer.stop(timeout=5)


def test_stop_never_closes_the_connection_while_its_thread_is_inside_a_write(
    sqlite: sa.Engine, tmp_path: Path
) -> None:
    """A stop that times out while the completer's write waits (here on SQLite's write lock,
    held by another connection) must not close the connection under the thread: the thread
    finishes its write and closes its own connection."""
    (job_id,) = _locked_rows(sqlite, 1)
    closed_by: list[str] = []
    sa.event.listen(sqlite.pool, "checkin", lambda *_: closed_by.append(threading.current_thread().name))
    blocker = sqlite3.connect(tmp_path / "completer.sqlite3", timeout=1)
    blocker.execute("BEGIN IMMEDIATE")  # SQLite's write lock: the completer's DELETE waits for it
    completer = Completer(backend_for(sqlite, schema.jobs)).start()
    try:
        completer.put(Outcome("delete", job_id, "w1"))
        assert completer.stop(timeout=0.5) is False  # still waiting inside its write
        assert closed_by == [], "nobody closed the connection while the write was in progress"
    finally:
        blocker.rollback()
        blocker.close()
    completer._thread.join(30)
    assert not completer._thread.is_alive()
    assert closed_by == ["delayed-completer"], closed_by
    assert job_id not in _rows(sqlite), "the write went through once the lock was free"


def test_a_stop_cuts_the_back_off_short_and_the_thread_ends(sqlite: sa.Engine) -> None:
    """Writes that keep failing (no such table): stop gives up after its timeout, and the
    thread ends then instead of sleeping through its back-off with the connection open."""
    (job_id,) = _locked_rows(sqlite, 1)
    missing = schema.make_table("never_there", sa.MetaData())
    completer = Completer(backend_for(sqlite, missing)).start()
    completer.put(Outcome("delete", job_id, "w1"))
    assert not completer.flush(timeout=2.0)  # backing off: 0.1, 0.2, 0.4, 0.8, 1.6 s ...
    assert completer.stop(timeout=0.1) is False
    assert not completer._thread.is_alive()
    assert completer._conn is None
