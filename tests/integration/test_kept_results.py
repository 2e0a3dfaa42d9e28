"""Kept results (keep_finished) on every database: kept out of pickup, listed, pruned."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

from click.testing import CliRunner

import delayed
from delayed import admin, schema
from delayed.cli import main
from delayed.config import get_config
from delayed.db import get_engine
from delayed.results import RESULT_LIMIT, prune
from delayed.timeutil import utcnow
from delayed.worker import Worker


class Kept(delayed.Job, name="tests.kept.kept"):
    keep_finished = "7d"

    def perform(self, kind: str) -> object:
        if kind == "json":
            return {"total": 3, "items": [1, 2]}
        if kind == "object":
            return {1, 2}  # a set: not JSON
        return "x" * (RESULT_LIMIT + 10)


class Brief(delayed.Job, name="tests.kept.brief"):
    keep_finished = 60

    def perform(self) -> int:
        return 1


class NotKept(delayed.Job, name="tests.kept.not_kept"):
    def perform(self) -> int:
        return 2


def test_a_kept_success_stays_with_its_result_and_is_never_picked_up_again(db) -> None:
    kept = Kept.perform_later("json")
    gone = NotKept.perform_later()
    assert Worker().work_off(10) == (2, 0)
    assert db.row(gone) is None, "without keep_finished a success is deleted, as before"
    row = db.row(kept)
    assert row is not None and row["finished_at"] is not None and row["locked_by"] is None
    assert row["result"] == '{"total":3,"items":[1,2]}' and row["failed_at"] is None
    assert Worker().work_off(10) == (0, 0), "a finished row is out of pickup"
    assert [r.id for r in admin.list_jobs(finished=True)] == [kept]
    assert admin.list_jobs(failed=False) == [], "live listings leave finished rows out"
    assert admin.get(kept).result == row["result"]


def test_a_value_that_is_not_json_is_kept_as_its_repr_and_an_oversized_one_not_at_all(db, caplog) -> None:
    repr_id, big_id = Kept.perform_later("object"), Kept.perform_later("big")
    with caplog.at_level(logging.WARNING, logger="delayed.worker"):
        assert Worker().work_off(2) == (2, 0)
    assert db.row(repr_id)["result"] == '"{1, 2}"'  # type: ignore[index]
    big = db.row(big_id)
    assert big is not None and big["finished_at"] is not None and big["result"] is None
    assert "returned set, which is not JSON" in caplog.text
    assert f"over the {RESULT_LIMIT} kept" in caplog.text


def test_the_setting_keeps_results_of_classes_without_their_own(db) -> None:
    job_id = NotKept.perform_later()
    config = get_config().replace(keep_finished=3600.0)
    assert Worker(config=config).work_off(1) == (1, 0)
    assert db.row(job_id)["result"] == "2"  # type: ignore[index]


def test_prune_deletes_expired_rows_per_class_keep_in_batches(db) -> None:
    long_kept, brief = Kept.perform_later("json"), Brief.perform_later()
    live = NotKept.set(wait=3600).perform_later()
    assert Worker().work_off(2) == (2, 0)
    table = schema.get_table(get_config().table_name)
    assert prune(get_engine(), table, get_config()) == 0, "nothing expired yet"
    an_hour_ago = utcnow() - timedelta(hours=1)
    for job_id in (long_kept, brief):
        db.update(job_id, finished_at=an_hour_ago)
    assert prune(get_engine(), table, get_config()) == 1
    assert db.row(brief) is None, "60 s keep: expired"
    assert db.row(long_kept) is not None, "7 d keep: still kept"
    assert db.row(live) is not None, "a live job is never pruned"


def test_jobs_list_finished_and_show_give_the_result(db) -> None:
    job_id = Kept.perform_later("json")
    Worker().work_off(1)
    listed = CliRunner().invoke(main, ["jobs", "list", "--finished", "--database-url", db.url])
    assert listed.exit_code == 0, listed.output
    header, line = listed.stdout.splitlines()[:2]
    assert header.split()[-2:] == ["finished_at", "result"]
    assert line.split()[0] == str(job_id) and '{"total":3,"items":[1,2]}' in line
    shown = CliRunner().invoke(main, ["jobs", "show", str(job_id), "--database-url", db.url])
    assert "state:       finished" in shown.stdout and "finished_at:" in shown.stdout
    assert shown.stdout.rstrip().endswith('{"total":3,"items":[1,2]}')
    as_json = CliRunner().invoke(main, ["jobs", "show", str(job_id), "--json", "--database-url", db.url])
    assert json.loads(as_json.stdout)["result"] == {"total": 3, "items": [1, 2]}
