"""The benchmark harness: scratch databases, systems, worker processes, measurements.

Every scenario runs in its own scratch database (`bench_<random>` on PostgreSQL and MySQL,
a temporary file for SQLite), dropped afterwards. Workers are real processes; the harness
watches the jobs table from outside (a count every POLL seconds) and samples the workers'
RSS with psutil, so every system is measured the same way.

Drain rate = jobs left when the first job was seen done / (time the table was empty - that
moment): process start-up (imports, connecting) is left out for every system alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
POLL = 0.025  # seconds between remaining-count polls during a drain

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/mysql")


# ----------------------------------------------------------------------------- databases
@dataclass
class Scratch:
    """A scratch database: `url` for SQLAlchemy, `dsn` for libpq-style clients (PG only)."""

    backend: str
    url: str
    dsn: str


def _plain_dsn(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(backend: str = "postgresql") -> Iterator[Scratch]:
    """CREATE DATABASE bench_<random>, yield it, DROP it (never touches the shared `test` db)."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="pyd-bench-") as tmp:
            url = f"sqlite:///{tmp}/{name}.sqlite3"
            yield Scratch(backend, url, url)
        return
    admin_url = PG_ADMIN if backend == "postgresql" else MYSQL_ADMIN
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(admin_url).set(database=name)
    try:
        yield Scratch(backend, url.render_as_string(hide_password=False), _plain_dsn(url))
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


# ----------------------------------------------------------------------------- systems
def find_python(module: str) -> str | None:
    """The first interpreter that can import `module`: $BENCH_PEER_PYTHON, this one, the venv."""
    candidates = [
        os.environ.get("BENCH_PEER_PYTHON", ""),
        sys.executable,
        str(BENCH / ".venv" / "bin" / "python"),
        "/tmp/pyd-bench312/bin/python",
    ]
    for python in candidates:
        if python and Path(python).exists():
            probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True)
            if probe.returncode == 0:
                return python
    return None


