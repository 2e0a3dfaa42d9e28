"""Drain thousands of jobs through `delayed-supervisor` while SIGKILLing its children at random.

    python bench/supervisor_chaos.py --jobs 5000 --workers 2 --max-claims 5 --kill-every 1.5

Makes a fresh PostgreSQL database (dropped at the end), enqueues `--jobs` jobs, starts a
supervisor, and kills a random child every `--kill-every` seconds (0: never) until the
table is empty. Then it checks that no job was lost (every token recorded at least once,
no failed row, table empty), and times a SIGTERM drain with jobs running. Prints figures;
asserts nothing about speed.

Job kinds: `sup.noop` records its token in sup_runs (proves none is lost; one extra
insert per job), `tests.noop` does nothing (raw throughput; loss shows only as rows left).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import delayed  # noqa: E402
from delayed import schema  # noqa: E402

ADMIN_URL = os.environ.get("DELAYED_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def children(pid: int) -> list[int]:
    try:
        procs = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "delayed-supervisor: worker" in " ".join(
                proc.cmdline()
            ):
                found.append(proc.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def run(args: argparse.Namespace, url: str, engine: sa.Engine, work: Path) -> None:
    import supervisor_jobs  # noqa: F401 - registers sup.*
    from sample_jobs import Noop as TestsNoop
    from supervisor_jobs import RUNS_DDL, Noop, Run

    with engine.begin() as conn:
        conn.exec_driver_sql(RUNS_DDL)
    job = Noop if args.kind == "sup.noop" else TestsNoop
    delayed.enqueue_many([job.build(f"j{i}") for i in range(args.jobs)])
    config = work / "delayed.toml"
    config.write_text(
        f'[delayed]\ndatabase_url = "{url}"\nrequire = ["sample_jobs", "supervisor_jobs"]\n'
        f"sleep_delay = 1\n\n[supervisor]\nworkers = {args.workers}\nmax_claims = {args.max_claims}\n"
        f"graceful_timeout = 30\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")]))
    log = open(work / "supervisor.log", "w")  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "delayed.supervisor", "-c", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    kills = 0
    try:
        next_kill = time.monotonic() + args.kill_every
        while count(engine, "SELECT count(*) FROM delayed_jobs WHERE failed_at IS NULL") > 0:
            time.sleep(0.05)
            if args.kill_every and time.monotonic() >= next_kill:
                pids = children(proc.pid)
                if pids:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    kills += 1
                next_kill = time.monotonic() + args.kill_every * random.uniform(0.5, 1.5)
            if time.monotonic() - started > args.timeout:
                with engine.connect() as conn:
                    summary = conn.execute(
                        sa.text(
                            "SELECT locked_by, count(*), min(attempts), max(attempts), "
                            "min(run_at) > now() AT TIME ZONE 'UTC' FROM delayed_jobs GROUP BY 1"
                        )
                    ).all()
                print("rows left (locked_by, count, attempts, future run_at):", summary)
                raise SystemExit(f"not drained within {args.timeout} s; see {work / 'supervisor.log'}")
        drained = time.monotonic() - started
        left = count(engine, "SELECT count(*) FROM delayed_jobs")
        failed = count(engine, "SELECT count(*) FROM delayed_jobs WHERE failed_at IS NOT NULL")
        ran = count(engine, "SELECT count(DISTINCT token) FROM sup_runs")
        runs = count(engine, "SELECT count(*) FROM sup_runs")
        print(f"jobs={args.jobs} kind={args.kind} children={args.workers}x{args.max_claims} kills={kills}")
        print(f"drained in {drained:.1f} s (including start-up): {args.jobs / drained:.0f} jobs/s")
        print(f"rows left={left} failed={failed}")
        if args.kind == "sup.noop":
            print(f"distinct jobs that ran={ran} (of {args.jobs}); runs={runs} ({runs - ran} ran again)")
        # SIGTERM with jobs running.
        for i in range(args.workers * args.max_claims):
            Run.perform_later(f"term{i}", sleep=2)
        deadline = time.monotonic() + 60
        while (
            count(engine, "SELECT count(*) FROM sup_runs WHERE token LIKE 'term%'")
            < args.workers * args.max_claims
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        term_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
        stop = time.monotonic() - term_at
        ended = count(engine, "SELECT count(*) FROM sup_runs WHERE token LIKE 'term%' AND phase = 'end'")
        busy = args.workers * args.max_claims
        print(f"SIGTERM with {busy} 2-second jobs running: exit {code} after {stop:.2f} s")
        rows = count(engine, "SELECT count(*) FROM delayed_jobs")
        print(f"  jobs that finished during the drain: {ended}; rows left: {rows}")
        text = (work / "supervisor.log").read_text()
        spawns, loops = text.count("spawned child"), text.count("crash loop")
        print(f"supervisor log: {spawns} spawns, {loops} crash-loop back-offs")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-claims", type=int, default=5)
    parser.add_argument("--kill-every", type=float, default=1.5, help="seconds between SIGKILLs (0: none)")
    parser.add_argument("--kind", choices=["sup.noop", "tests.noop"], default="sup.noop")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--log", type=Path, default=None, help="copy the supervisor's log here")
    args = parser.parse_args()
    name = f"pyd_chaos_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        delayed.configure(database_url=url)
        engine = delayed.get_engine()
        schema.migrate(engine)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run(args, url, engine, Path(tmp))
            finally:
                if args.log is not None:
                    shutil.copy(Path(tmp) / "supervisor.log", args.log)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


if __name__ == "__main__":
    main()
