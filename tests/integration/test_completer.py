"""The completer on every database: a refused row never holds back the others, and its backlog
is bounded (the worker claims nothing more while it is full)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

import delayed
from delayed.backends import backend_for
from delayed.completer import Completer
from delayed.record import Outcome
from delayed.timeutil import utcnow
from delayed.worker import Worker
from tests.helpers import GatedBackend, wait_for
from tests.jobs import sample_jobs
from tests.jobs.sample_jobs import Noop, RaisesText, Sleep

BAD_TEXTS = ["nul\x00byte", "lone \udcff surrogate"]


@pytest.fixture(autouse=True)
def _clear_performed():
    sample_jobs.performed.clear()
    yield
    sample_jobs.performed.clear()


def _lock(db, ids: Sequence[int], worker: str) -> None:
    for job_id in ids:
        db.update(job_id, locked_by=worker, locked_at=utcnow())


@pytest.mark.parametrize("text", BAD_TEXTS)
def test_a_job_failing_with_an_unstorable_message_holds_back_no_other_job(db, text: str) -> None:
    """The reproduction of issue 11 item 1: before, this batch failed for ever on PostgreSQL
    (NUL, surrogate) and MariaDB (surrogate), and every job of it ran again."""
    bad = RaisesText.perform_later(text)
    good = [Noop.perform_later(i) for i in range(5)]
    assert Worker(max_claims=6).work_off(6) == (5, 1)
    assert all(db.row(i) is None for i in good)
    row = db.row(bad)
    assert row["attempts"] == 1 and row["locked_by"] is None and row["failed_at"] is None
    escaped = text.replace("\x00", "\\x00").replace("\udcff", "\\udcff")
    assert row["last_error"].startswith(f"RuntimeError: {escaped}\nTraceback")


def test_a_batch_with_refused_rows_is_written_row_by_row_with_a_fallback(db) -> None:
    """Outcomes made elsewhere than format_error (or a database stricter than we know) with
    text a driver refuses: the other rows are written, the refused ones with a plain-ASCII
    last_error; nothing is dropped."""
    ids = [Noop.perform_later(i) for i in range(5)]
    _lock(db, ids, "w1")
    later = utcnow()
    completer = Completer(backend_for(db.engine, db.table)).start()
    try:
        completer.put(Outcome("delete", ids[0], "w1"))
        completer.put(Outcome("retry", ids[1], "w1", attempts=1, run_at=later, last_error="E: bad\udcffbyte"))
        completer.put(Outcome("delete", ids[2], "w1"))
        completer.put(Outcome("fail", ids[3], "w1", attempts=3, last_error="E: nul\x00 and \udcfe"))
        completer.put(Outcome("retry", ids[4], "w1", attempts=2, run_at=later, last_error="E: fine ☃"))
        assert completer.flush(timeout=30)
    finally:
        assert completer.stop(timeout=10)
    assert db.row(ids[0]) is None and db.row(ids[2]) is None
    retried, failed, fine = db.row(ids[1]), db.row(ids[3]), db.row(ids[4])
    assert (retried["attempts"], retried["locked_by"], retried["failed_at"]) == (1, None, None)
    assert retried["last_error"] == "E: bad\\udcffbyte"
    assert (failed["attempts"], failed["locked_by"]) == (3, None) and failed["failed_at"] is not None
    assert failed["last_error"] in ("E: nul\\x00 and \\udcfe", "E: nul\x00 and \\udcfe")
    assert (fine["attempts"], fine["last_error"]) == (2, "E: fine ☃")


def _claimed(db) -> int:
    """Rows a worker took: run and deleted, or locked."""
    return sum(1 for r in db.rows() if r["locked_by"]) + (20 - db.count())


def test_the_worker_claims_nothing_while_the_completer_backlog_is_full(db) -> None:
    delayed.enqueue_many([Sleep.build(0.01, f"s{i}") for i in range(20)])
    gated = GatedBackend(backend_for(db.engine, db.table))
    worker = Worker(max_claims=2, backend=gated.backend)
    worker.max_pending_outcomes = 4
    thread = threading.Thread(target=worker.work_off, args=(20,))
    thread.start()
    try:
        wait_for(lambda: gated.calls >= 1, timeout=30)
        # The completer is stuck on its first batch: at most 4 unwritten outcomes, then the
        # worker stops claiming (2 threads may be running their jobs on top of those). Ten
        # millisecond jobs: unbounded, all 20 would be claimed in well under this second.
        threading.Event().wait(1.0)
        held = _claimed(db)
        assert 4 <= held <= 4 + 2, held
        threading.Event().wait(0.5)
        assert _claimed(db) == held, "claiming paused while the backlog is full"
    finally:
        gated.gate.set()
        thread.join(60)
    assert not thread.is_alive()
    assert db.count() == 0, "every job ran and every outcome was written once the backlog drained"
    ends = [token for kind, token in sample_jobs.performed if kind == "sleep_end"]
    assert sorted(ends) == sorted(f"s{i}" for i in range(20))
