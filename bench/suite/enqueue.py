"""Enqueue speed on PostgreSQL: one job per call and bulk, every system, beside a raw INSERT loop."""

from __future__ import annotations

import scenarios
from registry import Context, scenario

RAW_INSERT = "ceiling insert"


@scenario("enqueue", order=10, title="enqueue (PostgreSQL)")
def enqueue(ctx: Context) -> None:
    """Each system's single and bulk enqueue; the raw psycopg INSERT + commit loop beside them."""
    single: dict[str, float | None] = {}
    bulk: dict[str, float | None] = {}
    for system in ctx.systems:
        r = ctx.measure(
            "enqueue",
            system.name,
            lambda s=system: scenarios.enqueue(s, "postgresql", ctx.sizes.single, ctx.sizes.jobs),
        )
        if r:
            ctx.report.put("enqueue", system.name, r)
            single[system.name], bulk[system.name] = r["single_rate"], r["bulk_rate"]
    raw = ctx.measure("enqueue", RAW_INSERT, lambda: scenarios.insert_ceiling(ctx.sizes.single))
    if raw:
        ctx.report.put("enqueue", RAW_INSERT, raw)
        single[RAW_INSERT] = raw["rate"]
    ctx.report.row(f"enqueue, one job per call ({ctx.sizes.single})", "jobs/s", True, single)
    ctx.report.row(f"enqueue, bulk ({ctx.sizes.jobs} in one call)", "jobs/s", True, bulk)
