"""The cron scheduler's cost: database statements per tick per host, on each database.

    python bench/cron_cost.py [--hosts 3] [--seconds 15] [--backends sqlite,postgresql,mysql]

Makes a scratch database per backend, runs `--hosts` schedulers side by side (threads, each
a real `Scheduler` with its own store, as separate hosts would be) on one entry with
`every = "1s"` for `--seconds` seconds of real time, and counts every statement each of them
sends (SQLAlchemy's `before_cursor_execute`) and every transaction it commits, split into the
tick that won (recorded the run row and enqueued the job) and the ticks that lost (another
host had the row). Also prints how late after its tick each job was enqueued. The scratch
databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql
import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.config import build_config, set_config
from delayed.db import create_engine, engine_for, reset_engine
from delayed.recurring import Scheduler
from delayed.recurring.entries import _entry

ADMIN = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/test",
}


class Noop(delayed.Job, name="bench.cron.noop"):
    def perform(self) -> None:
        return None


class Counts:
    """Statements and commits per thread (one thread = one host's scheduler); on MySQL also
    every command PyMySQL sends (queries, COMMIT, pings: the real round trips)."""

    def __init__(self) -> None:
        self.statements: dict[str, int] = defaultdict(int)
        self.commits: dict[str, int] = defaultdict(int)
        self.round_trips: dict[str, int] = defaultdict(int)
        original = pymysql.connections.Connection._execute_command
        counts = self

        def counted(connection: Any, command: int, sql: Any) -> Any:
            counts.round_trips[threading.current_thread().name] += 1
            return original(connection, command, sql)

        pymysql.connections.Connection._execute_command = counted  # type: ignore[method-assign]

    def attach(self, engine: sa.Engine) -> None:
        def on_statement(*_: Any) -> None:
            self.statements[threading.current_thread().name] += 1

        def on_commit(*_: Any) -> None:
            self.commits[threading.current_thread().name] += 1

        sa.event.listen(engine, "before_cursor_execute", on_statement)
        sa.event.listen(engine, "commit", on_commit)

    def now(self) -> tuple[int, int, int]:
        name = threading.current_thread().name
        return self.statements[name], self.commits[name], self.round_trips[name]


def scratch(backend: str, tmp: Path) -> tuple[str, Any]:
    """A new database; returns its URL and a function that drops it."""
    name = f"cronbench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        return f"sqlite:///{tmp / (name + '.sqlite3')}", lambda: None
    admin = sa.create_engine(ADMIN[backend], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = str(sa.make_url(ADMIN[backend]).set(database=name).render_as_string(hide_password=False))

    def drop() -> None:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()

    return url, drop


def measure(backend: str, hosts: int, seconds: float, tmp: Path, hold: bool = True) -> dict[str, Any]:
    url, drop = scratch(backend, tmp)
    try:
        setup = create_engine(url)
        schema.migrate(setup)
        setup.dispose()
        config = build_config(environ={}, overrides={"database_url": url, "log_level": "WARNING"})
        set_config(config)
        counts = Counts()
        counts.attach(engine_for(url))
        entry = _entry(
            key="bench-every-second",
            schedule=None,
            every="1s",
            job="bench.cron.noop",
            args=[],
            kwargs={},
            queue="bench",
            priority=None,
            timezone="UTC",
            source="bench",
        )
        per_call: dict[str, list[tuple[int, int, int]]] = {"won": [], "lost": []}
        lock = threading.Lock()
        stop = threading.Event()
        start_costs: list[int] = []

        def host() -> None:
            scheduler = Scheduler(config, [entry])
            scheduler.next_prune = float("inf")  # pruning is measured apart (it runs hourly)
            scheduler.store.hold_connection = hold  # --no-hold: a pooled connection per tick
            store_call = scheduler.store.enqueue_tick

            def counted(*args: Any, **kwargs: Any) -> int | None:
                before = counts.now()
                job_id = store_call(*args, **kwargs)
                after = counts.now()
                with lock:
                    per_call["won" if job_id is not None else "lost"].append(
                        (after[0] - before[0], after[1] - before[1], after[2] - before[2])
                    )
                return job_id

            scheduler.store.enqueue_tick = counted  # type: ignore[method-assign]
            before = counts.now()
            scheduler.start()
            with lock:
                start_costs.append(counts.now()[0] - before[0])
            while not stop.is_set():
                wake_at = scheduler.run_due()
                delay = (wake_at - scheduler.clock()).total_seconds()
                if delay > 0:
                    stop.wait(delay)

        threads = [threading.Thread(target=host, name=f"host-{i}") for i in range(hosts)]
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join(30)
        runs, _ = schema.cron_tables()
        with engine_for(url).connect() as conn:
            rows = conn.execute(sa.select(runs.c.run_at, runs.c.enqueued_at)).all()
            duplicates = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM "
                    "(SELECT run_at FROM delayed_jobs GROUP BY run_at HAVING COUNT(*) > 1) d"
                )
            ).scalar_one()
        lags = sorted((enqueued - run_at).total_seconds() * 1000 for run_at, enqueued in rows)
        prune_before = counts.now()
        pruned_store = Scheduler(config, [entry]).store
        pruned_store.prune(datetime(2000, 1, 1))
        prune_cost = counts.now()[0] - prune_before[0]
        won, lost = per_call["won"], per_call["lost"]
        ticks = len(rows)
        calls = len(won) + len(lost)
        return {
            "backend": backend,
            "hosts": hosts,
            "ticks": ticks,
            "duplicates": duplicates,
            "statements_per_tick_per_host": sum(c[0] for c in won + lost) / max(calls, 1),
            "commits_per_tick_per_host": sum(c[1] for c in won + lost) / max(calls, 1),
            "round_trips_per_tick_per_host": sum(c[2] for c in won + lost) / max(calls, 1),
            "winner_statements": statistics.mean(c[0] for c in won) if won else 0,
            "loser_statements": statistics.mean(c[0] for c in lost) if lost else 0,
            "winner_commits": statistics.mean(c[1] for c in won) if won else 0,
            "loser_commits": statistics.mean(c[1] for c in lost) if lost else 0,
            "winner_round_trips": statistics.mean(c[2] for c in won) if won else 0,
            "loser_round_trips": statistics.mean(c[2] for c in lost) if lost else 0,
            "start_statements": statistics.mean(start_costs),
            "empty_prune_statements": prune_cost,
            "lag_ms_p50": statistics.median(lags) if lags else None,
            "lag_ms_max": max(lags) if lags else None,
        }
    finally:
        reset_engine()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    parser.add_argument(
        "--no-hold", action="store_true", help="check a connection out of the pool per tick (the old way)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            measure(b.strip(), args.hosts, args.seconds, Path(tmp), hold=not args.no_hold)
            for b in args.backends.split(",")
        ]
    header = (
        "| database | hosts | ticks | duplicate jobs | statements/tick/host | commits/tick/host | "
        "winner: stmts, commits | loser: stmts, commits | MySQL round trips/tick/host (winner, loser) "
        "| start | empty prune | lag p50 / max |"
    )
    print(header)
    print("|" + "---|" * 12)
    for r in results:
        trips = "-"
        if r["backend"] == "mysql":
            split = f"{r['winner_round_trips']:.0f}, {r['loser_round_trips']:.0f}"
            trips = f"{r['round_trips_per_tick_per_host']:.2f} ({split})"
        print(
            f"| {r['backend']} | {r['hosts']} | {r['ticks']} | {r['duplicates']} | "
            f"{r['statements_per_tick_per_host']:.2f} | {r['commits_per_tick_per_host']:.2f} | "
            f"{r['winner_statements']:.0f}, {r['winner_commits']:.0f} | "
            f"{r['loser_statements']:.0f}, {r['loser_commits']:.0f} | {trips} | "
            f"{r['start_statements']:.0f} | "
            f"{r['empty_prune_statements']} | {r['lag_ms_p50']:.1f} / {r['lag_ms_max']:.1f} ms |"
        )


if __name__ == "__main__":
    main()
