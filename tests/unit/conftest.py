"""The unit tier: in-process and fast; a database, where one is needed, is SQLite in tmp_path."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from delayed import events, schema
from delayed.db import create_engine
from delayed.timeutil import utcnow


class SqliteJobs:
    """A migrated SQLite file with helpers to put locked rows in and read them back."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        self.engine = create_engine(self.url)
        schema.migrate(self.engine)
        self.table = schema.get_table()

    def add(self, locked_by: str | None = None, name: str = "UnitJob", attempts: int = 0) -> int:
        now = utcnow()
        values: dict[str, Any] = {
            "priority": 0,
            "attempts": attempts,
            "handler": json.dumps({"job": name, "args": [], "kwargs": {}}),
            "name": name,
            "run_at": now - timedelta(seconds=5),
            "locked_by": locked_by,
            "locked_at": now if locked_by else None,
            "created_at": now,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            return int(conn.execute(self.table.insert().values(**values)).inserted_primary_key[0])

    def row(self, job_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.table).where(self.table.c.id == job_id)).mappings().one()
        return dict(row)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[SqliteJobs]:
    store = SqliteJobs(tmp_path / "jobs.sqlite3")
    yield store
    store.engine.dispose()


@pytest.fixture
def sup_events() -> Iterator[list[events.Event]]:
    """Every delayed.supervisor.* event emitted during the test, in order."""
    seen: list[events.Event] = []
    unsubscribe = events.subscribe(re.compile(r"^delayed\.supervisor\."), seen.append)
    yield seen
    unsubscribe()
