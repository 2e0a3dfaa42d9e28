"""Bulk enqueue: every row lands whole and in order, whichever way its columns travel.

On PostgreSQL the handlers of a bulk insert travel as one string split by the server
(backends/postgres.py `_PACKED`), columns equal in every row as one value, the others as
arrays; these tests make rows that take each way and check what is stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import delayed
from delayed.backends import backend_for
from delayed.record import decode_handler
from delayed.timeutil import utcnow
from tests.jobs.sample_jobs import Remember

ODD_TEXT = ["plain", "line\nbreak", "record\x1eseparator", "unicode é ✓", "", 'quote " and \\']


def test_a_bulk_enqueue_stores_every_row_whole_and_in_order(db) -> None:
    requests = []
    for i in range(2600):  # over one pipelined statement on PostgreSQL
        job = Remember.set(priority=i % 3, queue="q" if i % 2 else "r", wait=i % 5 or None)
        requests.append(job.build([i, ODD_TEXT[i % len(ODD_TEXT)]]))
    ids = delayed.enqueue_many(requests)
    assert len(set(ids)) == 2600
    rows = {row["id"]: row for row in db.rows()}
    for i, (job_id, request) in enumerate(zip(ids, requests, strict=True)):
        row = rows[job_id]
        assert decode_handler(row["handler"])["args"] == [[i, ODD_TEXT[i % len(ODD_TEXT)]]]
        assert (row["priority"], row["queue"]) == (i % 3, "q" if i % 2 else "r")
        assert abs(row["run_at"] - request.run_at) < timedelta(milliseconds=1)


def raw_rows(handlers: list[str]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "priority": 0,
            "attempts": 0,
            "handler": handler,
            "run_at": now,
            "queue": None,
            "name": "raw",
            "created_at": now,
            "updated_at": now,
        }
        for handler in handlers
    ]


@pytest.mark.parametrize(
    "handlers",
    [["a", "b\x1ec", "d"], ["", "x"], ["only\x1e"], ["x", ""]],
    ids=["separator_inside", "empty_first", "separator_at_the_end", "empty_last"],
)
def test_raw_handlers_holding_the_separator_or_empty_are_stored_exactly(pg, handlers: list[str]) -> None:
    backend = backend_for(pg.engine, pg.table)
    ids = backend.insert_now(raw_rows(handlers))
    with pg.engine.begin() as conn:
        ids += backend.insert(conn, raw_rows(handlers))
    assert [pg.row(i)["handler"] for i in ids] == handlers * 2


@pytest.mark.parametrize("cursor_factory", [psycopg.Cursor, psycopg.ClientCursor], ids=["server", "client"])
def test_using_a_psycopg_connection_inserts_in_its_transaction_in_order(pg, cursor_factory: Any) -> None:
    conninfo = sa.make_url(pg.url).set(drivername="postgresql").render_as_string(hide_password=False)
    requests = [Remember.set(priority=i % 2).build(i, ODD_TEXT[i % len(ODD_TEXT)]) for i in range(30)]
    with psycopg.connect(conninfo, cursor_factory=cursor_factory) as conn:
        ids = delayed.enqueue_many(requests, using=conn)
        assert pg.count() == 0, "not before the caller commits"
        conn.commit()
    for i, job_id in enumerate(ids):
        row = pg.row(job_id)
        assert decode_handler(row["handler"])["args"] == [i, ODD_TEXT[i % len(ODD_TEXT)]]
        assert row["priority"] == i % 2
