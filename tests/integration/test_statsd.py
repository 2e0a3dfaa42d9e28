"""StatsD packets from a real worker process and from this process, on a real UDP socket."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import delayed
from delayed import events, statsd
from delayed.config import build_config
from delayed.statsd import metric_part
from tests.jobs import sample_jobs
from tests.statsd_helpers import UdpListener, write_toml

TIMING = r"\d+(\.\d+)?\|ms"


@pytest.fixture(autouse=True)
def _no_forwarder() -> Iterator[None]:
    statsd.uninstall()
    yield
    statsd.uninstall()


def _matching(lines: list[str], pattern: str) -> list[str]:
    return [line for line in lines if re.fullmatch(pattern, line)]


def test_metric_parts() -> None:
    assert metric_part("mail.eu west") == "mail_eu_west"
    assert metric_part("a/b:c|d@e") == "a_b_c_d_e"
    assert metric_part("ok-name_1") == "ok-name_1"
    assert metric_part(None) == "_none"
    assert metric_part("") == "_empty"


def test_in_process_enqueue_gauges_supervisor_counters(db: Any) -> None:
    with UdpListener() as listener:
        config = build_config(
            environ={},
            overrides={"database_url": db.url},
        )
        config = config.with_section(
            "statsd",
            **{
                "host": "127.0.0.1",
                "port": listener.port,
                "prefix": "",
                "sample_rate": 1.0,
            },
        )
        forwarder = statsd.install(config)
        assert forwarder is not None
        assert statsd.install(config) is forwarder  # idempotent
        delayed.enqueue_many([sample_jobs.Noop.build(1), sample_jobs.Noop.build(2)])
        for name in statsd.SUPERVISOR_COUNTERS:
            events.emit(name, pid=123)
        events.emit("delayed.job.max_age", queue="a b", priority="eventual", value=12.5, table="delayed_jobs")
        lines = listener.wait_for_lines(
            lambda got: (
                {
                    "job.enqueued:2|c",
                    "supervisor.child_spawned:1|c",
                    "supervisor.child_exited:1|c",
                    "supervisor.job_killed:1|c",
                    "job.max_age.a_b.eventual:12.5|g",
                }
                <= set(got)
                and bool(_matching(got, rf"job\.enqueue:{TIMING}"))
            )
        )
    assert len(_matching(lines, rf"job\.enqueue:{TIMING}")) == 1  # one timing per batch


def test_install_follows_the_settings() -> None:
    config = build_config(environ={})
    assert statsd.install(config) is None  # no host: disabled, nothing subscribed
    assert not events.has_listeners("delayed.job.run")
    config = config.with_section(
        "statsd", **{"host": "127.0.0.1", "port": 9, "prefix": "a", "sample_rate": 1.0}
    )
    first = statsd.install(config)
    assert first is not None and events.has_listeners("delayed.job.run")
    config = config.with_section(
        "statsd", **{"host": "127.0.0.1", "port": 9, "prefix": "b", "sample_rate": 1.0}
    )
    second = statsd.install(config)
    assert second is not None and second is not first
    assert len(events._listeners("delayed.job.run")) == 1  # the first one was unsubscribed
    statsd.uninstall()
    assert not events.has_listeners("delayed.job.run")


def test_sample_rate_marks_job_metrics_only() -> None:
    with UdpListener() as listener:
        config = build_config(environ={})
        config = config.with_section(
            "statsd",
            **{
                "host": "127.0.0.1",
                "port": listener.port,
                "prefix": "s",
                "sample_rate": 0.999,
            },
        )
        statsd.install(config)
        # With a rate below 1 the client drops ~0.1 %; send until one of each arrives.
        for _ in range(50):
            events.emit("delayed.job.error", queue="q", priority=0)
            events.emit("delayed.job.count", queue="q", priority="interactive", value=3)
        lines = listener.wait_for_lines(
            lambda got: (
                bool(_matching(got, r"s\.job\.error\.q\.interactive:1\|c\|@0\.999"))
                and "s.job.count.q.interactive:3|g" in got
            )
        )
    assert not _matching(lines, r".*\|g\|@.*")  # gauges are never sampled


def test_no_listener_never_breaks_a_job(db: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Packets to a closed port (ICMP refusals) and an unresolvable host: jobs still run."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()
    config = build_config(environ={}, overrides={"database_url": db.url})
    config = config.with_section(
        "statsd", **{"host": "127.0.0.1", "port": closed_port, "prefix": "x", "sample_rate": 1.0}
    )
    statsd.install(config)
    ids = [sample_jobs.Noop.perform_later(i) for i in range(5)]
    assert delayed.Worker(config=config).work_off() == (5, 0)
    assert all(db.row(i) is None for i in ids)

    config = config.with_section(
        "statsd",
        **{
            "host": "no-such-host.invalid",
            "port": 8125,
            "prefix": "x",
            "sample_rate": 1.0,
        },
    )
    with caplog.at_level(logging.ERROR, logger="delayed.statsd"):
        statsd.install(config)
        ids = [sample_jobs.Noop.perform_later(i) for i in range(3)]
        assert delayed.Worker(config=config).work_off() == (3, 0)
    assert all(db.row(i) is None for i in ids)
    assert "no-such-host.invalid" in caplog.text and "StatsD disabled" in caplog.text


def test_statsd_section_is_checked(tmp_path: Path) -> None:
    from delayed.errors import ConfigError

    path = write_toml(tmp_path / "s.toml", {"statsd": {"host": "h", "port": "x"}})
    with pytest.raises(ConfigError, match=r"\[statsd\] port"):
        build_config(path, environ={})
    path = write_toml(tmp_path / "r.toml", {"statsd": {"host": "h", "sample_rate": 2}})
    with pytest.raises(ConfigError, match=r"\[statsd\] sample_rate"):
        build_config(path, environ={})
    path = write_toml(tmp_path / "k.toml", {"statsd": {"hots": "h"}})
    with pytest.raises(ConfigError, match="unknown key 'hots'"):
        build_config(path, environ={})
