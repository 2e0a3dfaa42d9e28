"""The scheduler's loop on a SQLite file: a database without the cron tables is one error line
and a retry, not a crash; once `migrate` has run it starts and enqueues; stop ends it."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.config import build_config, set_config
from delayed.db import create_engine, reset_engine
from delayed.recurring import Scheduler
from delayed.recurring.entries import _entry


class Beat(delayed.Job, name="tests.unit.cron.beat"):
    def perform(self) -> None:
        return None


def test_missing_tables_are_one_error_then_it_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'cron.sqlite3'}"
    config = build_config(environ={}, overrides={"database_url": url})
    set_config(config)
    beat = _entry(
        key="beat",
        schedule=None,
        every="1s",
        job="tests.unit.cron.beat",
        args=[],
        kwargs={},
        queue=None,
        priority=None,
        timezone="UTC",
        source="test",
    )
    scheduler = Scheduler(config, [beat])
    scheduler.retry_delay = 0.2  # 5 s in production
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    try:
        with caplog.at_level(logging.INFO, logger="delayed.cron"):
            thread.start()
            deadline = time.monotonic() + 10
            while "cannot read the cron tables" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.6)  # three more failed tries: still one line
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "has `delayed migrate` created them?" in errors[0].getMessage()
            engine = create_engine(url)
            schema.migrate(engine)
            deadline = time.monotonic() + 20
            while scheduler.enqueued < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert scheduler.enqueued >= 2
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM delayed_jobs")).scalar_one() >= 2
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1
    engine.dispose()
    reset_engine()
    set_config(build_config(environ={}))
