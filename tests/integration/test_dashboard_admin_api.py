"""The operator functions the dashboard added to delayed.jobs, on every database: filters,
keyset pages, unlock, and actions on every job matching a filter.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import delayed
from delayed import admin
from delayed.timeutil import utcnow
from tests.web_helpers import Later, fail_jobs


def _states(db) -> dict[str, list[int]]:
    """One row in every state, made by the API and a real worker (running: a fresh lock)."""
    failed = fail_jobs("mail", 2)
    ready = Later.set(queue="default", priority="interactive").perform_later(1)
    scheduled = Later.set(queue="default", wait=3600).perform_later(2)
    running = Later.set(queue="reports", priority="reporting").perform_later(3)
    db.update(running, locked_at=utcnow(), locked_by="host:gone pid:1")
    stale = Later.set(queue="reports").perform_later(4)
    db.update(stale, locked_at=utcnow() - timedelta(hours=2), locked_by="host:old pid:2")
    erroring = Later.set(queue="default").perform_later(5)
    db.update(erroring, attempts=2, last_error="TimeoutError: slow\nTraceback ...")
    return {
        "failed": failed,
        "ready": [ready, stale, erroring],
        "scheduled": [scheduled],
        "running": [running],
        "erroring": [erroring],
    }


def _ids(flt: admin.JobFilter, limit: int = 50) -> list[int]:
    return [job.id for job in admin.page_jobs(flt, limit=limit).jobs]


def test_states_partition_the_table_like_the_monitor(db) -> None:
    made = _states(db)
    assert sorted(_ids(admin.JobFilter(state="failed"))) == sorted(made["failed"])
    assert sorted(_ids(admin.JobFilter(state="ready"))) == sorted(made["ready"])
    assert _ids(admin.JobFilter(state="scheduled")) == made["scheduled"]
    assert _ids(admin.JobFilter(state="running")) == made["running"]
    assert _ids(admin.JobFilter(state="erroring")) == made["erroring"]
    every = _ids(admin.JobFilter(state="all"))
    assert every == sorted(every, reverse=True)  # newest first
    assert sorted(every) == sorted({i for ids in made.values() for i in ids})  # erroring is also ready
    # The same counts as the monitor's figures (delayed.jobs.stats).
    stats = admin.stats()
    assert sum(s.failed for s in stats) == len(made["failed"])
    assert sum(s.ready for s in stats) == len(made["ready"])
    assert sum(s.future for s in stats) == len(made["scheduled"])
    assert sum(s.locked for s in stats) == len(made["running"])
    assert admin.count_jobs(admin.JobFilter(state="ready")) == len(made["ready"])


def test_filters_queue_name_priority_and_error_text(db) -> None:
    made = _states(db)
    assert sorted(_ids(admin.JobFilter(queue="mail"))) == sorted(made["failed"])
    assert _ids(admin.JobFilter(name="tests.web.broken", state="failed")) == sorted(
        made["failed"], reverse=True
    )
    assert _ids(admin.JobFilter(priority="reporting")) == made["running"]
    assert _ids(admin.JobFilter(priority="30..")) == made["running"]
    assert _ids(admin.JobFilter(priority=0)) == [made["ready"][0]]
    # Case-insensitive substring of last_error; % and _ are literal characters, not wildcards.
    assert sorted(_ids(admin.JobFilter(error="smtp REFUSED"))) == sorted(made["failed"])
    assert _ids(admin.JobFilter(error="user1@example")) == [made["failed"][1]]
    assert _ids(admin.JobFilter(error="%")) == []
    assert _ids(admin.JobFilter(error="timeouterror", state="erroring")) == made["erroring"]
    assert _ids(admin.JobFilter(state="failed", queue="default")) == []
    with pytest.raises(delayed.UnknownPriorityError):
        _ids(admin.JobFilter(priority="urgent"))
    with pytest.raises(ValueError, match="unknown job state 'dead'"):
        admin.JobFilter(state="dead")


@pytest.mark.parametrize("state", ["ready", "failed", "scheduled"])
def test_keyset_pages_cover_every_row_once_in_order(db, state: str) -> None:
    if state == "failed":
        expected = fail_jobs("bulk", 7)
    else:
        wait = 3600 if state == "scheduled" else None
        expected = [
            Later.set(queue="bulk", priority=p, wait=wait).perform_later(p) for p in (5, 15, 5, 25, 0, 15, 5)
        ]
    flt = admin.JobFilter(state=state)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = admin.page_jobs(flt, after=cursor, limit=3)
        seen += [job.id for job in page.jobs]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    if state == "ready":  # pickup order: priority, then run_at, then id
        records = {job.id: job for job in admin.list_jobs(limit=None)}
        keys = [(records[i].priority, records[i].run_at, i) for i in seen]
        assert keys == sorted(keys)
    elif state == "failed":
        assert seen == sorted(seen, reverse=True)
    else:
        assert seen == sorted(seen)


def test_a_cursor_we_did_not_make_is_refused(db) -> None:
    with pytest.raises(admin.BadCursorError, match="not one this dashboard made"):
        admin.page_jobs(admin.JobFilter(state="failed"), after="@@@")
    ready_cursor = admin._encode_cursor("pickup", [1, utcnow(), 5])
    with pytest.raises(admin.BadCursorError, match="another page order"):
        admin.page_jobs(admin.JobFilter(state="failed"), after=ready_cursor)
    damaged = admin._encode_cursor("id_desc", ["x"])
    with pytest.raises(admin.BadCursorError, match="damaged"):
        admin.page_jobs(admin.JobFilter(state="failed"), after=damaged)


def test_unlock_clears_live_locks_and_names_what_it_left(db) -> None:
    made = _states(db)
    running = made["running"][0]
    unlocked_by_hand = made["ready"][0]
    result = admin.unlock([running, unlocked_by_hand, made["failed"][0], 999_999])
    assert result.ids == [running]
    assert result.not_locked == [unlocked_by_hand, made["failed"][0]]
    assert result.unknown == [999_999]
    assert not result.complete
    row = db.row(running)
    assert row["locked_at"] is None and row["locked_by"] is None and row["attempts"] == 0
    assert admin.count_jobs(admin.JobFilter(state="running")) == 0


def test_acting_on_every_match_stops_at_the_confirmed_id(db) -> None:
    first = fail_jobs("mail", 3)
    confirmed_up_to = admin.max_id()
    late = fail_jobs("mail", 2)  # failed after the operator confirmed: left alone
    other_queue = fail_jobs("reports", 1)
    flt = admin.JobFilter(state="failed", queue="mail", up_to_id=confirmed_up_to)
    assert admin.count_jobs(flt) == 3
    result = admin.act_on_matching("retry", flt, batch=2)
    assert result.action == "retry" and result.ids == first and result.complete
    for job_id in first:
        row = db.row(job_id)
        assert row["failed_at"] is None and row["attempts"] == 0
    for job_id in late + other_queue:
        assert db.row(job_id)["failed_at"] is not None

    discarded = admin.act_on_matching("discard", admin.JobFilter(state="failed", queue="mail"))
    assert discarded.ids == late
    assert all(db.row(i) is None for i in late) and db.row(other_queue[0]) is not None


def test_bulk_actions_skip_running_rows_unless_forced(db) -> None:
    made = _states(db)
    result = admin.act_on_matching("discard", admin.JobFilter(state="all", queue="reports"))
    assert result.busy == made["running"]  # a worker holds it: skipped, not deleted
    assert db.row(made["running"][0]) is not None
    unlocked = admin.act_on_matching("unlock", admin.JobFilter(state="running"))
    assert unlocked.ids == made["running"] and isinstance(unlocked, admin.Unlocked)
    with pytest.raises(ValueError, match="unknown action"):
        admin.act_on_matching("explode", admin.JobFilter())