@dataclass
class System:
    """One job system: how to drive it and how to read its progress from the database."""

    name: str  # the column it is reported under
    python: str
    driver: Path
    progress_sql: str  # one row: (jobs not yet done, jobs claimed/running and not done)
    failed_sql: str | None = None  # jobs that ended badly (must stay 0)
    supervisor: bool = False  # ours: run the supervisor instead of W `delayed work` processes
    ours: bool = False

    def run_driver(self, *args: str, timeout: float = 600) -> str:
        cmd = [self.python, str(self.driver), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env())
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout

    def env(self, udp_port: int | None = None) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(BENCH), str(PEERS)] if self.ours else [str(PEERS)]
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        if udp_port is not None:
            env["BENCH_UDP_PORT"] = str(udp_port)
        return env

    def settings(self, threads: int) -> dict[str, Any]:
        """The settings its workers run with (each driver's `settings` command), for the JSON."""
        if self.ours:
            mode = "delayed-supervisor" if self.supervisor else "delayed work"
            return {"mode": mode, "max_claims": threads, "job": "synchronous perform in threads"}
        return json.loads(self.run_driver("settings", "-", "--concurrency", str(threads)))

    def variant(self, name: str, **changes: Any) -> System:
        """The same system under another name with other settings (e.g. ours without supervisor)."""
        return replace(self, name=name, **changes)

    def worker_commands(
        self,
        db: Scratch,
        workers: int,
        threads: int,
        exit_on_complete: bool,
        hosts: int = 1,
        require: str = "bench_jobs",
    ) -> list[list[str]]:
        """The processes to start: W peer workers, W `delayed work`, or `hosts` supervisors.

        `hosts` > 1 starts that many supervisors on the same database, each with its share of
        the W children, standing in for separate machines (ours only). Until the worker
        registry exists they know nothing of each other, so this only adds claim contention;
        the scale scenario exposes it as `--scale-hosts` for when it does.
        """
        if not self.ours:
            return [[self.python, str(self.driver), "work", db.dsn, "--concurrency", str(threads)]] * workers
        if self.supervisor:
            shares = [workers // hosts + (1 if i < workers % hosts else 0) for i in range(hosts)]
            return [
                [
                    sys.executable,
                    "-m",
                    "delayed.supervisor",
                    "-c",
                    supervisor_config(db, share, threads, require),
                ]
                for share in shares
                if share
            ]
        cmd = [
            sys.executable,
            "-m",
            "delayed.cli",
            "work",
            "--database-url",
            db.url,
            "--require",
            require,
            "--max-claims",
            str(threads),
        ]
        if exit_on_complete:
            cmd.append("--exit-on-complete")
        return [cmd] * workers

    def ready_marker(self) -> str:
        if self.supervisor:
            return "all children are running"
        return "Starting worker" if self.ours else "READY"


def supervisor_config(db: Scratch, workers: int, threads: int, require: str = "bench_jobs") -> str:
    """A TOML file for `delayed-supervisor -c`: W children of C threads on the scratch database."""
    fd, path = tempfile.mkstemp(prefix="pyd-bench-", suffix=".toml")
    with os.fdopen(fd, "w") as handle:
        handle.write(
            f'[delayed]\ndatabase_url = "{db.url}"\nrequire = ["{require}"]\nmax_claims = {threads}\n'
            f"\n[supervisor]\nworkers = {workers}\n"
        )
    return path


OURS_PROGRESS = "SELECT count(*), count(locked_at) FROM delayed_jobs"

SPECS = {
    # name: (module to import, driver, progress SQL (left, claimed), failed SQL)
    "pydelayed": (
        "delayed",
        "ours_driver.py",
        OURS_PROGRESS,
        "SELECT count(*) FROM delayed_jobs WHERE failed_at IS NOT NULL",
    ),
    "pgqueuer": (
        "pgqueuer",
        "peers/pgqueuer_driver.py",
        "SELECT count(*), count(*) FILTER (WHERE status = 'picked') FROM pgqueuer",
        "SELECT count(*) FROM pgqueuer_log WHERE status IN ('exception', 'failed')",
    ),
    "oban": (
        "oban",
        "peers/oban_driver.py",
        "SELECT count(*) FILTER (WHERE state NOT IN ('completed', 'discarded', 'cancelled')), "
        "count(*) FILTER (WHERE state = 'executing') FROM oban_jobs",
        "SELECT count(*) FROM oban_jobs WHERE state IN ('discarded', 'retryable')",
    ),
    "chancy": (
        "chancy",
        "peers/chancy_driver.py",
        "SELECT count(*) FILTER (WHERE state NOT IN ('succeeded', 'failed')), "
        "count(*) FILTER (WHERE state = 'running') FROM chancy_jobs",
        "SELECT count(*) FROM chancy_jobs WHERE state IN ('failed', 'retrying')",
    ),
    "procrastinate": (
        "procrastinate",
        "peers/procrastinate_driver.py",
        "SELECT count(*) FILTER (WHERE status IN ('todo', 'doing')), "
        "count(*) FILTER (WHERE status = 'doing') FROM procrastinate_jobs",
        "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'",
    ),
}


def make_systems(names: list[str], supervisor: bool = False) -> tuple[list[System], dict[str, str]]:
    """The systems that can run here, and why the others cannot."""
    systems: list[System] = []
    missing: dict[str, str] = {}
    for name in names:
        if name not in SPECS:
            raise SystemExit(f"unknown system {name!r}: choose from {', '.join(SPECS)}")
        module, driver, progress, failed = SPECS[name]
        ours = name == "pydelayed"
        python = sys.executable if ours else find_python(module)
        if python is None:
            missing[name] = (
                f"`import {module}` fails in every interpreter tried (set BENCH_PEER_PYTHON, or run "
                "bench/setup_peers.sh)"
            )
            continue
        systems.append(System(name, python, BENCH / driver, progress, failed, supervisor and ours, ours))
    return systems, missing


# ----------------------------------------------------------------------------- processes
@dataclass
class Workers:
    """Worker processes with their output in files (no pipe can fill up and block them)."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    started: float = 0.0
    tmp: tempfile.TemporaryDirectory[str] | None = None

    @classmethod
    def spawn(cls, commands: list[list[str]], env: dict[str, str]) -> Workers:
        self = cls(tmp=tempfile.TemporaryDirectory(prefix="pyd-bench-w-"))
        self.started = time.perf_counter()
        for i, cmd in enumerate(commands):
            log = Path(self.tmp.name) / f"worker{i}.log"
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                )
            self.logs.append(log)
        return self

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for log in self.logs)

    def wait_ready(self, marker: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(marker in log.read_text(errors="replace") for log in self.logs):
                return
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a worker exited early ({proc.returncode}):\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"workers not ready after {timeout:.0f} s:\n{self.output()}")

    def rss_mb(self) -> dict[str, Any]:
        """RSS of each worker process (a supervisor: the master and each child separately)."""
        mains: list[float] = []
        children: list[float] = []
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(proc.pid)
                mains.append(p.memory_info().rss / 2**20)
                for child in p.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        children.append(child.memory_info().rss / 2**20)
        return {"main": mains, "children": children}

    def json_lines(self) -> list[dict[str, Any]]:
        """Every line of the workers' output that is a JSON object (e.g. ceiling.py's counters)."""
        found = []
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        found.append(json.loads(line))
        return found

    def wait_exit(self, timeout: float) -> bool:
        """Wait for every process to exit by itself; False if some are still running."""
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.alive()

    def alive(self) -> bool:
        return any(proc.poll() is None for proc in self.procs)

    def stop(self, timeout: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None


# ----------------------------------------------------------------------------- measuring
def count(engine: sa.Engine, sql: str) -> int:
    """The first column of the first row of `sql` (a progress query's first column: jobs left)."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(sql).first()[0])


CpuSample = dict[int, tuple[float, bool]]  # pid -> (CPU seconds, is a started process)


def cpu_seconds(workers: Workers) -> CpuSample:
    """pid -> (user + system CPU seconds, is a main process) for every worker and child."""
    seen: CpuSample = {}
    for proc in workers.procs:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(proc.pid)
            t = p.cpu_times()
            seen[p.pid] = (t.user + t.system, True)
            for child in p.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    seen[child.pid] = (c.user + c.system, False)
    return seen


def cpu_shares(before: CpuSample, after: CpuSample, span: float) -> dict[str, float]:
    """CPU used between two cpu_seconds() samples, as a share of one core over `span` seconds.

    `main` is the busiest of the processes the harness started (for ours under the supervisor:
    the master), `children` the sum over their children alive at both samples.
    """
    mains = [after[pid][0] - before[pid][0] for pid in after if pid in before and after[pid][1]]
    children = sum(after[pid][0] - before[pid][0] for pid in after if pid in before and not after[pid][1])
    span = max(span, 1e-9)
    return {
        "main_cpu_share": max(mains, default=0.0) / span,
        "main_cpu_s": max(mains, default=0.0),
        "children_cpu_share": children / span,
    }


CLAIM_INDEX = "idx_delayed_jobs_live"
CLAIMS_SQL = (
    "SELECT coalesce(sum(idx_scan), 0), count(*) FROM pg_stat_user_indexes "
    f"WHERE relname = 'delayed_jobs' AND indexrelname = '{CLAIM_INDEX}'"
)


def claim_scans(engine: sa.Engine) -> int | None:
    """Scans of pydelayed's pickup index so far: one per claim statement (PostgreSQL only).

    Every claim starts with one index scan of the pickup index (its plan: `Index Scan using
    idx_delayed_jobs_live` under LockRows); nothing else in a drain reads that index (the
    harness counts with a plain count(*), deletes go by primary key). PostgreSQL publishes a
    backend's counters when it goes idle (at most once a second) and when it exits, so read this
    after the workers have stopped. None when the index is not there (renamed: update CLAIM_INDEX).
    """
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        scans, found = conn.exec_driver_sql(CLAIMS_SQL).one()
        conn.rollback()
    return int(scans) if found else None


def settled_claim_scans(engine: sa.Engine, wait: float = 3.0) -> int | None:
    """claim_scans() once it stops changing (exited backends publish their counters late)."""
    last = claim_scans(engine)
    deadline = time.monotonic() + wait
    while last is not None and time.monotonic() < deadline:
        time.sleep(0.2)
        now = claim_scans(engine)
        if now == last:
            break
        last = now
    return last


def watch_drain(engine: sa.Engine, sql: str, workers: Workers, timeout: float) -> dict[str, Any]:
    """Poll (left, claimed) until nothing is left; rate over the span after the first job was done.

    Also measured over that span: rows claimed but not yet done (sampled every poll: for no-op
    jobs nearly all of them wait for a thread or for their DELETE, i.e. locked-but-idle), the CPU
    share of the started processes and of their children (psutil), the RSS of each.
    """
    initial = None
    first_t = first_left = None
    busy_main: list[float] = []
    busy_children: list[float] = []
    locked: list[int] = []
    progress: list[tuple[float, int]] = []
    cpu_before: CpuSample = {}
    cpu_last: CpuSample = {}  # latest sample per pid: a `--exit-on-complete` worker may be gone at the end
    next_rss = 0.0
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while True:
            now = time.perf_counter()
            row = conn.exec_driver_sql(sql).first()
            conn.rollback()
            left = int(row[0])
            claimed = int(row[1]) if len(row) > 1 and row[1] is not None else None
            progress.append((now - workers.started, left))
            if initial is None:
                initial = left
            if first_t is None and left < initial:
                first_t, first_left = now, left
                cpu_before = cpu_seconds(workers)
            if first_t is not None and claimed is not None and left:
                locked.append(claimed)
            if left == 0:
                done_t = now
                cpu_after = {**cpu_last, **cpu_seconds(workers)}
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"drain not finished after {timeout:.0f} s ({left} left):\n{workers.output()}"
                )
            if now >= next_rss:
                rss = workers.rss_mb()
                busy_main.extend(rss["main"])
                busy_children.extend(rss["children"])
                if first_t is not None:
                    cpu_last.update(cpu_seconds(workers))
                next_rss = now + 0.25
            if not workers.alive():
                raise RuntimeError(f"workers exited with {left} jobs left:\n{workers.output()}")
            time.sleep(POLL)
    if not busy_children or not busy_main:  # a tiny drain can end before the children were sampled
        rss = workers.rss_mb()
        busy_main.extend(rss["main"])
        busy_children.extend(rss["children"])
    wall = done_t - workers.started
    if first_t is None or not first_left:  # all done between two polls (tiny runs): wall clock
        first_t, first_left = workers.started, initial or 0
    span = max(done_t - first_t, 1e-9)
    return {
        "jobs": initial,
        "rate": first_left / span,
        "span_s": span,
        "wall_s": wall,
        "wall_rate": (initial or 0) / wall,
        "rss_busy_mb": max(busy_main, default=None),
        "rss_busy_children_mb": max(busy_children, default=None),
        "locked_mean": statistics.fmean(locked) if locked else None,
        "locked_max": max(locked, default=None),
        **cpu_shares(cpu_before, cpu_after, span),
        "progress": _thin(progress, 200),
    }


def _thin(points: list[tuple[float, int]], keep: int) -> list[tuple[float, int]]:
    """At most `keep` points, evenly picked, the last one always kept (for charts)."""
    if len(points) <= keep:
        return [(round(t, 3), n) for t, n in points]
    step = len(points) / keep
    picked = [points[int(i * step)] for i in range(keep)]
    if picked[-1] != points[-1]:
        picked.append(points[-1])
    return [(round(t, 3), n) for t, n in picked]


class ProbeCollector:
    """A UDP socket that gathers probe datagrams: index -> (t_enqueue, t_start)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen: dict[int, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(256)
            except TimeoutError:
                continue
            index, t_enqueue, t_start = data.decode().split()
            self.seen.setdefault(int(index), (float(t_enqueue), float(t_start)))

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
