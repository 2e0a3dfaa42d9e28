"""Keeps bench/ working: every scenario of ours runs tiny (`bench/run.py --smoke`).

Nothing here asserts a speed: only that each scenario ran to the end on real databases and
produced its figures (jobs drained, probes received, a claim plan). Peers are optional: a
peer that is not installed in any interpreter the harness tries is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"

pytestmark = pytest.mark.slow


def _reachable(url: str) -> bool:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.exists(), f"no result file; stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    data = json.loads(out.read_text())
    assert data["errors"] == {}, data["errors"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| scenario" in done.stdout  # the tables were printed
    return data


@pytest.fixture(scope="module")
def pg_up() -> None:
    if not _reachable("postgresql+psycopg://postgres@127.0.0.1:5432/postgres"):
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")


def test_our_scenarios_run_tiny(tmp_path: Path, pg_up: None) -> None:
    backends = ["sqlite"]
    if _reachable("mysql+pymysql://root@127.0.0.1:3306/mysql"):
        backends.insert(0, "mysql")
    data = _run(tmp_path, "--systems", "pydelayed", "--backends", ",".join(backends))
    results = data["results"]
    sizes = data["meta"]["sizes"]

    enqueue = results["enqueue"]["pydelayed"]
    assert enqueue["single_n"] == sizes["single"] and enqueue["single_rate"] > 0
    assert enqueue["bulk_n"] == sizes["jobs"] and enqueue["bulk_rate"] > 0

    (drain,) = results["drain"]["pydelayed"]
    assert drain["jobs"] == sizes["jobs"] and drain["failed"] == 0 and drain["rate"] > 0
    assert drain["rss_busy_mb"] > 0

    for batch in ("ceiling x1", "ceiling x10"):
        (ceiling,) = results["ceiling"][batch]
        assert ceiling["jobs"] == sizes["jobs"] and ceiling["rate"] > 0

    latency = results["latency"]["pydelayed"]
    assert latency["received"] == sizes["probes"]
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]
    assert latency["rss_idle_mb"] > 0

    (pickup,) = results["pickup"].values()
    assert pickup["median_ms"] > 0
    assert "delayed_jobs" in pickup["plan"] and "LockRows" in pickup["plan"]

    for backend in backends:
        other = results["other-backends"][backend]
        assert other["enqueue"]["bulk_rate"] > 0
        assert other["drain"]["jobs"] == sizes["jobs"] and other["drain"]["failed"] == 0


@pytest.mark.parametrize("peer", ["pgqueuer", "oban", "chancy", "procrastinate"])
def test_peer_drivers_run_tiny(tmp_path: Path, pg_up: None, peer: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from harness import find_python
    finally:
        sys.path.remove(str(ROOT / "bench"))
    if find_python(peer) is None:
        pytest.skip(f"{peer} is not installed in any interpreter bench/ tries (see bench/README.md)")
    data = _run(tmp_path, "--systems", peer, "--scenarios", "enqueue,drain,latency")
    results = data["results"]
    assert results["enqueue"][peer]["bulk_rate"] > 0
    (drain,) = results["drain"][peer]
    assert drain["jobs"] == data["meta"]["sizes"]["jobs"] and drain["failed"] == 0
    assert results["latency"][peer]["received"] == data["meta"]["sizes"]["probes"]
