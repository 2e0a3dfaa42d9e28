"""Run pydelayed's benchmarks side by side with its PostgreSQL peers; print tables, write JSON.

    python bench/run.py --quick          # a few minutes: small sizes, one round
    python bench/run.py                  # full: 20,000 jobs, 3 rounds (medians), 1M-row pickup
    python bench/run.py --smoke          # seconds: tiny sizes (the test suite runs this)

Ratios are "times better for pydelayed": ours/peer for rates, peer/ours for latency, time
and memory; above 1 means pydelayed is ahead. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios
from harness import BENCH, make_systems, median

PEER_ORDER = ["pgqueuer", "oban", "chancy", "procrastinate"]
MASTER = " (ours: the supervisor's master)"
ALL_SCENARIOS = ["enqueue", "drain", "latency", "ceiling", "pickup", "other-backends"]


@dataclass
class Sizes:
    jobs: int
    single: int
    probes: int
    rounds: int
    pickup: list[int]
    failed: int
    claims: int


MODES = {
    "smoke": Sizes(jobs=50, single=20, probes=10, rounds=1, pickup=[1000], failed=100, claims=5),
    "quick": Sizes(
        jobs=5000, single=300, probes=60, rounds=1, pickup=[10_000, 100_000], failed=10_000, claims=100
    ),
    "full": Sizes(
        jobs=20_000,
        single=2000,
        probes=300,
        rounds=3,
        pickup=[10_000, 100_000, 1_000_000],
        failed=100_000,
        claims=300,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke")
    parser.set_defaults(mode="full")
    parser.add_argument(
        "--systems",
        default="pydelayed," + ",".join(PEER_ORDER),
        help="comma-separated: pydelayed,pgqueuer,oban,chancy,procrastinate",
    )
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help=",".join(ALL_SCENARIOS))
    parser.add_argument("--workers", type=int, default=2, help="worker processes (W)")
    parser.add_argument("--threads", type=int, default=10, help="concurrency per process (C)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per drain (default by mode)")
    parser.add_argument("--probes", type=int, default=None, help="latency probes (default by mode)")
    parser.add_argument("--rounds", type=int, default=None, help="drain rounds; the median is reported")
    parser.add_argument(
        "--plain-workers",
        dest="supervisor",
        action="store_false",
        help="run ours as W `delayed work` processes instead of `delayed-supervisor`",
    )
    parser.add_argument("--backends", default="mysql,sqlite", help="ours alone on these too (other-backends)")
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/<mode>-<time>.json)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a drain may take")
    return parser.parse_args(argv)


class Report:
    """Collects results (JSON) and prints each table as soon as its scenario is done."""

    def __init__(
        self, args: argparse.Namespace, sizes: Sizes, systems: list[str], missing: dict[str, str]
    ) -> None:
        self.data: dict[str, Any] = {
            "meta": {
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
                "mode": args.mode,
                "workers": args.workers,
                "threads": args.threads,
                "sizes": sizes.__dict__,
                "systems": systems,
                "missing": missing,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_avg_start": os.getloadavg(),
                "supervisor": args.supervisor,
            },
            "results": {},
            "errors": {},
        }
        self.peers = [p for p in PEER_ORDER if p in systems]
        self.rows: list[tuple[str, str, bool, dict[str, float | None]]] = []

    def put(self, scenario: str, system: str, value: Any) -> None:
        self.data["results"].setdefault(scenario, {})[system] = value

    def error(self, scenario: str, system: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        print(f"!! {scenario} / {system} failed: {text[:1500]}", file=sys.stderr)
        self.data["errors"][f"{scenario}/{system}"] = text[:5000]

    def row(self, label: str, unit: str, higher_better: bool, values: dict[str, float | None]) -> None:
        self.rows.append((label, unit, higher_better, values))

    def table(
        self, title: str, rows: list[tuple[str, str, bool, dict[str, float | None]]] | None = None
    ) -> str:
        rows = self.rows if rows is None else rows
        columns = ["pydelayed", *self.peers]
        extra = sorted({k for _, _, _, v in rows for k in v if k not in columns})
        columns += extra
        header = ["scenario", "unit", *columns]
        lines = [header]
        for label, unit, higher, values in rows:
            ours = values.get("pydelayed")
            cells = [label, unit, _fmt(ours)]
            for col in columns[1:]:
                value = values.get(col)
                if value is None:
                    cells.append("-")
                    continue
                ratio = _ratio(ours, value, higher)
                cells.append(f"{_fmt(value)} ({ratio})" if ratio else _fmt(value))
            lines.append(cells)
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        out = [f"\n## {title}", "(ratio = times better for pydelayed; > 1 means pydelayed is ahead)"]
        sep = "| " + " | ".join("-" * w for w in widths) + " |"
        for i, line in enumerate(lines):
            out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
            if i == 0:
                out.append(sep)
        return "\n".join(out)

    def save(self, path: Path) -> None:
        self.data["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.data["meta"]["load_avg_end"] = os.getloadavg()
        self.data["table"] = self.table("all results")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=2, default=str))


def _fmt(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(ours: float | None, other: float | None, higher_better: bool) -> str:
    if not ours or not other or ours != ours or other != other:
        return ""
    return f"{(ours / other if higher_better else other / ours):.2f}x"


def run(args: argparse.Namespace) -> Report:
    sizes = MODES[args.mode]
    if args.jobs:
        sizes.jobs = args.jobs
    if args.rounds:
        sizes.rounds = args.rounds
    if args.probes:
        sizes.probes = args.probes
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    if "pydelayed" not in wanted:
        wanted.insert(0, "pydelayed")
    systems, missing = make_systems(wanted, supervisor=args.supervisor)
    for name, why in missing.items():
        print(f"-- {name} skipped: {why}", file=sys.stderr)
    todo = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    report = Report(args, sizes, [s.name for s in systems], missing)
    W, C = args.workers, args.threads
    print(
        f"mode={args.mode} W={W} C={C} jobs={sizes.jobs} rounds={sizes.rounds} "
        f"systems={[s.name for s in systems]}",
        flush=True,
    )

    def attempt(scenario: str, name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:
            report.error(scenario, name, exc)
            return None
        print(f"   {scenario:<12} {name:<14} {time.perf_counter() - t0:6.1f} s", flush=True)
        return value

    if "enqueue" in todo:
        single: dict[str, float | None] = {}
        bulk: dict[str, float | None] = {}
        for system in systems:
            r = attempt(
                "enqueue",
                system.name,
                lambda s=system: scenarios.enqueue(s, "postgresql", sizes.single, sizes.jobs),
            )
            if r:
                report.put("enqueue", system.name, r)
                single[system.name], bulk[system.name] = r["single_rate"], r["bulk_rate"]
        report.row(f"enqueue, one job per call ({sizes.single})", "jobs/s", True, single)
        report.row(f"enqueue, bulk ({sizes.jobs} in one call)", "jobs/s", True, bulk)
        print(report.table("enqueue (PostgreSQL)", report.rows[-2:]), flush=True)

    if "drain" in todo or "ceiling" in todo:
        first_row = len(report.rows)
        rates: dict[str, list[float]] = {}
        walls: dict[str, list[float]] = {}
        busy: dict[str, list[float]] = {}
        busy_children: dict[str, list[float]] = {}
        for rnd in range(sizes.rounds):
            for system in systems if "drain" in todo else []:
                r = attempt(
                    f"drain#{rnd + 1}",
                    system.name,
                    lambda s=system: scenarios.drain(s, "postgresql", sizes.jobs, W, C, args.timeout),
                )
                if r:
                    report.data["results"].setdefault("drain", {}).setdefault(system.name, []).append(r)
                    rates.setdefault(system.name, []).append(r["rate"])
                    walls.setdefault(system.name, []).append(r["wall_s"])
                    if r["rss_busy_mb"]:
                        busy.setdefault(system.name, []).append(r["rss_busy_mb"])
                    if r["rss_busy_children_mb"]:
                        busy_children.setdefault(system.name, []).append(r["rss_busy_children_mb"])
            for batch in (1, 10) if "ceiling" in todo else ():
                name = f"ceiling x{batch}"
                r = attempt(
                    f"ceiling#{rnd + 1}",
                    name,
                    lambda b=batch: scenarios.ceiling(W, C, b, sizes.jobs, args.timeout),
                )
                if r:
                    report.data["results"].setdefault("ceiling", {}).setdefault(name, []).append(r)
                    rates.setdefault(name, []).append(r["rate"])
        report.row(
            f"drain {sizes.jobs} no-op jobs, W={W} x C={C} (median of {sizes.rounds})",
            "jobs/s",
            True,
            {k: median(v) for k, v in rates.items()},
        )
        report.row("drain wall time incl. start-up", "s", False, {k: median(v) for k, v in walls.items()})
        report.row(
            f"RSS per worker process{MASTER if args.supervisor else ''}, busy (max)",
            "MB",
            False,
            {k: median(v) for k, v in busy.items()},
        )
        if busy_children:
            report.row(
                "RSS per child process, busy (max)",
                "MB",
                False,
                {k: median(v) for k, v in busy_children.items()},
            )
        print(report.table("drain (PostgreSQL)", report.rows[first_row:]), flush=True)

    if "latency" in todo:
        p50: dict[str, float | None] = {}
        p99: dict[str, float | None] = {}
        idle: dict[str, float | None] = {}
        idle_children: dict[str, float | None] = {}
        for system in systems:
            r = attempt(
                "latency", system.name, lambda s=system: scenarios.latency(s, W, C, sizes.probes, 10, 0.02)
            )
            if r:
                report.put("latency", system.name, r)
                p50[system.name], p99[system.name], idle[system.name] = (
                    r["p50_ms"],
                    r["p99_ms"],
                    r["rss_idle_mb"],
                )
                if r["rss_idle_children_mb"]:
                    idle_children[system.name] = r["rss_idle_children_mb"]
        report.row(f"start latency p50 ({sizes.probes} jobs, idle workers)", "ms", False, p50)
        report.row("start latency p99", "ms", False, p99)
        report.row(f"RSS per worker process{MASTER if args.supervisor else ''}, idle", "MB", False, idle)
        if idle_children:
            report.row("RSS per child process, idle", "MB", False, idle_children)
        print(report.table("latency (PostgreSQL)", report.rows[-3:]), flush=True)

    if "pickup" in todo:
        start = len(report.rows)
        for size in sizes.pickup:
            r = attempt(
                "pickup", f"{size}", lambda n=size: scenarios.pickup(n, sizes.failed, sizes.claims, C)
            )
            if r:
                report.data["results"].setdefault("pickup", {})[str(size)] = r
                report.row(
                    f"claim {C} jobs, {size:,} ready + {sizes.failed:,} failed, stale stats",
                    "ms",
                    False,
                    {"pydelayed": r["median_ms"]},
                )
                report.row(
                    f"claim {C} jobs, {size:,} ready + {sizes.failed:,} failed, analyzed",
                    "ms",
                    False,
                    {"pydelayed": r["analyzed_median_ms"]},
                )
        print(report.table("pickup cost (PostgreSQL, ours)", report.rows[start:]), flush=True)

    if "other-backends" in todo:
        ours = next(s for s in systems if s.name == "pydelayed")
        start = len(report.rows)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            e = attempt(
                "enqueue",
                f"ours/{backend}",
                lambda b=backend: scenarios.enqueue(ours, b, sizes.single, sizes.jobs),
            )
            d = attempt(
                "drain",
                f"ours/{backend}",
                lambda b=backend: scenarios.drain(_plain(ours), b, sizes.jobs, W, C, args.timeout),
            )
            report.put("other-backends", backend, {"enqueue": e, "drain": d})
            if e:
                report.row(
                    f"{backend}: enqueue, one per call", "jobs/s", True, {"pydelayed": e["single_rate"]}
                )
                report.row(f"{backend}: enqueue, bulk", "jobs/s", True, {"pydelayed": e["bulk_rate"]})
            if d:
                report.row(f"{backend}: drain W={W} x C={C}", "jobs/s", True, {"pydelayed": d["rate"]})
        print(report.table("pydelayed on MySQL/MariaDB and SQLite", report.rows[start:]), flush=True)
    return report


def _plain(system: Any) -> Any:
    """Ours without the supervisor (other backends use `delayed work` processes)."""
    from dataclasses import replace

    return replace(system, supervisor=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.strftime("%Y%m%d-%H%M%S")
    report = run(args)
    out = Path(args.out) if args.out else BENCH / "results" / f"{args.mode}-{started}.json"
    report.save(out)
    print(report.table("all results"))
    print(f"\nJSON: {out}")
    return 1 if report.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
