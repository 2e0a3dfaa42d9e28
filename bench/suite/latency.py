"""Start latency on PostgreSQL: idle workers, probe jobs enqueued one at a time."""

from __future__ import annotations

import charts
import scenarios
from registry import Context, scenario

MASTER = " (ours: the supervisor's master)"


@scenario("latency", order=30, title="latency (PostgreSQL)", chart=charts.latency)
def latency(ctx: Context) -> None:
    """p50/p99 from enqueue call to the job's first line, and idle RSS, for every system."""
    p50: dict[str, float | None] = {}
    p99: dict[str, float | None] = {}
    idle: dict[str, float | None] = {}
    idle_children: dict[str, float | None] = {}
    for system in ctx.systems:
        r = ctx.measure(
            "latency",
            system.name,
            lambda s=system: scenarios.latency(s, ctx.W, ctx.C, ctx.sizes.probes, 10, 0.02),
        )
        if r:
            ctx.report.put("latency", system.name, r)
            p50[system.name], p99[system.name] = r["p50_ms"], r["p99_ms"]
            idle[system.name] = r["rss_idle_mb"]
            if r["rss_idle_children_mb"]:
                idle_children[system.name] = r["rss_idle_children_mb"]
    ctx.report.row(f"start latency p50 ({ctx.sizes.probes} jobs, idle workers)", "ms", False, p50)
    ctx.report.row("start latency p99", "ms", False, p99)
    master = MASTER if ctx.ours.supervisor else ""
    ctx.report.row(f"RSS per worker process{master}, idle", "MB", False, idle)
    if idle_children:
        ctx.report.row("RSS per child process, idle", "MB", False, idle_children)
