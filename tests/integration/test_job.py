"""The job API: registration, set(...), perform_later, bulk enqueue, co-transactional enqueue."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import delayed
from delayed.errors import SerializationError, UnknownJobError, UnknownPriorityError
from delayed.record import decode_handler
from delayed.registry import lookup
from delayed.timeutil import utcnow
from tests.jobs import sample_jobs
from tests.jobs.sample_jobs import AlwaysFails, Noop, Remember, add


def test_registry_names_and_lookup() -> None:
    assert Noop.job_name == "tests.noop"
    assert lookup("tests.noop") is Noop
    assert add.job_name == "tests.add"
    assert add.queue == "functions"
    with pytest.raises(UnknownJobError, match="require"):
        lookup("no.such.Job")


def test_default_name_is_module_and_qualname() -> None:
    class Local(delayed.Job):
        def perform(self) -> None: ...

    assert Local.job_name == f"{__name__}.test_default_name_is_module_and_qualname.<locals>.Local"
    assert lookup(Local.job_name) is Local


def test_unknown_priority_name_in_class_is_an_error() -> None:
    with pytest.raises(UnknownPriorityError, match="urgent"):

        class Bad(delayed.Job):
            priority = "urgent"


def test_perform_later_writes_row(db) -> None:
    job_id = Remember.perform_later("x", flag=True)
    row = db.row(job_id)
    assert row is not None
    assert row["name"] == "tests.remember"
    assert row["priority"] == 10  # default_priority, user_visible
    assert row["queue"] == "default"
    assert row["attempts"] == 0
    assert row["locked_at"] is None and row["failed_at"] is None
    handler = json.loads(row["handler"])
    assert handler["job"] == "tests.remember"
    assert handler["args"] == ["x"]
    assert handler["kwargs"] == {"flag": True}
    assert len(handler["job_id"]) == 36
    assert datetime.fromisoformat(handler["enqueued_at"]) <= utcnow()


def test_set_options(db) -> None:
    before = utcnow()
    job_id = Remember.set(priority="eventual", queue="video", wait=timedelta(hours=3)).perform_later(1)
    row = db.row(job_id)
    assert row["priority"] == 20
    assert row["queue"] == "video"
    run_at = row["run_at"] if isinstance(row["run_at"], datetime) else datetime.fromisoformat(row["run_at"])
    assert before + timedelta(hours=3) <= run_at <= utcnow() + timedelta(hours=3)

    seconds_id = Remember.set(wait=90, priority=42).perform_later(2)
    assert db.row(seconds_id)["priority"] == 42

    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    until_id = Remember.set(wait_until=when).perform_later(3)
    stored = db.row(until_id)["run_at"]
    stored = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
    assert stored == datetime(2030, 1, 2, 3, 4, 5)


def test_set_rejects_bad_options() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        Remember.set(prio=1)
    with pytest.raises(TypeError, match="not both"):
        Remember.set(wait=1, wait_until=datetime.now(UTC))
    with pytest.raises(ValueError, match="wait"):
        Remember.set(wait=-5)
    with pytest.raises(UnknownPriorityError, match="soonish"):
        Remember.set(priority="soonish").build(1)


def test_class_attributes_are_defaults(db) -> None:
    job_id = add.perform_later(1, 2)
    row = db.row(job_id)
    assert row["queue"] == "functions"
    assert row["priority"] == 0  # interactive
    assert add.perform_now(2, 3) == 5


def test_unserializable_arguments_name_the_argument(db) -> None:
    with pytest.raises(SerializationError, match=r"positional argument 1 .*datetime"):
        Remember.perform_later("ok", datetime.now(UTC))
    with pytest.raises(SerializationError, match="keyword argument 'when'"):
        Remember.perform_later("ok", when=object())
    with pytest.raises(SerializationError, match="non-string key 1"):
        Remember.perform_later({1: "a"})
    with pytest.raises(SerializationError, match="finite"):
        Remember.perform_later(float("nan"))
    with pytest.raises(SerializationError, match=r"\[0\].*set"):
        Remember.perform_later([{1, 2}])
    assert db.count() == 0


def test_enqueue_many_returns_ids_in_order(db) -> None:
    requests = [Remember.build(i) for i in range(2500)]
    requests.append(AlwaysFails.set(queue="other").build("x"))
    ids = delayed.enqueue_many(requests)
    assert len(ids) == 2501 and len(set(ids)) == 2501
    assert db.count() == 2501
    for index in (0, 1234, 2499):
        assert decode_handler(db.row(ids[index])["handler"])["args"] == [index]
    assert db.row(ids[-1])["queue"] == "other"
    assert delayed.enqueue_many([]) == []


def test_enqueue_event_has_duration_and_ids(db) -> None:
    seen = []
    unsubscribe = delayed.events.subscribe("delayed.job.enqueue", seen.append)
    try:
        job_id = Noop.perform_later()
    finally:
        unsubscribe()
    assert len(seen) == 1
    assert seen[0].payload["ids"] == [job_id]
    assert seen[0].payload["jobs"] == ["tests.noop"]
    assert seen[0].duration >= 0


# ---------------------------------------------------------------- co-transactional enqueue
def test_sqlalchemy_connection_rollback_leaves_nothing(db) -> None:
    with db.engine.connect() as conn:
        trans = conn.begin()
        job_id = Remember.set(using=conn).perform_later("rolled back")
        assert job_id > 0
        # Not visible to another connection (a worker) before commit.
        assert db.count() == 0
        trans.rollback()
    assert db.count() == 0


def test_sqlalchemy_connection_commit_keeps_job_with_business_data(db) -> None:
    meta = sa.MetaData()
    accounts = sa.Table("accounts_txn_test", meta, sa.Column("id", sa.Integer, primary_key=True))
    meta.create_all(db.engine)
    try:
        with db.engine.begin() as conn:
            conn.execute(accounts.insert().values(id=1))
            job_id = Remember.set(using=conn).perform_later("committed")
        assert db.row(job_id)["name"] == "tests.remember"
        with db.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(accounts)).scalar_one() == 1
    finally:
        meta.drop_all(db.engine)


def test_session_rollback_leaves_nothing_and_commit_keeps(db) -> None:
    with Session(db.engine) as session:
        Remember.set(using=session).perform_later("no")
        delayed.enqueue_many([Remember.build("no2")], using=session)
        session.rollback()
    assert db.count() == 0
    with Session(db.engine) as session:
        job_id = Remember.set(using=session).perform_later("yes")
        session.commit()
    assert db.row(job_id) is not None


def test_psycopg_connection_joins_transaction(pg) -> None:
    conninfo = sa.make_url(pg.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        Remember.set(using=conn).perform_later("psycopg rollback")
        assert pg.count() == 0
        conn.rollback()
        ids = delayed.enqueue_many([Remember.build(i) for i in range(3)], using=conn)
        assert pg.count() == 0
        conn.commit()
    assert [pg.row(i)["handler"] for i in ids] and pg.count() == 3


def test_using_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="using="):
        Remember.set(using=object()).perform_later(1)


def test_perform_later_job_is_run_by_worker(db) -> None:
    sample_jobs.performed.clear()
    job_id = Remember.perform_later("hello")
    assert delayed.Worker().work_off() == (1, 0)
    assert db.row(job_id) is None
    assert sample_jobs.performed == [("remember", ("hello", job_id, 0, {}))]
