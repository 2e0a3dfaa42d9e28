"""Callbacks, retry_on and discard_on through a real worker, on every database."""

from __future__ import annotations

import re
from datetime import timedelta

import delayed
from delayed import events, statsd
from delayed.config import get_config
from delayed.timeutil import utcnow
from delayed.worker import Worker
from tests.statsd_helpers import UdpListener

seen: list[object] = []


class Throttled(Exception):
    pass


class Stale(Exception):
    pass


@delayed.discard_on(Stale)
@delayed.retry_on(Throttled, wait=600, attempts=2)
class Guarded(delayed.Job, name="tests.integration.callbacks.guarded"):
    max_attempts = 20

    @delayed.before_enqueue
    def refuse_negative(self) -> None:
        if self.args[0] < 0:
            raise delayed.AbortEnqueue

    @delayed.after_enqueue
    def remember_id(self) -> None:
        seen.append(("enqueued", self.id))

    @delayed.around_perform
    def wrap(self, proceed) -> None:  # type: ignore[no-untyped-def]
        seen.append(("around", self.id))
        proceed()

    @delayed.after_perform
    def done(self) -> None:
        seen.append(("after", self.args[0]))

    def perform(self, kind: int) -> None:
        if kind == 1:
            raise Throttled("slow down")
        if kind == 2:
            raise Stale("nothing to do any more")


def test_before_enqueue_aborts_and_after_enqueue_sees_the_new_id(db) -> None:
    seen.clear()
    assert Guarded.perform_later(-1) is None
    assert db.count() == 0
    job_id = Guarded.set(queue="q").perform_later(0)
    assert seen == [("enqueued", job_id)]
    assert db.row(job_id)["queue"] == "q"  # type: ignore[index]


def test_perform_callbacks_run_in_the_worker(db) -> None:
    job_id = Guarded.perform_later(0)
    seen.clear()
    assert Worker().work_off(1) == (1, 0)
    assert seen == [("around", job_id), ("after", 0)]
    assert db.row(job_id) is None


def test_retry_on_uses_its_wait_and_attempts_then_the_job_fails(db) -> None:
    job_id = Guarded.perform_later(1)
    before = utcnow()
    Worker().work_off(1)
    row = db.row(job_id)
    assert row is not None and row["attempts"] == 1 and row["failed_at"] is None
    assert row["run_at"] >= before + timedelta(seconds=590), "the rule's wait, not the gem's 6 s"
    db.update(job_id, run_at=utcnow() - timedelta(seconds=1))
    Worker().work_off(1)
    row = db.row(job_id)
    assert row is not None and row["attempts"] == 2, "attempts=2 of the rule, not max_attempts=20"
    assert row["failed_at"] is not None and row["last_error"]
    assert "Throttled: slow down" in row["last_error"]


def test_discard_on_deletes_the_row_with_an_event_and_no_failure(db) -> None:
    received: list[str] = []
    unsubscribe = events.subscribe(
        re.compile(r"delayed\.job\.(discarded|error|failure)"), lambda e: received.append(e.name)
    )
    try:
        job_id = Guarded.perform_later(2)
        Worker().work_off(1)
    finally:
        unsubscribe()
    assert db.row(job_id) is None, "deleted, not failed"
    assert received == ["delayed.job.discarded"]


def test_a_discard_is_counted_in_statsd(db) -> None:
    statsd.uninstall()
    with UdpListener() as listener:
        config = get_config().with_section(
            "statsd", host="127.0.0.1", port=listener.port, prefix="", sample_rate=1.0
        )
        statsd.install(config)
        try:
            Guarded.set(queue="mail", priority=12).perform_later(2)
            Worker().work_off(1)
            lines = listener.wait_for_lines(
                lambda got: "job.discarded.mail.user_visible:1|c" in got, timeout=10
            )
        finally:
            statsd.uninstall()
    assert not [line for line in lines if line.startswith(("job.error", "job.failure"))]
