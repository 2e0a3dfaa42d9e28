"""Prometheus: the table's gauges (dashboard /metrics and `delayed monitor --prometheus`),
parsed with prometheus_client's own parser and checked against the rows; one query set for
many scrapers; and job counters written by a real supervisor's children, summed by the
exporter (multiprocess mode).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from delayed import prometheus
from delayed.config import build_config, get_config
from delayed.errors import ConfigError
from delayed.priority import bucket_name
from delayed.timeutil import utcnow
from delayed.web import create_app
from delayed.web.snapshot import SnapshotSource
from tests.helpers import write_toml
from tests.web_helpers import Later, fail_jobs, serve


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}} from an exposition text."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def expected_counts(db) -> dict[tuple[str, str, str], int]:
    """(queue, priority name, state) -> rows, classified here from the rows themselves."""
    config = get_config()
    now = utcnow()
    stale = now - timedelta(seconds=config.lock_timeout)
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in db.rows():
        if row["failed_at"] is not None:
            state = "failed"
        elif row["run_at"] > now:
            state = "scheduled"
        elif row["locked_at"] is not None and row["locked_at"] >= stale:
            state = "running"
        else:
            state = "ready"
        name = bucket_name(row["priority"], config.priority_names)
        counts[(row["queue"] or "", name, state)] += 1
    return dict(counts)


def fill(db) -> None:
    fail_jobs("mail", 2)
    old = Later.set(queue="default", priority="interactive").perform_later(1)
    db.update(old, run_at=utcnow() - timedelta(seconds=300))
    Later.set(queue="default", priority="interactive").perform_later(2)
    Later.set(queue="default", wait=3600).perform_later(3)
    running = Later.set(queue="reports", priority="reporting").perform_later(4)
    db.update(running, locked_at=utcnow() - timedelta(seconds=20), locked_by="host:a pid:1")
    Later.set(queue="reports", priority=-5).perform_later(5)  # negative: the first name


def check_gauges(text: str, db) -> None:
    got = samples(text)
    assert got["delayed_up"][()] == 1.0
    jobs = {
        (dict(labels)["queue"], dict(labels)["priority"], dict(labels)["state"]): value
        for labels, value in got["delayed_jobs"].items()
    }
    expected = expected_counts(db)
    for key, count in expected.items():
        assert jobs.get(key) == count, (key, jobs.get(key), count)
    for key, value in jobs.items():  # every other series (the zero baseline) is 0
        if key not in expected:
            assert value == 0, key
    age = got["delayed_oldest_job_age_seconds"][(("priority", "interactive"), ("queue", "default"))]
    assert 290 <= age <= 600
    lock_age = got["delayed_oldest_lock_age_seconds"][(("priority", "reporting"), ("queue", "reports"))]
    assert 15 <= lock_age <= 300
    ratio = got["delayed_alert_age_ratio"][(("priority", "interactive"), ("queue", "default"))]
    assert ratio == pytest.approx(age / 60.0)
    assert got["delayed_priority_alert_age_seconds"][(("priority", "interactive"),)] == 60.0
    assert got["delayed_priority_alert_run_time_seconds"][(("priority", "reporting"),)] == 600.0
    assert (
        got["delayed_jobs_erroring"][(("priority", "user_visible"), ("queue", "mail"))] == 0
    )  # failed, not live


def test_dashboard_metrics_match_the_table(db) -> None:
    fill(db)
    with serve(create_app(sample_interval=0)) as base:
        response = httpx.get(base + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    check_gauges(response.text, db)


def test_many_scrapers_cost_one_query_set(db) -> None:
    fill(db)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        source = SnapshotSource(get_config(), engine, max_age=30)
        registry = prometheus.build_registry(source, get_config())
        from prometheus_client import generate_latest

        results: list[bytes] = []
        threads = [
            threading.Thread(target=lambda: results.append(generate_latest(registry))) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # The same figures for everyone (only the age of the cached figures moves on).
        figures = {
            b"\n".join(line for line in text.splitlines() if not line.startswith(b"delayed_table_query_age"))
            for text in results
        }
        assert len(results) == 8 and len(figures) == 1
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 3, selects  # the monitor's failed, live and pending queries, once
        generate_latest(registry)
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def test_prometheus_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for body, message in (
        ({"buckets": [1, 0.5]}, "bucket bounds must increase"),
        ({"buckets": []}, "expected a list of increasing numbers"),
        ({"cache": "soon"}, "expected a duration"),
        ({"bind": "9187"}, "expected 'host:port'"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_config(write_toml(tmp_path / "p.toml", {"prometheus": body}), environ={})
    from_env = build_config(environ={"DELAYED_PROMETHEUS_BUCKETS": "0.5, 2,10"})
    assert from_env.section("prometheus").buckets == [0.5, 2.0, 10.0]
    with pytest.raises(ConfigError, match="DELAYED_PROMETHEUS_BUCKETS"):
        build_config(environ={"DELAYED_PROMETHEUS_BUCKETS": "fast"})
    config = build_config(
        write_toml(tmp_path / "p.toml", {"prometheus": {"multiproc_dir": str(tmp_path / "a")}}), environ={}
    )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="use one directory"):
        prometheus.install(config)


def test_install_refuses_a_client_imported_without_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # This test process imported prometheus_client long ago, without PROMETHEUS_MULTIPROC_DIR:
    # counting here would stay in this process's memory, so install says so and does nothing.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    config = build_config(
        write_toml(tmp_path / "p.toml", {"prometheus": {"multiproc_dir": str(tmp_path / "m")}}), environ={}
    )
    assert prometheus.install(config) is None
    assert "worker metrics are off: prometheus_client was imported before" in caplog.text
    assert "PROMETHEUS_MULTIPROC_DIR" not in __import__("os").environ
    assert prometheus.install(build_config(environ={})) is None  # not configured: nothing to do
