"""Run pydelayed's benchmarks side by side with its PostgreSQL peers; print tables, write JSON and PNGs.

    python bench/run.py --quick          # ~10 min: small sizes, one round, a 60 s soak
    python bench/run.py                  # full: 20,000 jobs, 3 rounds (medians), 1M-row pickup, 10 min soak
    python bench/run.py --smoke          # a minute or two: tiny sizes (the test suite runs this)
    python bench/run.py --list           # the scenarios there are (bench/suite/, see registry.py)

Ratios are "times better for pydelayed": ours/other for rates, other/ours for latency, time
and memory; above 1 means pydelayed is ahead. See bench/README.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import targets
from harness import BENCH, make_systems
from registry import Context, Scenario, discover
from report import MODES, PEER_ORDER, Report, markdown


def parse_args(argv: list[str] | None, scenarios: list[Scenario]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke")
    parser.set_defaults(mode="full")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--systems",
        default="pydelayed," + ",".join(PEER_ORDER),
        help="comma-separated: pydelayed,pgqueuer,oban,chancy,procrastinate",
    )
    defaults = ",".join(s.name for s in scenarios if s.default)
    parser.add_argument("--scenarios", default=defaults, help=f"comma-separated (default: {defaults})")
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
    parser.add_argument("--scale", default=None, help="worker processes per scale point (default 1,2,4,8)")
    parser.add_argument(
        "--scale-hosts",
        default="1",
        help="supervisors standing in for hosts, e.g. 1,2,4 (their children share the worker registry)",
    )
    parser.add_argument("--soak-seconds", type=float, default=None, help="soak length (default by mode)")
    parser.add_argument(
        "--soak-autovacuum",
        choices=["on", "server"],
        default=None,
        help="on: turn the server's autovacuum on for the soak if it is off, then back (default but "
        "in --smoke); server: leave it as the server has it",
    )
    parser.add_argument("--out", default=None, help="JSON file (default bench/results/<mode>-<time>.json)")
    parser.add_argument("--charts", default=None, help="PNG directory (default: the JSON's path minus .json)")
    parser.add_argument("--no-charts", action="store_true", help="write no PNG")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a drain may take")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, registry: list[Scenario]) -> tuple[Report, list[Scenario]]:
    sizes = copy.deepcopy(MODES[args.mode])
    if args.jobs:
        sizes.jobs = args.jobs
    if args.rounds:
        sizes.rounds = args.rounds
    if args.probes:
        sizes.probes = args.probes
    if args.scale:
        sizes.scale = [int(x) for x in args.scale.split(",") if x.strip()]
    known = {s.name: s for s in registry}
    todo = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in todo if s not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}: choose from {', '.join(known)}")
    selected = sorted((known[s] for s in todo), key=lambda s: (s.order, s.name))
    wanted = [s.strip() for s in args.systems.split(",") if s.strip()]
    if "pydelayed" not in wanted:
        wanted.insert(0, "pydelayed")
    systems, missing = make_systems(wanted, supervisor=args.supervisor)
    for name, why in missing.items():
        print(f"-- {name} skipped: {why}", file=sys.stderr)
    report = Report(args, sizes, [s.name for s in systems], missing)
    ctx = Context(args, sizes, systems, report, todo)
    for system in systems:
        settings = ctx.measure("settings", system.name, lambda s=system: s.settings(args.threads))
        report.data["meta"]["settings"][system.name] = settings
    print(
        f"mode={args.mode} W={args.workers} C={args.threads} jobs={sizes.jobs} rounds={sizes.rounds} "
        f"systems={[s.name for s in systems]} scenarios={[s.name for s in selected]}",
        flush=True,
    )
    for sc in selected:
        start = len(report.rows)
        sc.fn(ctx)
        if len(report.rows) > start:
            print(report.table(sc.title, report.rows[start:]), flush=True)
    return report, selected


def write_charts(data: dict[str, Any], selected: list[Scenario], out: Path) -> list[Path]:
    """Each selected scenario's chart; none (and a note) without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("-- no charts: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return []
    written: list[Path] = []
    for sc in selected:
        if sc.chart is not None:
            written += sc.chart(data, out)
    return written


def main(argv: list[str] | None = None) -> int:
    registry = discover()
    args = parse_args(argv, registry)
    if args.list:
        for sc in registry:
            flag = "" if sc.default else " (not run by default)"
            print(f"{sc.name:<16} {sc.title}{flag}")
        return 0
    started = time.strftime("%Y%m%d-%H%M%S")
    report, selected = run(args, registry)
    out = Path(args.out) if args.out else BENCH / "results" / f"{args.mode}-{started}.json"
    goals = targets.evaluate(report.data)
    report.data["targets"] = goals
    report.tables.append(
        markdown("issue 17 targets (ratios from this run)", [["target", "measured", "bar", ""], *goals])
    )
    report.save(out)
    print(report.table("all results"))
    for table in report.tables:
        print(table)
    if not args.no_charts:
        charts_dir = Path(args.charts) if args.charts else out.with_suffix("")
        pngs = write_charts(report.data, selected, charts_dir)
        report.data["charts"] = [str(p) for p in pngs]
        report.save(out)
        for png in pngs:
            print(f"PNG: {png}")
    print(f"\nJSON: {out}")
    return 1 if report.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
