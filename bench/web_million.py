"""The dashboard on a million-row PostgreSQL table: page response times and query plans.

    python bench/web_million.py [--rows 1000000] [--requests 15] [--plans]
                                [--admin-url postgresql+psycopg://postgres@127.0.0.1/test]

Makes a scratch database, fills delayed_jobs with INSERT ... SELECT generate_series
(100k failed rows with tracebacks, erroring, scheduled, ready and a few hundred running rows
over 40 priorities, 5 queues and 20 job names), VACUUM ANALYZEs it, starts the real
`delayed web` on 127.0.0.1 (a subprocess, as an operator runs it), and times each page
over HTTP: the median and the worst of --requests requests after two warm-ups. Then
EXPLAIN (ANALYZE, BUFFERS) of each jobs-page query, and drops the database. Nothing is left
behind. Figures are printed, never asserted (bench/README.md has a run).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from delayed import schema  # noqa: E402
from delayed.admin import JobFilter, page_query  # noqa: E402
from delayed.config import build_config  # noqa: E402
from delayed.db import create_engine  # noqa: E402
from delayed.schema import get_table  # noqa: E402
from delayed.timeutil import utcnow  # noqa: E402

# g % 10 = 7: failed (100k of 1M); g % 10 = 3: erroring (attempts > 0, live);
# g % 5 = 0: scheduled (run_at up to an hour ahead); g % 2000 = 1: running (locked now);
# g % 2000 = 11: a stale lock (older than the lock timeout: ready again). The rest: ready.
# Queue, name, priority and error text use other divisors, so that every queue, name and
# priority has failed rows (no accidental correlation with the state), except the queue
# "newsletter" (g % 20 = 0: 50k live rows, none failed), a filter the planner misjudges. One
# row in 10,000 (100 failed ones at 1M) has the rare error "QuotaExceeded".
FILL = """
INSERT INTO delayed_jobs (priority, attempts, handler, name, queue, run_at, locked_at, locked_by,
                          failed_at, last_error, created_at, updated_at)
SELECT (g / 13) % 40,
       CASE WHEN g % 10 IN (3, 7) THEN 1 + g % 7 ELSE 0 END,
       '{"job":"bench.job' || ((g / 11) % 20) || '","args":[' || g || ',"user' || g || '@example.com"],'
         || '"kwargs":{"note":"<b>escaped</b>"},"job_id":"' || md5(g::text) || '"}',
       'bench.job' || ((g / 11) % 20),
       CASE WHEN g % 20 = 0 THEN 'newsletter'
            ELSE (ARRAY['default','mail','reports','billing','search'])[1 + (g / 7) % 5] END,
       now_utc + make_interval(secs => CASE WHEN g % 5 = 0 THEN 600 + g % 3600 ELSE -(g % 7200) END),
       CASE WHEN g % 2000 = 1 THEN now_utc - make_interval(secs => g % 120)
            WHEN g % 2000 = 11 THEN now_utc - interval '2 hours' END,
       CASE WHEN g % 2000 IN (1, 11) THEN 'host:bench' || (g % 7) || ' pid:' || (1000 + g % 50) END,
       CASE WHEN g % 10 = 7 THEN now_utc - make_interval(secs => g % 86400) END,
       CASE WHEN g % 10 IN (3, 7) THEN
         CASE WHEN g % 10000 = 7 THEN 'QuotaExceeded: mailbox full'
         ELSE (ARRAY['ConnectionError: SMTP refused user' || g || '@example.com',
                     'TimeoutError: the report query ran past 30 s',
                     'KeyError: ''account_' || (g % 977) || '''',
                     'ValueError: invalid literal for int() with base 10: ''n/a''',
                     'OSError: [Errno 28] No space left on device'])[1 + (g / 10) % 5] END
         || E'\\nTraceback (most recent call last):\\n'
         || repeat(E'  File "/srv/app/jobs.py", line 42, in perform\\n    self.deliver(message)\\n', 8)
       END,
       now_utc, now_utc
