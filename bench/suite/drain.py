"""Drain on PostgreSQL: every system, ours with and without the supervisor, and the raw ceilings.

Each round drains once per system (ours under `delayed-supervisor`, ours as W plain `delayed
work` processes with the same W x C, each peer) and, when the `ceiling` scenario is selected
too, once per raw PostgreSQL ceiling, so all of them meet the same conditions; medians over
the rounds are reported.
"""

from __future__ import annotations

from typing import Any

import charts
import scenarios
from harness import System, median
from registry import Context, scenario

MASTER = " (ours: the supervisor's master)"


def pg_ceilings(ctx: Context) -> list[scenarios.Ceiling]:
    """The issue's ceiling (batch 50, 2 processes x 4 connections) and one shaped like our drain."""
    return [
        scenarios.Ceiling("postgresql", 2, 4, 50),
        scenarios.Ceiling("postgresql", ctx.W, ctx.C, 10),
    ]


def drain_systems(ctx: Context) -> list[System]:
    plain = ctx.ours_plain
    return [ctx.ours, *([plain] if plain else []), *ctx.peers]


def run_ceilings(ctx: Context, rnd: int) -> None:
    for spec in pg_ceilings(ctx):
        r = ctx.measure(
            f"ceiling#{rnd + 1}",
            spec.label,
            lambda s=spec: scenarios.ceiling(s, ctx.ours, ctx.sizes.jobs, ctx.timeout),
        )
        if r:
            ctx.report.append("ceiling", spec.label, r)


@scenario("drain", order=20, title="drain (PostgreSQL)", chart=charts.drain)
def drain(ctx: Context) -> None:
    """Rounds of drains; the table of medians, with the ceilings if selected."""
    with_ceilings = "ceiling" in ctx.selected
    for rnd in range(ctx.sizes.rounds):
        for system in drain_systems(ctx):
            r = ctx.measure(
                f"drain#{rnd + 1}",
                system.name,
                lambda s=system: scenarios.drain(s, "postgresql", ctx.sizes.jobs, ctx.W, ctx.C, ctx.timeout),
            )
            if r:
                ctx.report.append("drain", system.name, r)
        if with_ceilings:
            run_ceilings(ctx, rnd)
    drain_rows(ctx)


@scenario("ceiling", order=21, title="raw PostgreSQL ceilings")
def ceiling(ctx: Context) -> None:
    """The PostgreSQL ceilings alone (with `drain` selected they run inside its rounds)."""
    if "drain" in ctx.selected:
        return
    for rnd in range(ctx.sizes.rounds):
        run_ceilings(ctx, rnd)
    drain_rows(ctx)


def _medians(runs: dict[str, list[dict[str, Any]]], key: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, rounds in runs.items():
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            out[name] = median(values)
    return out


def drain_rows(ctx: Context) -> None:
    results = ctx.report.data["results"]
    runs = {**results.get("drain", {}), **results.get("ceiling", {})}
    systems = results.get("drain", {})
    n, rounds = ctx.sizes.jobs, ctx.sizes.rounds
    row = ctx.report.row
    label = f"drain {n} no-op jobs, W={ctx.W} x C={ctx.C} (median of {rounds})"
    row(label, "jobs/s", True, _medians(runs, "rate"))
    row("drain wall time incl. start-up", "s", False, _medians(systems, "wall_s"))
    row("claims (claim statements) per second", "1/s", True, _medians(runs, "claims_per_s"))
    row("jobs per claim statement", "jobs", True, _medians(systems, "jobs_per_claim"))
    row("rows claimed, not yet done (mean while draining)", "rows", False, _medians(runs, "locked_mean"))
    master = MASTER if ctx.ours.supervisor else ""
    cpu = _percent(_medians(systems, "main_cpu_share"))
    row(f"CPU of the busiest worker process{master}", "% of a core", False, cpu)
    row(f"RSS per worker process{master}, busy (max)", "MB", False, _medians(systems, "rss_busy_mb"))
    children = _medians(systems, "rss_busy_children_mb")
    if children:
        row("RSS per child process, busy (max)", "MB", False, children)


def _percent(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else 100 * v for k, v in values.items()}
