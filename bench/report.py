"""Sizes per mode, and the Report: results as JSON plus the tables printed as scenarios finish."""

from __future__ import annotations

import argparse
import json
import os
import platform
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PEER_ORDER = ["pgqueuer", "oban", "chancy", "procrastinate"]
Row = tuple[str, str, bool, dict[str, float | None]]


@dataclass
class Sizes:
    jobs: int  # drain and bulk enqueue
    single: int  # single enqueues
    probes: int  # latency probes
    rounds: int  # drain rounds (median reported)
    pickup: list[int]  # ready rows for the pickup scenario
    failed: int  # failed rows beside them
    claims: int  # timed claims per pickup size
    scale: list[int] = field(default_factory=lambda: [1, 2, 4, 8])  # worker processes
    scale_jobs: int = 0  # jobs per scale-curve drain (0: `jobs`)
    soak_seconds: float = 600.0
    soak_capacity_jobs: int = 0  # jobs drained to measure capacity before the soak (0: `jobs`)


MODES = {
    "smoke": Sizes(
        jobs=50,
        single=20,
        probes=10,
        rounds=1,
        pickup=[1000],
        failed=100,
        claims=5,
        scale=[1, 2],
        scale_jobs=200,
        soak_seconds=30,
        soak_capacity_jobs=500,
    ),
    "quick": Sizes(
        jobs=5000,
        # 8 processes drain 5,000 jobs in under a second, while later children still boot
        # (0.52x of the peak in one run, 0.84x with 20,000 the same hour): too short to
        # show claim contention rather than start-up.
        scale_jobs=20_000,
        single=300,
        probes=60,
        rounds=1,
        pickup=[10_000, 100_000],
        failed=10_000,
        claims=100,
        soak_seconds=60,
    ),
    "full": Sizes(
        jobs=20_000,
        single=2000,
        probes=300,
        rounds=3,
        pickup=[10_000, 100_000, 1_000_000],
        failed=100_000,
        claims=300,
        soak_seconds=600,
    ),
}


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
                "settings": {},
            },
            "results": {},
            "errors": {},
        }
        self.peers = [p for p in PEER_ORDER if p in systems]
        self.rows: list[Row] = []
        self.tables: list[str] = []  # free-form tables (add_table), printed with the rest

    def add_table(self, title: str, header: list[str], lines: list[list[Any]]) -> str:
        """A table of any shape (no ratio columns); printed at the end too. Returns its text."""
        cells = [header] + [[c if isinstance(c, str) else _fmt(c) for c in line] for line in lines]
        text = markdown(title, cells)
        self.tables.append(text)
        return text

    def put(self, scenario: str, system: str, value: Any) -> None:
        self.data["results"].setdefault(scenario, {})[system] = value

    def append(self, scenario: str, system: str, value: Any) -> None:
        """Add one round's result to a list (drain rounds)."""
        self.data["results"].setdefault(scenario, {}).setdefault(system, []).append(value)

    def error(self, scenario: str, system: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        print(f"!! {scenario} / {system} failed: {text[:1500]}", flush=True)
        self.data["errors"][f"{scenario}/{system}"] = text[:5000]

    def row(self, label: str, unit: str, higher_better: bool, values: dict[str, float | None]) -> None:
        self.rows.append((label, unit, higher_better, values))

    def table(self, title: str, rows: list[Row] | None = None) -> str:
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
        return markdown(f"{title}\n(ratio = times better for pydelayed; > 1 means pydelayed is ahead)", lines)

    def save(self, path: Path) -> None:
        self.data["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.data["meta"]["load_avg_end"] = os.getloadavg()
        self.data["table"] = "\n".join([self.table("all results"), *self.tables])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.data, indent=2, default=str))


def markdown(title: str, lines: list[list[str]]) -> str:
    """A markdown table under a `## title`; the first line is the header."""
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(lines[0]))]
    out = [f"\n## {title}"]
    for i, line in enumerate(lines):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            out.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(out)


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
