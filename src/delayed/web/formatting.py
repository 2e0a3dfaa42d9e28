"""Turning numbers and times into what the pages show: durations, ages, sparkline points."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ..timeutil import utcnow


def duration(seconds: float | None) -> str:
    """'0s', '45s', '3m 20s', '2h 5m', '3d 4h': two units at most."""
    if seconds is None:
        return ""
    seconds = max(float(seconds), 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def relative(value: datetime | None, now: datetime | None = None) -> str:
    """'3m 20s ago' or 'in 5m 0s' for a naive UTC timestamp."""
    if value is None:
        return ""
    now = now or utcnow()
    delta = (now - value).total_seconds()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def timestamp(value: datetime | None) -> str:
    """'2026-11-23 05:21:35 UTC' (the table holds naive UTC)."""
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(value: Any) -> str:
    """Arguments as indented JSON (escaped by the template, never marked safe)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def first_line(text: str | None, width: int = 120) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def sparkline(values: Sequence[float], width: int = 300, height: int = 48, pad: int = 2) -> str:
    """The `points` of an SVG polyline for `values`, scaled to the box (0 at the bottom)."""
    if not values:
        return ""
    top = max(max(values), 1.0)
    count = len(values)
    step = (width - 2 * pad) / max(count - 1, 1)
    points = []
    for index, value in enumerate(values):
        x = pad + index * step
        y = height - pad - (max(value, 0.0) / top) * (height - 2 * pad)
        points.append(f"{x:.1f},{y:.1f}")
    if count == 1:
        points.append(f"{width - pad:.1f},{points[0].split(',')[1]}")
    return " ".join(points)