FROM generate_series(1, :rows) AS g,
     (SELECT TIMEZONE('UTC', now()) AS now_utc) AS clock
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(url: str, port: int, sample: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["DELAYED_WEB_SAMPLE_INTERVAL"] = sample
    env["DELAYED_LOG_LEVEL"] = "WARNING"
    command = [
        sys.executable,
        "-m",
        "delayed.cli",
        "web",
        "--bind",
        f"127.0.0.1:{port}",
        "--database-url",
        url,
    ]
    return subprocess.Popen(command, env=env)


def wait_up(client: httpx.Client, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client.get(base + "/static/style.css")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("delayed web did not start within 60 s")


def timed(client: httpx.Client, url: str, requests: int) -> tuple[float, float, int]:
    """(median ms, max ms, status) of `requests` GETs after two warm-ups."""
    for _ in range(2):
        client.get(url)
    times = []
    status = 0
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return statistics.median(times), max(times), status


def follow(client: httpx.Client, base: str, path: str, pages: int) -> str:
    """The URL of page `pages` + 1 of a jobs listing, by following its "next page" links."""
    url = base + path
    for _ in range(pages):
        found = re.search(r'href="(/jobs\?[^"]*after=[^"]*)" id="next-page"', client.get(url).text)
        if not found:
            break
        url = base + found.group(1).replace("&amp;", "&")
    return url


PAGES = [
    ("overview (counts kept fresh by the sampler)", "/"),
    ("jobs: failed, first page", "/jobs?state=failed"),
    ("jobs: all, first page", "/jobs?state=all"),
    ("jobs: ready (pickup order)", "/jobs?state=ready"),
    ("jobs: scheduled", "/jobs?state=scheduled"),
    ("jobs: erroring", "/jobs?state=erroring"),
    ("jobs: running (500 rows; no index can serve it)", "/jobs?state=running"),
    ("jobs: failed, queue=mail", "/jobs?state=failed&queue=mail"),
    ("jobs: failed, name=bench.job7", "/jobs?state=failed&name=bench.job7"),
    ("jobs: failed, priority=reporting", "/jobs?state=failed&priority=reporting"),
    ("jobs: failed, error~TimeoutError", "/jobs?state=failed&error=TimeoutError"),
    ("jobs: all, queue=billing, name=bench.job3", "/jobs?state=all&queue=billing&name=bench.job3"),
    ("job detail", "/jobs/7"),
    ("/metrics (cached gauges)", "/metrics"),
]
# Filters whose matches are rare among failed rows: the existing indexes cannot bound these
# (see "proposed index" below; the failed-list index is migration step 6 now).
HARD_PAGES = [
    ("jobs: failed, queue=newsletter (0 failed of 50k)", "/jobs?state=failed&queue=newsletter"),
    ("jobs: failed, error~QuotaExceeded (100 rows)", "/jobs?state=failed&error=QuotaExceeded"),
]
PROPOSED_INDEX = (
    "CREATE INDEX IF NOT EXISTS idx_delayed_jobs_failed_list ON delayed_jobs (id) "
    "INCLUDE (queue, priority, name) WHERE failed_at IS NOT NULL"
)
TRIGRAM_INDEX = (
    "CREATE INDEX idx_delayed_jobs_failed_error ON delayed_jobs USING gin (last_error gin_trgm_ops) "
    "WHERE failed_at IS NOT NULL"
)
CASES = [
    ("failed", JobFilter(state="failed")),
    ("all", JobFilter(state="all")),
    ("ready", JobFilter(state="ready")),
    ("scheduled", JobFilter(state="scheduled")),
    ("running", JobFilter(state="running")),
    ("erroring", JobFilter(state="erroring")),
    ("failed queue=mail", JobFilter(state="failed", queue="mail")),
    ("failed name=bench.job7", JobFilter(state="failed", name="bench.job7")),
    ("failed priority=reporting", JobFilter(state="failed", priority="reporting")),
    ("failed error~TimeoutError", JobFilter(state="failed", error="TimeoutError")),
    ("all queue=billing name=bench.job3", JobFilter(state="all", queue="billing", name="bench.job3")),
    ("failed queue=newsletter (no match)", JobFilter(state="failed", queue="newsletter")),
    ("failed error~QuotaExceeded (rare)", JobFilter(state="failed", error="QuotaExceeded")),
]


def explain(engine: sa.Engine, config: Any, label: str, flt: JobFilter, after: str | None) -> list[str]:
    """Print one line (execution time, the scan used) and return the whole plan."""
    query = page_query(flt, after, 50, get_table(), utcnow(), config, "postgresql")
    compiled = query.compile(engine)
    with engine.connect() as conn:
        plan = list(conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {compiled}", compiled.params).scalars())
    total = next((line for line in plan if line.startswith("Execution Time")), "")
    scans = [
        line.strip().split("  (")[0].lstrip("-> ") for line in plan if " Scan " in line or "Scan on" in line
    ]
    print(f"  {label:<40} {total:<28} {'; '.join(scans)[:110]}")
    return plan


def time_pages(url: str, pages: list[tuple[str, str]], requests: int, deep: bool) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_web(url, port, "15s")
    try:
        with httpx.Client(timeout=120) as client:
            wait_up(client, base)
            client.get(base + "/")  # the first overview waits for the first query set
            time.sleep(1)
            for label, path in pages:
                median, worst, status = timed(client, base + path, requests)
                print(f"  {label:<50} {median:8.1f} {worst:8.1f}   HTTP {status}")
            if deep:
                for state in ("failed", "ready"):
                    deep_url = follow(client, base, f"/jobs?state={state}", 100)
                    median, worst, status = timed(client, deep_url, requests)
                    label = f"jobs: {state}, page 101 (keyset)"
                    print(f"  {label:<50} {median:8.1f} {worst:8.1f}   HTTP {status}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def cold_overview(url: str) -> None:
    """Without the sampler (sample_interval 0) an overview past the cache pays the queries."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_web(url, port, "0")
    try:
        with httpx.Client(timeout=120) as client:
            wait_up(client, base)
            times = []
            for _ in range(4):
                time.sleep(10.5)  # past the 10 s cache
                began = time.perf_counter()
                client.get(base + "/")
                times.append((time.perf_counter() - began) * 1000)
        label = "overview, cold (sample_interval 0, cache miss)"
        print(f"  {label:<50} {statistics.median(times):8.1f} {max(times):8.1f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--plans", action="store_true", help="Print every full EXPLAIN plan.")
    parser.add_argument(
        "--proposed-indexes",
        action="store_true",
        help="Then add the proposed failed-job index (and pg_trgm on last_error) and measure again.",
    )
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    name = f"pyd_webbench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.make_url(args.admin_url).set(database=name).render_as_string(hide_password=False)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    try:
        engine = create_engine(url)
        schema.migrate(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(sa.text(FILL), {"rows": args.rows})
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
            counts = conn.exec_driver_sql(
                "SELECT count(*), count(failed_at), pg_size_pretty(pg_total_relation_size('delayed_jobs')) "
                "FROM delayed_jobs"
            ).one()
        print(
            f"filled {counts[0]} rows ({counts[1]} failed, {counts[2]} with indexes) "
            f"in {time.perf_counter() - started:.1f}s"
        )
        config = build_config(environ={}, overrides={"database_url": url})

        print(f"\nHTTP, {args.requests} requests each after 2 warm-ups (median / worst, ms):")
        time_pages(url, PAGES + HARD_PAGES, args.requests, deep=True)
        cold_overview(url)

        print("\nEXPLAIN ANALYZE of the jobs-page queries (execution time, scans):")
        plans = {label: explain(engine, config, label, flt, None) for label, flt in CASES}
        if args.proposed_indexes:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                began = time.perf_counter()
                conn.exec_driver_sql(PROPOSED_INDEX)
                took = time.perf_counter() - began
                conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                began = time.perf_counter()
                conn.exec_driver_sql(TRIGRAM_INDEX)
                took_trgm = time.perf_counter() - began
                conn.exec_driver_sql("VACUUM ANALYZE delayed_jobs")
                sizes = conn.exec_driver_sql(
                    "SELECT pg_size_pretty(pg_relation_size('idx_delayed_jobs_failed_list')), "
                    "pg_size_pretty(pg_relation_size('idx_delayed_jobs_failed_error'))"
                ).one()
            print(f"\nWith the proposed index ({took:.1f}s to build, {sizes[0]}):\n  {PROPOSED_INDEX}")
            print(f"and the optional trigram index ({took_trgm:.1f}s, {sizes[1]}):\n  {TRIGRAM_INDEX}")
            failed_cases = [(label, flt) for label, flt in CASES if flt.state == "failed"]
            for label, flt in failed_cases:
                plans[label + " +index"] = explain(engine, config, label, flt, None)
            print("HTTP (median / worst, ms):")
            time_pages(
                url, [p for p in PAGES + HARD_PAGES if "state=failed" in p[1]], args.requests, deep=False
            )
        if args.plans:
            for label, plan in plans.items():
                print(f"\n--- {label} ---")
                print("\n".join(plan))
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        print(f"dropped {name}")
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
