"""Issue 4's "done means": jobs under the real supervisor reach a real StatsD socket.

A UDP listener on 127.0.0.1 receives, from one `delayed-supervisor` with a monitor child:
enqueue timings (from this process), run and reserve timings and error/failure counters (from
the worker child), the supervisor's spawn counter (from the master), and every monitor gauge
per queue and priority (from the monitor child).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import delayed
from delayed import statsd
from tests.jobs.sample_jobs import FailsFast, Remember
from tests.statsd_helpers import UdpListener

from .test_supervisor import Sup, sups  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

GAUGES = (
    "count",
    "future_count",
    "working_count",
    "workable_count",
    "erroring_count",
    "failed_count",
    "max_lock_age",
    "max_age",
    "alert_age_percent",
)


PRIORITY_NAMES = ("interactive", "user_visible", "eventual", "reporting")


def names(lines: list[str]) -> set[str]:
    return {line.split(":", 1)[0] for line in lines}


def test_supervised_jobs_and_monitor_reach_statsd(sups, pg, tmp_path: Path) -> None:  # noqa: F811
    with UdpListener() as udp:
        statsd_section = {"host": "127.0.0.1", "port": udp.port, "prefix": "app"}
        sup: Sup = sups(
            {"workers": 1, "max_claims": 3, "monitor": True},
            statsd=statsd_section,
            monitor={"interval": 1},
        )
        # Enqueue from "the web app": this process forwards its own enqueue timings.
        delayed.configure(database_url=pg.url)
        config = delayed.get_config()
        config = config.with_section("statsd", **statsd_section)
        statsd.install(config)
        try:
            for i in range(5):
                Remember.set(queue="mail", priority="interactive").perform_later(i)
            FailsFast.set(queue="mail").perform_later()  # max_attempts 1: error and failure
        finally:
            statsd.uninstall()

        sup.start()
        expected = {
            "app.job.enqueue",
            "app.job.run.mail.interactive",
            "app.job.run.mail.user_visible",
            "app.job.error.mail.user_visible",
            "app.job.failure.mail.user_visible",
            "app.worker.reserve_jobs",
            "app.supervisor.child_spawned",
            "app.monitor.run",
            # The zero baseline: every gauge for the default queue and each priority name.
            *(f"app.job.{gauge}.default.{name}" for gauge in GAUGES for name in PRIORITY_NAMES),
            # A queue outside the baseline reports the metrics its rows have (as in the Ruby
            # gem); the failed row stays, so these are there whenever the monitor looks.
            "app.job.count.mail.user_visible",
            "app.job.failed_count.mail.user_visible",
        }
        lines = udp.wait_for_lines(lambda got: expected <= names(got), timeout=120)
        sup.signal(signal.SIGTERM)
        assert sup.wait(90) == 0, sup.log()[-4000:]

    kinds = {line.split(":", 1)[0]: line.split("|")[1] for line in lines}
    assert kinds["app.job.run.mail.interactive"] == "ms"
    assert kinds["app.job.error.mail.user_visible"] == "c"
    assert kinds["app.job.failure.mail.user_visible"] == "c"
    assert kinds["app.job.count.default.interactive"] == "g"
    assert "app.job.failed_count.mail.user_visible:1|g" in lines
    assert kinds["app.supervisor.child_spawned"] == "c"
    runs = [line for line in lines if line.startswith("app.job.run.mail.interactive:")]
    assert len(runs) == 5
    # The failing job is the only row left, kept as failed.
    rows = pg.rows()
    assert [r["name"] for r in rows] == ["tests.fails_fast"]
    assert rows[0]["attempts"] == 1 and rows[0]["failed_at"] is not None
