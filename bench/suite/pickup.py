"""Pickup cost: our claim on large tables, before and after ANALYZE (PostgreSQL, ours only)."""

from __future__ import annotations

import scenarios
from registry import Context, scenario


@scenario("pickup", order=40, title="pickup cost (PostgreSQL, ours)")
def pickup(ctx: Context) -> None:
    """Median claim time of C jobs on 10k..1M ready rows plus failed rows; its plan in the JSON."""
    sizes = ctx.sizes
    for size in sizes.pickup:
        r = ctx.measure(
            "pickup", f"{size}", lambda n=size: scenarios.pickup(n, sizes.failed, sizes.claims, ctx.C)
        )
        if not r:
            continue
        ctx.report.data["results"].setdefault("pickup", {})[str(size)] = r
        for key, when in (("median_ms", "stale stats"), ("analyzed_median_ms", "analyzed")):
            ctx.report.row(
                f"claim {ctx.C} jobs, {size:,} ready + {sizes.failed:,} failed, {when}",
                "ms",
                False,
                {"pydelayed": r[key]},
            )
