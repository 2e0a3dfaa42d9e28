"""Enqueue speed on PostgreSQL: one job per call and bulk, every system, beside a raw INSERT loop."""

from __future__ import annotations

import scenarios
from registry import Context, scenario

RAW_INSERT = "ceiling insert"
RAW_COPY = "ceiling copy"


@scenario("enqueue", order=10, title="enqueue (PostgreSQL)")
def enqueue(ctx: Context) -> None:
    """Each system's single and bulk enqueue; beside them the raw psycopg INSERT + commit loop
    (single) and one raw COPY of the same rows (bulk: the table's own limit on this box)."""
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
    copy = ctx.measure("enqueue", RAW_COPY, lambda: scenarios.insert_ceiling(ctx.sizes.jobs, "copy"))
    if copy:
        ctx.report.put("enqueue", RAW_COPY, copy)
        bulk[RAW_COPY] = copy["rate"]
    ctx.report.row(f"enqueue, one job per call ({ctx.sizes.single})", "jobs/s", True, single)
    ctx.report.row(f"enqueue, bulk ({ctx.sizes.jobs} in one call)", "jobs/s", True, bulk)
