"""Unique jobs and concurrency limits (issue 13): what each costs against the plain path, same run.

- enqueue: one job per call and in bulk, plain no-op jobs vs jobs unique by their argument
  (every key new, so each insert goes through ON CONFLICT DO NOTHING and inserts);
- drain: the same W x C workers emptying plain no-op rows vs rows spread over 1,000
  concurrency keys with limit 1 (each claim grants leases under a per-key lock).
PostgreSQL, pydelayed only (no peer has both features on every database to compare with).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from harness import Workers, count, scratch_database, watch_drain
from registry import Context, scenario


def _enqueue(ctx: Context, mode: str, n: int) -> float:
    ours = ctx.ours
    with scratch_database("postgresql") as db:
        ours.run_driver("setup", db.url)
        out = json.loads(ours.run_driver("enqueue", db.url, "--mode", mode, "--count", str(n)))
    return out["count"] / out["seconds"]


def _drain(ctx: Context, mode: str, n: int) -> dict[str, Any]:
    ours = ctx.ours.variant("pydelayed plain", supervisor=False)
    with scratch_database("postgresql") as db:
        ours.run_driver("setup", db.url)
        ours.run_driver("enqueue", db.url, "--mode", mode, "--count", str(n))
        engine = sa.create_engine(db.url, poolclass=sa.pool.NullPool)
        try:
            if count(engine, ours.progress_sql) != n:
                raise RuntimeError(f"expected {n} ready jobs before the drain")
            procs = Workers.spawn(ours.worker_commands(db, ctx.W, ctx.C, exit_on_complete=True), ours.env())
            try:
                return watch_drain(engine, ours.progress_sql, procs, ctx.timeout)
            finally:
                procs.stop()
        finally:
            engine.dispose()


@scenario("limits", order=56, title="unique enqueue, concurrency-keyed drain vs plain (PostgreSQL)")
def limits(ctx: Context) -> None:
    n, single = ctx.sizes.jobs, ctx.sizes.single
    figures: dict[str, Any] = {}
    for label, mode, size in (
        ("single", "single", single),
        ("single_unique", "single-unique", single),
        ("bulk", "bulk", n),
        ("bulk_unique", "bulk-unique", n),
    ):
        figures[label] = ctx.measure("limits", f"enqueue {mode}", lambda m=mode, s=size: _enqueue(ctx, m, s))
    for label, mode in (("drain", "bulk"), ("drain_keyed", "bulk-keyed")):
        figures[label] = ctx.measure("limits", f"drain {mode}", lambda m=mode: _drain(ctx, m, n))
    ctx.report.put("limits", "pydelayed", figures)

    def row(title: str, unit: str, ours: Any, plain: Any) -> None:
        if ours and plain:
            ctx.report.row(title, unit, True, {"pydelayed": ours, "plain": plain})

    row("enqueue one per call: unique vs plain", "jobs/s", figures["single_unique"], figures["single"])
    row("enqueue bulk: unique vs plain", "jobs/s", figures["bulk_unique"], figures["bulk"])
    keyed, plain = figures["drain_keyed"], figures["drain"]
    row(
        f"drain W={ctx.W} x C={ctx.C}: 1,000 keys limit 1 vs plain",
        "jobs/s",
        keyed["rate"] if keyed else None,
        plain["rate"] if plain else None,
    )
