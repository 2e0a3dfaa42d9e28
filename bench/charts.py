"""PNG charts from a results JSON (matplotlib, the `bench` extra): one function per chart.

    python bench/charts.py bench/results/full-<time>.json [out_dir]   # redraw a saved run

run.py calls each selected scenario's chart after the run; each function reads only the
JSON's "results", draws nothing (returns []) when its scenario did not run, and returns the
paths it wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OURS = "#1f6fb4"
OURS_PLAIN = "#7fb2e0"
PEER = "#999999"
CEILING = "#e08a2e"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _subtitle(data: dict[str, Any]) -> str:
    meta = data.get("meta", {})
    load = meta.get("load_avg_start") or [float("nan")]
    return (
        f"{meta.get('mode', '?')} run {meta.get('started', '')}, W={meta.get('workers')} x "
        f"C={meta.get('threads')}, load avg {load[0]:.2f} at start"
    )


def _color(name: str) -> str:
    if name == "pydelayed":
        return OURS
    if name.startswith("pydelayed"):
        return OURS_PLAIN
    return CEILING if name.startswith("ceiling") else PEER


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def drain(data: dict[str, Any], out: Path) -> list[Path]:
    """Horizontal bars: median drain rate per system and ceiling, whiskers from min to max round."""
    results = data.get("results", {})
    runs = {**results.get("drain", {}), **results.get("ceiling", {})}
    if not runs:
        return []
    names = sorted(runs, key=lambda k: sorted(r["rate"] for r in runs[k])[len(runs[k]) // 2])
    medians, lows, highs = [], [], []
    for name in names:
        rates = sorted(r["rate"] for r in runs[name])
        mid = rates[len(rates) // 2]
        medians.append(mid)
        lows.append(mid - rates[0])
        highs.append(rates[-1] - mid)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(names) + 1.6))
    bars = ax.barh(names, medians, xerr=[lows, highs], color=[_color(n) for n in names], capsize=3)
    for bar, value in zip(bars, medians, strict=True):
        ax.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:,.0f}", va="center", fontsize=9
        )
    ax.set_xlabel("jobs drained per second (median of rounds; whiskers: min-max)")
    ax.set_title("Drain on PostgreSQL: no-op jobs\n" + _subtitle(data), fontsize=10)
    ax.set_xlim(0, max(medians) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    return [_save(fig, out / "drain.png")]


def latency(data: dict[str, Any], out: Path) -> list[Path]:
    """Cumulative distribution of start latency per system (idle workers, one job at a time)."""
    runs = data.get("results", {}).get("latency", {})
    runs = {k: v for k, v in runs.items() if v.get("samples_ms")}
    if not runs:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, r in sorted(runs.items(), key=lambda kv: kv[1]["p50_ms"]):
        samples = sorted(r["samples_ms"])
        ys = [(i + 1) / len(samples) for i in range(len(samples))]
        style = {"linewidth": 2.5, "color": OURS} if name == "pydelayed" else {"linewidth": 1.4}
        label = f"{name}: p50 {r['p50_ms']:.2f} / p99 {r['p99_ms']:.2f} ms"
        ax.step(samples, ys, where="post", label=label, **style)
    ax.set_xscale("log")
    from matplotlib import ticker

    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
    ax.set_xlabel("start latency, ms (enqueue call to the job's first line; log scale)")
    ax.set_ylabel("share of jobs started")
    ax.axhline(0.99, color="#cc3333", linewidth=0.8, linestyle=":")
    ax.set_title("Start latency on PostgreSQL, idle workers\n" + _subtitle(data), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    return [_save(fig, out / "latency.png")]


def scale(data: dict[str, Any], out: Path) -> list[Path]:
    """Throughput and claims per second against worker processes (one line per host count)."""
    points = data.get("results", {}).get("scale", {}).get("pydelayed", [])
    if not points:
        return []
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for hosts in sorted({p["hosts"] for p in points}):
        mine = sorted((p for p in points if p["hosts"] == hosts), key=lambda p: p["processes"])
        xs = [p["processes"] for p in mine]
        tag = "" if hosts == 1 else f", {hosts} supervisors"
        top.plot(xs, [p["rate"] for p in mine], marker="o", label=f"jobs/s{tag}", color=OURS)
        claims = [p.get("claims_per_s") for p in mine]
        if any(c is not None for c in claims):
            top.plot(xs, claims, marker="s", linestyle="--", label=f"claims/s{tag}", color=CEILING)
        bottom.plot(xs, [p.get("locked_mean") for p in mine], marker="o", label=f"mean{tag}", color=OURS)
        bottom.plot(xs, [p.get("locked_max") for p in mine], marker="^", linestyle=":", label=f"max{tag}")
    peak = max(p["rate"] for p in points)
    top.axhline(0.9 * peak, color="#cc3333", linewidth=0.8, linestyle=":", label="0.9 x peak")
    top.set_ylabel("per second")
    top.set_ylim(bottom=0)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    top.set_title("Scale curve: drain with more worker processes\n" + _subtitle(data), fontsize=10)
    bottom.set_ylabel("rows claimed, not yet done")
    bottom.set_xlabel("worker processes (C threads each)")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(sorted({p["processes"] for p in points}))
    bottom.get_xaxis().set_major_formatter(_plt().ScalarFormatter())
    bottom.set_ylim(bottom=0)
    bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    return [_save(fig, out / "scale.png")]


def soak(data: dict[str, Any], out: Path) -> list[Path]:
    """Soak over time: start latency p50/p99 per bucket; jobs table size and backlog."""
    r = data.get("results", {}).get("soak", {}).get("pydelayed")
    if not r:
        return []
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    bucket = r["bucket_s"]
    mids = [b["t"] + bucket / 2 for b in r["buckets"]]
    top.plot(mids, [b["p99_ms"] for b in r["buckets"]], marker="o", color=OURS, label="p99")
    top.plot(mids, [b["p50_ms"] for b in r["buckets"]], marker=".", color=OURS_PLAIN, label="p50")
    if r.get("late_buckets"):
        late = [(b["t"] + bucket / 2, b["late_p99_ms"]) for b in r["late_buckets"]]
        top.plot(
            *zip(*late, strict=True), marker="x", color=PEER, linestyle=":", label="scheduled: lateness p99"
        )
    top.axhline(10, color="#cc3333", linewidth=0.8, linestyle=":", label="10 ms")
    top.set_yscale("log")
    top.set_ylabel(f"start latency, ms (per {bucket:.0f} s)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3, which="both")
    ok = "no job lost or run twice" if r["correct"] else "CHECK FAILED"
    top.set_title(
        f"Soak: {r['seconds']:.0f} s at {r['achieved_rate']:,.0f} jobs/s (half of "
        f"{r['capacity_rate']:,.0f}), {ok}\n" + _subtitle(data),
        fontsize=10,
    )
    ts = [s["t"] for s in r["sizes"]]
    bottom.plot(ts, [s["total_mb"] for s in r["sizes"]], color=OURS, label="table + indexes (MB)")
    bottom.plot(ts, [s["heap_mb"] for s in r["sizes"]], color=OURS_PLAIN, label="heap (MB)")
    bottom.plot(ts, [s["indexes_mb"] for s in r["sizes"]], color=CEILING, label="indexes (MB)")
    bottom.set_ylabel("MB")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("seconds since the load started")
    twin = bottom.twinx()
    twin.plot(ts, [s["rows"] for s in r["sizes"]], color=PEER, linestyle="--", label="rows in the table")
    twin.set_ylabel("rows (backlog and scheduled)")
    twin.set_ylim(bottom=0)
    lines = bottom.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    bottom.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper left")
    bottom.grid(alpha=0.3)
    return [_save(fig, out / "soak.png")]


ALL = {"drain": drain, "latency": latency, "scale": scale, "soak": soak}


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    path = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else path.with_suffix("")
    data = json.loads(path.read_text())
    for fn in ALL.values():
        for written in fn(data, out):
            print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
