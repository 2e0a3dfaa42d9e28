"""Prometheus across processes: `delayed monitor --prometheus` (flag, [prometheus] bind, bad
input), and job counters written by a real supervisor's children, served by its monitor child
and by a standalone exporter reading the same directory.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import delayed
from tests.acceptance.test_supervisor import Sup, sups  # noqa: F401 - the fixture
from tests.helpers import TESTS, delayed_cmd, render_toml, subprocess_env, wait_for, write_toml
from tests.integration.test_prometheus import check_gauges, fill, samples
from tests.jobs.sample_jobs import FailsFast, QuickRetry, Sleep


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
