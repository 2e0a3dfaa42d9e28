"""`delayed work`'s signal handler: it only records and stops; the loop logs what it recorded."""

from __future__ import annotations

import logging
import signal

import pytest

from delayed.config import build_config
from delayed.worker import Worker

from .conftest import SqliteJobs


def test_the_handler_records_and_stops_and_the_drain_logs(
    jobs: SqliteJobs, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(config=build_config(None, environ={"DELAYED_DATABASE_URL": jobs.url}))
    with caplog.at_level(logging.DEBUG):
        worker._on_signal(signal.SIGTERM, None)
        assert worker._stop.is_set() and not worker._force.is_set()
        worker._on_signal(signal.SIGINT, None)
        assert worker._force.is_set(), "a second signal forces"
    assert caplog.records == [], "nothing is logged inside the handler"
    with caplog.at_level(logging.INFO, logger="delayed"):
        worker._log_signals()
        worker._log_signals()  # each recorded signal is logged once
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "SIGTERM received: finishing running jobs, then exiting"),
        ("WARNING", "Second SIGINT: releasing running jobs and exiting"),
    ]


def test_a_signal_during_a_run_is_logged_by_the_run(
    jobs: SqliteJobs, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(config=build_config(None, environ={"DELAYED_DATABASE_URL": jobs.url}))
    worker._on_signal(signal.SIGTERM, None)  # lands just before run(): it must still stop it
    with caplog.at_level(logging.INFO, logger="delayed"):
        assert worker.run(install_signals=False) == 0
    assert "SIGTERM received: finishing running jobs, then exiting" in caplog.text
