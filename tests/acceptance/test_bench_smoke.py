"""Keeps bench/ working: every scenario runs tiny (`bench/run.py --smoke`) on real databases.

Nothing here asserts a speed: only that each scenario ran to the end and produced its figures
(jobs drained, probes received, ceilings, a claim plan, the scale points, the charts), and that
the soak lost no job and ran none twice. The peers run if bench/setup_peers.sh (or
BENCH_PEER_PYTHON) made them importable; a peer that is not is skipped, with the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "run.py"
PEERS = ["pgqueuer", "oban", "chancy", "procrastinate"]
OURS_SCENARIOS = "enqueue,drain,ceiling,latency,pickup,other-backends,scale"

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


def _run(out_dir: Path, *args: str) -> dict[str, Any]:
    out = out_dir / "result.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert out.exists(), f"no result file; stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    data = json.loads(out.read_text())
    assert data["errors"] == {}, data["errors"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| scenario" in done.stdout or "| t (s)" in done.stdout  # the tables were printed
    assert "issue 17 targets" in done.stdout
    return data


def _find_python(module: str) -> str | None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from harness import find_python
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return find_python(module)


@pytest.fixture(scope="module")
def pg_up() -> None:
    if not _reachable("postgresql+psycopg://postgres@127.0.0.1:5432/postgres"):
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is not reachable")


def test_run_lists_every_registered_scenario() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--list"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    ours = ["enqueue", "drain", "ceiling", "latency", "pickup", "other-backends", "scale", "soak"]
    assert [name for name in listed if name in ours] == ours  # in run order; others may sit between


def test_our_scenarios_run_tiny(tmp_path: Path, pg_up: None) -> None:
    backends = ["sqlite"]
    if _reachable("mysql+pymysql://root@127.0.0.1:3306/mysql"):
        backends.insert(0, "mysql")
    data = _run(
        tmp_path, "--systems", "pydelayed", "--scenarios", OURS_SCENARIOS, "--backends", ",".join(backends)
    )
    results = data["results"]
    sizes = data["meta"]["sizes"]

    enqueue = results["enqueue"]["pydelayed"]
    assert enqueue["single_n"] == sizes["single"] and enqueue["single_rate"] > 0
    assert enqueue["bulk_n"] == sizes["jobs"] and enqueue["bulk_rate"] > 0
    assert results["enqueue"]["ceiling insert"]["n"] == sizes["single"]
    assert results["enqueue"]["ceiling copy"]["n"] == sizes["jobs"]  # the bulk ceiling: as many rows

    for name in ("pydelayed", "pydelayed plain"):  # supervisor and plain `delayed work`, same run
        (drain,) = results["drain"][name]
        assert drain["jobs"] == sizes["jobs"] and drain["failed"] == 0 and drain["rate"] > 0
        assert drain["rss_busy_mb"] > 0 and drain["claims"] > 0
        assert drain["main_cpu_share"] >= 0
    assert results["drain"]["pydelayed"][0]["rss_busy_children_mb"] > 0

    for name in ("ceiling pg x50 (2x4)", "ceiling pg x10 (2x10)"):
        (ceiling,) = results["ceiling"][name]
        assert ceiling["jobs"] == sizes["jobs"] and ceiling["rate"] > 0 and ceiling["claims"] > 0

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
        assert other["ceiling"]["jobs"] == sizes["jobs"] and other["ceiling"]["claims"] > 0

    points = results["scale"]["pydelayed"]
    assert [p["processes"] for p in points] == sizes["scale"]
    assert all(p["jobs"] == sizes["scale_jobs"] and p["claims"] > 0 for p in points)

    goals = {line[0]: line for line in data["targets"]}
    assert goals["1. supervisor drain / plain `delayed work` (same W x C)"][1] != "not measured"
    assert goals["2. drain / raw PostgreSQL ceiling x50 (2x4)"][1] != "not measured"

    pytest.importorskip("matplotlib")
    pngs = sorted(Path(p).name for p in data["charts"])
    assert pngs == ["drain.png", "latency.png", "scale.png"]
    for png in data["charts"]:
        assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_soak_smoke_loses_nothing(tmp_path: Path, pg_up: None) -> None:
    """The 30-second soak (the CI version of the 10-minute one): correctness only, never speed."""
    data = _run(tmp_path, "--systems", "pydelayed", "--scenarios", "soak", "--soak-seconds", "30")
    soak = data["results"]["soak"]["pydelayed"]
    assert soak["enqueued"] > 0 and soak["ran"] == soak["enqueued"]
    assert soak["lost"] == 0 and soak["duplicates"] == 0
    assert soak["rows_left"] == 0 and soak["failed_rows"] == 0
    assert soak["failed_once"] == soak["fail_jobs"]  # each fail-once job failed once, then ran
    assert soak["load"]["kinds"]["later"] > 0 and soak["load"]["kinds"]["long"] > 0
    assert soak["correct"] is True
    assert soak["buckets"] and all(b["n"] > 0 and b["p99_ms"] >= b["p50_ms"] for b in soak["buckets"])
    assert len(soak["sizes"]) >= 3 and all(s["total_mb"] > 0 for s in soak["sizes"])
    if data.get("charts"):
        assert [Path(p).name for p in data["charts"]] == ["soak.png"]


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory: pytest.TempPathFactory, pg_up: None) -> dict[str, Any]:
    """One smoke run of every installed peer (enqueue, drain, latency), shared by the peer tests."""
    installed = [peer for peer in PEERS if _find_python(peer) is not None]
    if not installed:
        pytest.skip("no peer is installed in any interpreter bench/ tries (run bench/setup_peers.sh)")
    out = tmp_path_factory.mktemp("peers")
    return _run(out, "--systems", ",".join(installed), "--scenarios", "enqueue,drain,latency")


@pytest.mark.parametrize("peer", PEERS)
def test_peer_drivers_run_tiny(peer_run: dict[str, Any], peer: str) -> None:
    if peer not in peer_run["meta"]["systems"]:
        pytest.skip(f"{peer} is not installed in any interpreter bench/ tries (see bench/README.md)")
    results = peer_run["results"]
    assert results["enqueue"][peer]["bulk_rate"] > 0
    (drain,) = results["drain"][peer]
    assert drain["jobs"] == peer_run["meta"]["sizes"]["jobs"] and drain["failed"] == 0
    assert results["latency"][peer]["received"] == peer_run["meta"]["sizes"]["probes"]
    settings = peer_run["meta"]["settings"][peer]
    assert settings and settings["event_loop"] in ("uvloop", "asyncio")


def test_pgqueuer_runs_at_its_default_batch(peer_run: dict[str, Any]) -> None:
    """The fairness fix of issue 17: batch 10 (its default), cap 2 x batch for C = 10."""
    if "pgqueuer" not in peer_run["meta"]["systems"]:
        pytest.skip("pgqueuer is not installed in any interpreter bench/ tries (see bench/README.md)")
    settings = peer_run["meta"]["settings"]["pgqueuer"]
    assert settings["batch_size"] == 10 and settings["max_concurrent_tasks"] == 20
    assert settings["driver"] == "apg"
