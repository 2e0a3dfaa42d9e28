"""`delayed.admin` and `delayed jobs`: find, read, retry, discard, unlock and count real rows.

Failed rows are made for real: a job raises inside `delayed.Worker(...).work_off()` and the
worker writes failed_at and last_error, as in production.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result

import delayed
from delayed.cli import main
from delayed.config import get_config
from delayed.timeutil import utcnow
from tests.jobs.admin_jobs import BROKEN, fail_for_real
from tests.jobs.sample_jobs import Noop


@pytest.fixture(autouse=True)
def _broken() -> None:
    BROKEN["mail"] = True


def cli(db, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["jobs", *args, "--database-url", db.url], input=input)


def test_failed_job_story_list_show_retry(db) -> None:
    (job_id,) = fail_for_real()
    row = db.row(job_id)
    assert row["failed_at"] is not None and row["attempts"] == 1

    listed = cli(db, "list", "--failed")
    assert listed.exit_code == 0, listed.output
    header, line = listed.stdout.splitlines()[:2]
    assert header.split() == [
        "id",
        "name",
        "queue",
        "priority",
        "attempts",
        "run_at",
        "locked_by",
        "failed_at",
        "last_error",
    ]
    assert line.split()[0] == str(job_id)
    assert "tests.admin.flaky" in line and "mail" in line and "10 user_visible" in line
    assert "ConnectionError: SMTP refused user0@example.com" in line
    assert "second line" not in listed.stdout  # only the first line of last_error

    as_json = json.loads(cli(db, "list", "--failed", "--json").stdout)
    assert [j["id"] for j in as_json] == [job_id]
    assert as_json[0]["state"] == "failed" and as_json[0]["priority_name"] == "user_visible"
    assert "Traceback" in as_json[0]["last_error"]

    shown = cli(db, "show", str(job_id))
    assert shown.exit_code == 0, shown.output
    assert "state:      failed" in shown.stdout
    assert '"job": "tests.admin.flaky"' in shown.stdout  # pretty-printed handler
    assert "second line of the error" in shown.stdout and "Traceback" in shown.stdout
    assert "lock:       none" in shown.stdout

    BROKEN["mail"] = False  # the operator fixes the cause...
    retried = cli(db, "retry", str(job_id))
    assert retried.exit_code == 0, retried.output
    assert f"Retried 1 job(s): {job_id}" in retried.stdout
    row = db.row(job_id)
    assert row["failed_at"] is None and row["attempts"] == 0 and row["locked_by"] is None
    assert row["run_at"] <= utcnow()
    assert delayed.Worker(queues=["mail"]).work_off(5) == (1, 0)  # ...and it runs, once
    assert db.row(job_id) is None


def test_list_filters(db) -> None:
    failed_ids = fail_for_real("mail", 2)
    live = Noop.set(queue="reports", priority="reporting").perform_later(1)
    future = Noop.set(queue="reports", priority=25, wait=3600).perform_later(2)
    negative = Noop.set(queue="urgent", priority=-5).perform_later(3)
    locked = Noop.set(queue="urgent", priority="interactive").perform_later(4)
    db.update(locked, locked_at=utcnow(), locked_by="host:elsewhere pid:1")

    def ids(**kw) -> list[int]:
        return [r.id for r in delayed.admin.list_jobs(**kw)]

    assert ids(failed=True) == failed_ids
    assert ids(failed=False) == [live, future, negative, locked]
    assert ids(queue="reports") == [live, future]
    assert ids(queue=["reports", "urgent"]) == [live, future, negative, locked]
    assert ids(priority="reporting") == [live]
    assert ids(priority=25) == [future]
    assert ids(priority="eventual..") == [live, future]
    assert ids(priority="interactive") == [negative, locked]  # the first name is open below
    assert ids(priority="-5..0") == [negative, locked]
    assert ids(priority=("user_visible", "user_visible")) == failed_ids
    assert ids(locked=True) == [locked]
    assert locked not in ids(locked=False)
    assert ids(limit=2) == failed_ids
    with pytest.raises(delayed.UnknownPriorityError, match="unknown priority name 'nope'"):
        delayed.admin.list_jobs(priority="nope")

    out = cli(db, "list", "--queue", "urgent", "--locked", "--json")
    assert [j["id"] for j in json.loads(out.stdout)] == [locked]
    out = cli(db, "list", "--priority", "eventual..reporting", "--limit", "1")
    assert out.exit_code == 0
    assert [line.split()[0] for line in out.stdout.splitlines()[1:]] == [str(live)]
    assert "raise --limit" in out.stderr
    bad = cli(db, "list", "--priority", "nope")
    assert bad.exit_code == 2 and "unknown priority name 'nope'" in bad.stderr


def test_retry_and_discard_report_unknown_and_busy_ids(db) -> None:
    (failed,) = fail_for_real()
    running = Noop.perform_later(1)
    db.update(running, locked_at=utcnow(), locked_by="host:elsewhere pid:1")
    missing = max(failed, running) + 1000

    result = delayed.admin.retry([failed, running, missing])
    assert (result.ids, result.busy, result.unknown) == ([failed], [running], [missing])
    assert not result.complete
    assert db.row(running)["locked_by"] == "host:elsewhere pid:1"  # a running job is left alone

    out = cli(db, "retry", str(running), str(missing))
    assert out.exit_code == 1
    assert f"no job with id {missing}" in out.stderr
    assert f"skipped job {running}: a worker is running it now" in out.stderr and "--force" in out.stderr

    forced = cli(db, "retry", "--force", str(running))
    assert forced.exit_code == 0, forced.output
    assert db.row(running)["locked_by"] is None

    with pytest.raises(delayed.admin.JobNotFoundError, match=f"no job with id {missing}"):
        delayed.admin.get(missing)
    out = cli(db, "show", str(missing))
    assert out.exit_code == 1 and f"no job with id {missing}" in out.stderr
    out = cli(db, "show", "abc")
    assert out.exit_code == 2 and "a job id is a whole number, got 'abc'" in out.stderr

    gone = delayed.admin.discard([failed, missing])
    assert (gone.ids, gone.unknown) == ([failed], [missing])
    assert db.row(failed) is None


def test_discard_asks_and_refuses_without_a_terminal(db) -> None:
    ids = fail_for_real(count=2)
    refused = cli(db, "discard", str(ids[0]))
    assert refused.exit_code == 2
    assert "stdin is not a terminal; pass --yes" in refused.stderr
    assert db.row(ids[0]) is not None

    done = cli(db, "discard", "--yes", *map(str, ids))
    assert done.exit_code == 0, done.output
    assert f"Discarded 2 job(s): {ids[0]}, {ids[1]}" in done.stdout
    assert db.count() == 0


def test_retry_all_failed_of_one_queue(db) -> None:
    mail = fail_for_real("mail", 2)
    sms = fail_for_real("sms", 1)
    out = cli(db, "retry", "--all-failed", "--queue", "mail")
    assert out.exit_code == 0, out.output
    assert f"Retried 2 job(s): {mail[0]}, {mail[1]}" in out.stdout
    assert [r["failed_at"] is None for r in db.rows()] == [True, True, False]
    result = delayed.admin.retry_all_failed()
    assert result.ids == sms
    assert delayed.admin.list_jobs(failed=True) == []
    usage = cli(db, "retry", "--all-failed", "1")
    assert usage.exit_code == 2 and "not both" in usage.stderr
    usage = cli(db, "retry")
    assert usage.exit_code == 2 and "--all-failed" in usage.stderr


def test_unlock_stale_clears_only_expired_locks(db) -> None:
    config = get_config()
    stale, fresh, overdue = (Noop.perform_later(i) for i in range(3))
    now = utcnow()
    db.update(stale, locked_at=now - timedelta(seconds=config.lock_timeout + 60), locked_by="host:dead pid:1")
    db.update(fresh, locked_at=now, locked_by="host:alive pid:2")
    # Past max_run_time but inside the lock timeout: may still be running, so left alone.
    db.update(overdue, locked_at=now - timedelta(seconds=config.max_run_time + 5), locked_by="host:x pid:3")

    out = cli(db, "unlock", "--stale")
    assert out.exit_code == 0, out.output
    assert f"Unlocked 1 job(s): {stale}" in out.stdout
    assert db.row(stale)["locked_by"] is None and db.row(stale)["attempts"] == 0
    assert db.row(fresh)["locked_by"] == "host:alive pid:2"
    assert db.row(overdue)["locked_by"] == "host:x pid:3"

    result = delayed.admin.unlock_stale(older_than=config.max_run_time)
    assert result.ids == [overdue]
    assert cli(db, "unlock").exit_code == 2  # --stale is required


def test_stats_counts_each_state(db) -> None:
    fail_for_real("mail", 1)
    ready = Noop.set(queue="mail").perform_later(1)
    future = Noop.set(queue="mail", wait=3600).perform_later(2)
    locked = Noop.set(queue="mail").perform_later(3)
    erroring = Noop.set(queue="mail", wait=3600).perform_later(4)
    db.update(locked, locked_at=utcnow(), locked_by="host:w pid:1")
    db.update(erroring, attempts=2)
    Noop.set(queue="other", priority="reporting").perform_later(5)

    groups = {(g.queue, g.priority): g for g in delayed.admin.stats()}
    mail = groups[("mail", "user_visible")]
    assert mail.as_dict() == {
        "queue": "mail",
        "priority": "user_visible",
        "total": 5,
        "ready": 1,
        "future": 2,
        "locked": 1,
        "erroring": 1,
        "failed": 1,
        "max_age": mail.max_age,
    }
    assert 0 <= mail.max_age < 3600  # the ready job was enqueued during this test
    assert (groups[("other", "reporting")].total, groups[("other", "reporting")].ready) == (1, 1)
    assert ready and future

    out = cli(db, "stats")
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    headers = "queue priority total ready future locked erroring failed oldest_ready"
    assert lines[0].split() == headers.split()
    assert lines[1].split()[:8] == ["mail", "user_visible", "5", "1", "2", "1", "1", "1"]
    assert lines[-1].split()[:7] == ["all", "6", "2", "2", "1", "1", "1"]
    as_json = json.loads(cli(db, "stats", "--json", "--queue", "other").stdout)
    expected = groups[("other", "reporting")].as_dict()
    assert [{**g, "max_age": None} for g in as_json] == [{**expected, "max_age": None}]  # ages grow


def test_api_joins_the_callers_transaction(db) -> None:
    (job_id,) = fail_for_real()
    with db.engine.connect() as conn, conn.begin() as tx:
        assert delayed.admin.retry(job_id, bind=conn).ids == [job_id]
        assert delayed.admin.get(job_id, bind=conn).failed_at is None
        tx.rollback()
    assert db.row(job_id)["failed_at"] is not None  # rolled back with the caller's transaction
    with db.engine.connect() as conn:
        assert delayed.admin.discard([job_id], bind=conn).ids == [job_id]  # own transaction, committed
    assert db.row(job_id) is None


def test_retry_wakes_idle_workers_with_notify(pg) -> None:
    import psycopg

    (job_id,) = fail_for_real()
    url = delayed.db.normalize_url(pg.url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as listener:
        listener.execute('LISTEN "delayed_jobs"')
        delayed.admin.retry([job_id])
        notes = list(listener.notifies(timeout=30, stop_after=1))
    assert [n.channel for n in notes] == ["delayed_jobs"]
