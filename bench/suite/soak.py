"""The soak: steady mixed load on PostgreSQL; per-bucket p99 start latency, table size, correctness."""

from __future__ import annotations

import charts
import soak as soak_run
from registry import Context, scenario


def bucket_seconds(seconds: float) -> float:
    """A minute per bucket for real soaks; six buckets for short ones (the 30 s CI smoke)."""
    return 60.0 if seconds >= 300 else max(5.0, seconds / 6)


@scenario("soak", order=70, title="soak (PostgreSQL, ours)", chart=charts.soak)
def soak(ctx: Context) -> None:
    """Run the soak (see bench/soak.py); rows per bucket; the check in the JSON and the table."""
    seconds = ctx.args.soak_seconds or ctx.sizes.soak_seconds
    bucket = bucket_seconds(seconds)
    r = ctx.measure(
        "soak",
        f"{seconds:.0f} s",
        lambda: soak_run.soak(
            ctx.ours,
            ctx.W,
            ctx.C,
            seconds,
            ctx.sizes.soak_capacity_jobs or ctx.sizes.jobs,
            bucket,
            max(1.0, bucket / 6),
            ctx.timeout,
            ctx.args.soak_autovacuum or ("server" if ctx.args.mode == "smoke" else "on"),
        ),
    )
    if not r:
        return
    ctx.report.put("soak", "pydelayed", r)
    sizes = {round(x["t"] // bucket * bucket): x for x in _per_bucket(r["sizes"], bucket)}
    lines = []
    for b in r["buckets"]:
        size = sizes.get(round(b["t"]), {})
        lines.append(
            [
                f"{b['t']:.0f}-{b['t'] + bucket:.0f}",
                b["n"],
                b["p50_ms"],
                b["p99_ms"],
                b["max_ms"],
                size.get("total_mb"),
                size.get("heap_mb"),
                size.get("dead_tup"),
            ]
        )
    header = ["t (s)", "jobs", "p50 ms", "p99 ms", "max ms", "table+idx MB", "heap MB", "dead tuples"]
    print(ctx.report.add_table(f"soak per {bucket:.0f} s (start latency of jobs due at once)", header, lines))
    growth = r["size_growth_after_2min"]
    summary = [
        ["capacity just before (soak jobs)", f"{r['capacity_rate']:,.0f} jobs/s"],
        ["enqueue rate held (half of it)", f"{r['achieved_rate']:,.0f} jobs/s ({r['enqueued']:,} jobs)"],
        ["worst bucket p99", f"{r['worst_bucket_p99_ms']:.2f} ms"],
        [
            "scheduled jobs: worst bucket lateness p99",
            _ms(max((b["late_p99_ms"] for b in r["late_buckets"]), default=None)),
        ],
        ["size growth after the first 2 min (max / at 2 min)", "-" if growth is None else f"{growth:.2f}x"],
        [
            "lost / run twice / rows left / failed rows",
            f"{r['lost']} / {r['duplicates']} / {r['rows_left']} / {r['failed_rows']}",
        ],
        ["fail-once jobs: failed once / enqueued", f"{r['failed_once']} / {r['fail_jobs']}"],
        ["correct", "yes" if r["correct"] else "NO"],
        [
            "autovacuum: the server's setting / during the soak",
            f"{r['autovacuum']['server']} / {r['autovacuum']['during_soak']}",
        ],
    ]
    print(ctx.report.add_table("soak summary", ["figure", "value"], summary))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _per_bucket(samples: list[dict], bucket: float) -> list[dict]:
    """The first size sample at or after each bucket boundary, and the last one."""
    picked, edge = [], 0.0
    for s in samples:
        if s["t"] >= edge:
            picked.append(s)
            edge = (s["t"] // bucket + 1) * bucket
    if samples and picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    return picked
