"""The scale curve: drain with 1, 2, 4, 8 worker processes of C threads (PostgreSQL, ours).

Reports throughput, claim statements per second, jobs per claim and rows claimed but not yet
done (sampled every poll) per point. `--scale-hosts 1,2,4` also runs each point split over
that many supervisors on the same database, standing in for separate hosts: each registers its
children in the worker registry (delayed_workers) and knows the others only through the table
(heartbeats, rescue), as separate hosts would; no supervisor leads. They share this box's two
cores, so the split shows coordination costs, not what more hardware would add.
"""

from __future__ import annotations

import charts
import scenarios
from registry import Context, scenario


@scenario("scale", order=60, title="scale curve (PostgreSQL, ours)", chart=charts.scale)
def scale(ctx: Context) -> None:
    """One drain per (hosts, processes) point; the table has one row per measure."""
    n = ctx.sizes.scale_jobs or ctx.sizes.jobs
    hosts_list = [int(h) for h in str(ctx.args.scale_hosts).split(",") if h.strip()]
    ours = ctx.ours
    points: list[dict] = []
    for hosts in hosts_list:
        for procs in ctx.sizes.scale:
            if hosts > 1 and (not ours.supervisor or procs < hosts):
                continue  # separate hosts are separate supervisors, each with at least one child
            label = f"{procs}p" if hosts == 1 else f"{procs}p/{hosts}h"
            r = ctx.measure(
                "scale",
                label,
                lambda p=procs, h=hosts: scenarios.drain(
                    ours, "postgresql", n, p, ctx.C, ctx.timeout, hosts=h
                ),
            )
            if r:
                r["processes"], r["hosts"] = procs, hosts
                points.append(r)
    ctx.report.put("scale", "pydelayed", points)
    header = [
        "processes",
        "hosts",
        "jobs/s",
        "claims/s",
        "jobs/claim",
        "claimed rows mean",
        "max",
        "CPU master %",
    ]
    lines = [
        [
            str(p["processes"]),
            str(p["hosts"]),
            p["rate"],
            p.get("claims_per_s"),
            p.get("jobs_per_claim"),
            p.get("locked_mean"),
            p.get("locked_max"),
            100 * p["main_cpu_share"] if ours.supervisor else None,
        ]
        for p in points
    ]
    print(ctx.report.add_table(f"scale curve: drain {n} jobs, C={ctx.C} per process", header, lines))
