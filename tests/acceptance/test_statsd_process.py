"""StatsD packets from a real worker process and from this process, on a real UDP socket."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from delayed import statsd
from tests.helpers import run_delayed, subprocess_env
from tests.jobs import observability_jobs, sample_jobs
from tests.statsd_helpers import UdpListener, write_toml

TIMING = r"\d+(\.\d+)?\|ms"


@pytest.fixture(autouse=True)
def _no_forwarder() -> Iterator[None]:
    statsd.uninstall()
    yield
    statsd.uninstall()


def _matching(lines: list[str], pattern: str) -> list[str]:
    return [line for line in lines if re.fullmatch(pattern, line)]


def test_worker_process_sends_timings_and_counters(db: Any, tmp_path: Path) -> None:
    sample_jobs.Noop.set(queue="mail.eu west", priority="interactive").perform_later(1)
    failing = sample_jobs.AlwaysFails.perform_later("boom")  # max_attempts 3
    db.update(failing, attempts=2)  # the next failure is its last: failure + error
    sample_jobs.FailsDefault.set(priority=25).perform_later()  # error (retried later)
    observability_jobs.Spawn.set(priority=40, queue="spawner").perform_later()  # enqueues from inside
    with UdpListener() as listener:
        path = write_toml(
            tmp_path / "delayed.toml",
            {
                "delayed": {"database_url": db.url, "require": ["sample_jobs", "observability_jobs"]},
                "statsd": {"host": "127.0.0.1", "port": listener.port},
            },
        )
        result = run_delayed("work", "-c", str(path), "--exit-on-complete", env=subprocess_env())
        assert result.returncode == 0, result.stderr
        expected = {
            "run": rf"delayed\.job\.run\.mail_eu_west\.interactive:{TIMING}",
            "spawn": rf"delayed\.job\.run\.spawner\.reporting:{TIMING}",
            "failure": r"delayed\.job\.failure\.default\.user_visible:1\|c",
            "error": r"delayed\.job\.error\.default\.user_visible:1\|c",
            "error_eventual": r"delayed\.job\.error\.default\.eventual:1\|c",
            "enqueue": rf"delayed\.job\.enqueue:{TIMING}",
            "enqueued": r"delayed\.job\.enqueued:1\|c",
            "reserve": rf"delayed\.worker\.reserve_jobs:{TIMING}",
        }
        lines = listener.wait_for_lines(lambda got: all(_matching(got, p) for p in expected.values()))
    # one failure, two errors, one run timing per job that ran (failed runs are timed too)
    assert len(_matching(lines, r"delayed\.job\.failure\..*")) == 1
    assert len(_matching(lines, r"delayed\.job\.error\..*")) == 2
    assert len(_matching(lines, r"delayed\.job\.run\..*")) == 4
    assert db.row(failing)["failed_at"] is not None
