"""The worker registry (issue 12) on PostgreSQL: what heartbeats cost a drain, how fast a rescue is.

- drain throughput, plain `delayed work` W x C, with the registry off (heartbeat_interval = 0),
  on at its default (10 s) and on at the test settings (1 s, timeout 5 s), alternating in
  each round; medians and the ratios to "off";
- rescue time: two supervisors ("hosts") on one database; host A runs `k` three-second jobs (host B as many)
  and is SIGKILLed whole (master and children); the figure is kill -> every one of those jobs
  done on host B. With the registry (heartbeat 1 s, worker_timeout 5 s) against the same kill
  without it, where the rows wait for the lock timeout (max_run_time 5 s + 30 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_jobs
import psutil
import scenarios
import sqlalchemy as sa
from harness import System, median, scratch_database
from registry import Context, scenario

import delayed
from delayed.db import create_engine

REGISTRY_OFF = (("DELAYED_HEARTBEAT_INTERVAL", "0"),)
FAST = (("DELAYED_HEARTBEAT_INTERVAL", "1"), ("DELAYED_WORKER_TIMEOUT", "5"))
NAP = 3.0  # seconds each job of the rescue scenario runs


def _drain_variants(ours: System) -> list[System]:
    plain = ours.variant("registry off", supervisor=False, extra_env=REGISTRY_OFF)
    return [
        plain,
        ours.variant("registry on (10 s)", supervisor=False, extra_env=()),
        ours.variant("registry on (1 s)", supervisor=False, extra_env=FAST),
    ]


def _toml(url: str, registry: bool, max_claims: int) -> str:
    liveness = "heartbeat_interval = 1\nworker_timeout = 5\n" if registry else "heartbeat_interval = 0\n"
    return (
        f'[delayed]\ndatabase_url = "{url}"\nrequire = ["bench_jobs"]\nsleep_delay = 0.2\n'
        f"max_run_time = 5\n{liveness}\n[supervisor]\nworkers = 1\nmax_claims = {max_claims}\n"
    )


def _kill_session(sid: int) -> None:
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            if os.getsid(proc.pid) == sid:
                os.kill(proc.pid, signal.SIGKILL)


def _count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(sql).scalar_one())


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting in the rescue scenario")
        time.sleep(0.05)


def rescue_time(ours: System, registry: bool, k: int, timeout: float) -> dict[str, Any]:
    """Seconds from the SIGKILL of host A's session to the last of its k jobs done on host B
    (each runs NAP seconds, and host B's own k jobs end before any rescue)."""
    with scratch_database("postgresql") as db, tempfile.TemporaryDirectory(prefix="pyd-rescue-") as tmp:
        ours.run_driver("setup", db.url)
        engine = create_engine(db.url, poolclass=sa.pool.NullPool)
        procs: list[subprocess.Popen[bytes]] = []
        try:

            def host(name: str) -> subprocess.Popen[bytes]:
                path = Path(tmp) / f"{name}.toml"
                path.write_text(_toml(db.url, registry, k))
                proc = subprocess.Popen(
                    [sys.executable, "-m", "delayed.supervisor", "-c", str(path)],
                    env=ours.env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
                procs.append(proc)
                return proc

            a = host("a")
            host("b")
            if registry:
                _wait(lambda: _count(engine, "SELECT count(*) FROM delayed_workers") == 2, timeout)
            else:
                time.sleep(4.0)  # both hosts' children are up and polling
            # 2k jobs: each host claims k (max_claims = k), then host A dies with its k running.
            with engine.begin() as conn:
                delayed.enqueue_many([bench_jobs.Nap.build(NAP) for _ in range(2 * k)], using=conn)
            locked = "SELECT count(*) FROM delayed_jobs WHERE locked_by IS NOT NULL"
            _wait(lambda: _count(engine, locked) == 2 * k, timeout)
            killed = time.monotonic()
            _kill_session(a.pid)
            _wait(lambda: _count(engine, "SELECT count(*) FROM delayed_jobs") == 0, timeout)
            return {"seconds": time.monotonic() - killed, "jobs": k, "registry": registry}
        finally:
            for proc in procs:
                _kill_session(proc.pid)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            engine.dispose()


@scenario("registry", order=60, default=False, title="worker registry: heartbeat cost and rescue time")
def registry_cost(ctx: Context) -> None:
    n = ctx.sizes.jobs
    rates: dict[str, list[float]] = {}
    for rnd in range(ctx.sizes.rounds):
        for system in _drain_variants(ctx.ours):
            r = ctx.measure(
                f"drain#{rnd + 1}",
                system.name,
                lambda s=system: scenarios.drain(s, "postgresql", n, ctx.W, ctx.C, ctx.timeout),
            )
            if r:
                ctx.report.append("registry-drain", system.name, r)
                rates.setdefault(system.name, []).append(r["rate"])
    medians = {name: median(values) for name, values in rates.items()}
    off = medians.get("registry off")
    for name in ("registry on (10 s)", "registry on (1 s)"):
        on = medians.get(name)
        ctx.report.row(
            f"drain W={ctx.W} x C={ctx.C}, {name} vs off",
            "jobs/s",
            True,
            {"pydelayed": on, "registry off": off},
        )
        if on and off:
            print(f"   {name}: {on:.0f} jobs/s vs off {off:.0f} jobs/s: ratio {on / off:.3f}", flush=True)
    k = 4
    with_registry = ctx.measure("rescue", "registry", lambda: rescue_time(ctx.ours, True, k, ctx.timeout))
    without = ctx.measure("rescue", "lock timeout", lambda: rescue_time(ctx.ours, False, k, ctx.timeout))
    ctx.report.put("registry-rescue", "registry", with_registry)
    ctx.report.put("registry-rescue", "lock timeout", without)
    ours_s = with_registry["seconds"] if with_registry else None
    theirs = without["seconds"] if without else None
    ctx.report.row(
        f"rescue: kill -> {k} jobs of the dead host done",
        "s",
        False,
        {"pydelayed": ours_s, "lock timeout": theirs},
    )
    if ours_s and theirs:
        print(
            f"   rescue {ours_s:.1f} s with the registry vs {theirs:.1f} s by lock timeout: "
            f"{theirs / ours_s:.1f}x sooner",
            flush=True,
        )
