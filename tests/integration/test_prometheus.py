"""Prometheus: the table's gauges (dashboard /metrics and `delayed monitor --prometheus`),
parsed with prometheus_client's own parser and checked against the rows; one query set for
many scrapers; and job counters written by a real supervisor's children, summed by the
exporter (multiprocess mode).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

import delayed
from delayed import prometheus
from delayed.config import build_config, get_config
from delayed.errors import ConfigError
from delayed.priority import bucket_name
from delayed.timeutil import utcnow
from delayed.web import create_app
from delayed.web.snapshot import SnapshotSource

from ..helpers import TESTS, delayed_cmd, render_toml, subprocess_env, wait_for, write_toml
from ..sample_jobs import FailsFast, QuickRetry, Sleep
from ..web_helpers import Later, fail_jobs, serve
from .test_supervisor import Sup, sups  # noqa: F401 - the fixture


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str, process: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=10)
            if response.status_code == 200:
                return response.text
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"the exporter exited: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no metrics at {url} within {timeout} s")
        time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


def test_standalone_exporter_from_delayed_monitor(db, tmp_path: Path) -> None:
    fill(db)
    port = _free_port()
    process = subprocess.Popen(
        delayed_cmd("monitor", "--prometheus", f"127.0.0.1:{port}", "--interval", "1h"),
        env=subprocess_env(db.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(TESTS),
    )
    try:
        check_gauges(scrape(f"http://127.0.0.1:{port}/metrics", process), db)
    finally:
        output = stop(process)
    assert f"Prometheus metrics on http://127.0.0.1:{port}/metrics" in output


def test_exporter_address_from_the_config_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'prom.sqlite3'}"
    delayed.schema.migrate(delayed.db.create_engine(url))
    port = _free_port()
    path = write_toml(
        tmp_path / "delayed.toml",
        {"delayed": {"database_url": url}, "prometheus": {"bind": f"127.0.0.1:{port}", "cache": "1s"}},
    )
    process = subprocess.Popen(
        delayed_cmd("monitor", "-c", str(path), "--interval", "1h"),
        env=subprocess_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=str(TESTS),
    )
    try:
        text = scrape(f"http://127.0.0.1:{port}/metrics", process)
        assert samples(text)["delayed_up"][()] == 1.0
    finally:
        stop(process)


def test_exporter_bad_input(tmp_path: Path) -> None:
    env = subprocess_env(f"sqlite:///{tmp_path / 'bad.sqlite3'}")
    for args, message in (
        (("--once", "--prometheus", "127.0.0.1:9"), "cannot be combined with --once"),
        (("--prometheus", "localhost"), "expected 'host:port'"),
    ):
        result = subprocess.run(
            delayed_cmd("monitor", *args), env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            delayed_cmd("monitor", "--prometheus", f"127.0.0.1:{port}"),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2 and f"cannot serve Prometheus metrics on 127.0.0.1:{port}" in result.stderr


def test_prometheus_settings_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for body, message in (
        ({"buckets": [1, 0.5]}, "bucket bounds must increase"),
        ({"buckets": []}, "expected a list of increasing numbers"),
        ({"cache": "soon"}, "expected a duration"),
        ({"bind": "9187"}, "expected 'host:port'"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_config(write_toml(tmp_path / "p.toml", {"prometheus": body}), environ={})
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


@pytest.mark.slow
def test_supervisor_children_counters_reach_the_exporter(sups, pg, tmp_path: Path) -> None:  # noqa: F811
    """Worker children write job metrics; the monitor child serves them with the table's gauges
    ([supervisor] monitor = true and [prometheus] bind); `delayed monitor --prometheus` on the
    same host reads the same files."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"")  # a previous run's file: cleared at start
    port = _free_port()
    sup: Sup = sups(
        {"workers": 2, "max_claims": 1, "monitor": True},
        prometheus={"multiproc_dir": str(metrics_dir), "bind": f"127.0.0.1:{port}", "cache": "1s"},
    )
    delayed.configure(database_url=pg.url)
    for i in range(10):
        Sleep.set(queue="mail", priority="interactive").perform_later(0.5, token=f"t{i}")
    FailsFast.set(queue="mail").perform_later()
    FailsFast.set(queue="mail").perform_later()
    QuickRetry.set(queue="mail").perform_later(2)  # fails once, then succeeds
    sup.start()
    wait_for(lambda: len(pg.rows()) == 2 and all(r["failed_at"] for r in pg.rows()), timeout=120)
    files = sorted(p.name for p in metrics_dir.glob("*.db"))
    assert "counter_99999.db" not in files
    pids = {int(name.rsplit("_", 1)[1].removesuffix(".db")) for name in files}
    assert sup.pid not in pids  # only the children ran jobs
    assert len(pids) >= 2, files  # both workers counted (ten half-second jobs, one at a time each)
    try:
        text = wait_for(
            lambda: _metrics_when(f"http://127.0.0.1:{port}/metrics", "delayed_jobs_failed_total"), 60
        )
        got = samples(str(text))
        check_worker_metrics(got)
        assert (
            got["delayed_jobs"][(("priority", "user_visible"), ("queue", "mail"), ("state", "failed"))] == 2
        )

        # The standalone exporter on the same host reads the same files.
        other_port = _free_port()
        config_path = tmp_path / "exporter.toml"
        config_path.write_text(
            render_toml(
                {"delayed": {"database_url": pg.url}, "prometheus": {"multiproc_dir": str(metrics_dir)}}
            )
        )
        exporter = subprocess.Popen(
            delayed_cmd(
                "monitor",
                "-c",
                str(config_path),
                "--prometheus",
                f"127.0.0.1:{other_port}",
                "--interval",
                "1h",
            ),
            env=subprocess_env(None),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=str(TESTS),
        )
        try:
            check_worker_metrics(samples(scrape(f"http://127.0.0.1:{other_port}/metrics", exporter)))
        finally:
            stop(exporter)
    finally:
        sup.signal(signal.SIGTERM)
        assert sup.wait(90) == 0, sup.log()[-4000:]


def _metrics_when(url: str, name: str) -> str | None:
    try:
        text = httpx.get(url, timeout=10).text
    except httpx.TransportError:
        return None
    return text if name in text else None


def check_worker_metrics(got: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> None:
    def value(name: str, **labels: str) -> float:
        return got[name].get(tuple(sorted(labels.items())), 0.0)

    mail_i = {"queue": "mail", "priority": "interactive"}
    mail_u = {"queue": "mail", "priority": "user_visible"}
    assert value("delayed_jobs_performed_total", **mail_i) == 10
    assert value("delayed_jobs_performed_total", **mail_u) == 1  # QuickRetry's second run
    assert value("delayed_jobs_errored_total", **mail_u) == 3  # two FailsFast, one QuickRetry
    assert value("delayed_jobs_failed_total", **mail_u) == 2
    assert value("delayed_job_duration_seconds_count", outcome="success", **mail_i) == 10
    assert value("delayed_job_duration_seconds_count", outcome="error", **mail_u) == 3
    assert value("delayed_job_duration_seconds_sum", outcome="success", **mail_i) >= 10 * 0.5
    assert value("delayed_job_duration_seconds_bucket", le="0.25", outcome="success", **mail_i) == 0
    assert value("delayed_job_duration_seconds_bucket", le="+Inf", outcome="success", **mail_i) == 10
