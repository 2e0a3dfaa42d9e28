"""Issue 17's targets, read from one run's results: the measured ratio, the bar, met or not.

Every figure is a ratio of two measurements from the same run (or an absolute bar the issue
sets); a target whose scenario did not run is "not measured", never "met".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import median
from report import PEER_ORDER

Line = list[str]


def _median_rate(runs: list[dict[str, Any]] | None, key: str = "rate") -> float | None:
    values = [r[key] for r in runs or [] if r.get(key) is not None]
    return median(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _line(
    target: str, measured: float | None, bar: float, fmt: Callable[[float], str], higher: bool = True
) -> Line:
    if measured is None:
        return [target, "not measured", fmt(bar), "-"]
    met = measured >= bar if higher else measured <= bar
    return [target, fmt(measured), ("≥ " if higher else "≤ ") + fmt(bar), "met" if met else "NOT met"]


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _best_peer(results: dict[str, Any], pick: Callable[[Any], float | None]) -> tuple[str, float] | None:
    found = [(p, v) for p in PEER_ORDER if (v := pick(results.get(p))) is not None]
    return max(found, key=lambda pv: pv[1]) if found else None


def evaluate(data: dict[str, Any]) -> list[Line]:
    """One line per target: [target, measured, bar, status]."""
    res = data.get("results", {})
    drains = res.get("drain", {})
    ceilings = res.get("ceiling", {})
    ours = _median_rate(drains.get("pydelayed"))
    lines: list[Line] = []

    plain = _median_rate(drains.get("pydelayed plain"))
    lines.append(
        _line("1. supervisor drain / plain `delayed work` (same W x C)", _ratio(ours, plain), 0.9, _x)
    )
    master = (
        _median_rate(drains.get("pydelayed"), "main_cpu_share") if data["meta"].get("supervisor") else None
    )
    lines.append(
        _line(
            "1. supervisor master CPU during the drain",
            None if master is None else 100 * master,
            2.0,
            lambda v: f"{v:.1f}% of a core",
            higher=False,
        )
    )

    best = _best_peer(drains, _median_rate)
    name = f" ({best[0]})" if best else ""
    lines.append(_line(f"2. drain / best peer{name}", _ratio(ours, best[1] if best else None), 2.0, _x))
    pg50 = next((v for k, v in ceilings.items() if k.startswith("ceiling pg x50")), None)
    lines.append(
        _line("2. drain / raw PostgreSQL ceiling x50 (2x4)", _ratio(ours, _median_rate(pg50)), 0.5, _x)
    )

    for backend, label in (("mysql", "MariaDB"), ("sqlite", "SQLite")):
        other = res.get("other-backends", {}).get(backend) or {}
        drained = (other.get("drain") or {}).get("rate")
        ceiling = (other.get("ceiling") or {}).get("rate")
        lines.append(_line(f"3. {label} drain / its raw ceiling", _ratio(drained, ceiling), 0.6, _x))

    enq = res.get("enqueue", {})
    single = (enq.get("pydelayed") or {}).get("single_rate")
    raw = (enq.get("ceiling insert") or {}).get("rate")
    lines.append(_line("4. single enqueue / raw psycopg INSERT+commit loop", _ratio(single, raw), 0.9, _x))
    best_single = _best_peer(enq, lambda r: (r or {}).get("single_rate"))
    lines.append(
        _line(
            "4. single enqueue / best peer" + (f" ({best_single[0]})" if best_single else ""),
            _ratio(single, best_single[1] if best_single else None),
            1.0,
            _x,
        )
    )
    bulk = (enq.get("pydelayed") or {}).get("bulk_rate")
    lines.append(_line("4. bulk enqueue on PostgreSQL", bulk, 100_000, lambda v: f"{v:,.0f} jobs/s"))
    best_bulk = _best_peer(enq, lambda r: (r or {}).get("bulk_rate"))
    lines.append(
        _line(
            "4. bulk enqueue / best peer" + (f" ({best_bulk[0]})" if best_bulk else ""),
            _ratio(bulk, best_bulk[1] if best_bulk else None),
            1.5,
            _x,
        )
    )

    points = [p for p in res.get("scale", {}).get("pydelayed", []) if p.get("hosts", 1) == 1]
    at_max = max(points, key=lambda p: p["processes"])["rate"] if points else None
    peak = max((p["rate"] for p in points), default=None)
    lines.append(_line("5. scale: drain at the most processes / peak", _ratio(at_max, peak), 0.9, _x))

    soak = res.get("soak", {}).get("pydelayed")
    lines.append(
        _line(
            "6. soak: worst per-bucket p99 start latency",
            soak and soak["worst_bucket_p99_ms"],
            10.0,
            lambda v: f"{v:.2f} ms",
            higher=False,
        )
    )
    if soak:
        lines.append(
            [
                "6. soak: no job lost or run twice, none left or failed",
                f"lost {soak['lost']}, twice {soak['duplicates']}, left {soak['rows_left']}, "
                f"failed {soak['failed_rows']}",
                "all 0",
                "met" if soak["correct"] else "NOT met",
            ]
        )
    else:
        lines.append(["6. soak: no job lost or run twice", "not measured", "all 0", "-"])
    lines.append(
        _line(
            "6. soak: table size after 2 min (max / at 2 min)",
            soak and soak["size_growth_after_2min"],
            1.1,
            _x,
            higher=False,
        )
    )
    return lines
