"""The column lists the hand-written SQL shares (delayed.backends.base / .dedupe)."""

from __future__ import annotations

from dataclasses import fields

from delayed.backends.base import RECORD_COLUMNS
from delayed.backends.dedupe import INSERT_COLUMNS, OPTIONAL_COLUMNS
from delayed.record import JobRecord
from tests.jobs.sample_jobs import Noop


def test_record_columns_follow_job_record_fields() -> None:
    names = [c.strip() for c in RECORD_COLUMNS.split(",")]
    assert names == [f.name for f in fields(JobRecord)][: len(names)]
    assert names[-1] == "concurrency_limit"


def test_insert_columns_are_what_an_enqueued_row_carries() -> None:
    assert list(INSERT_COLUMNS) == list(Noop.build().row())
    assert set(OPTIONAL_COLUMNS) <= set(INSERT_COLUMNS)
