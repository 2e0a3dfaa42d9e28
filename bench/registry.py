"""The scenario registry: what `run.py --scenarios` can name, and what a scenario is handed.

A scenario is one function taking a Context, registered with one decorator line, in any
module of bench/suite/ (every module there is imported by discover()):

    @scenario("unique-enqueue", order=15, title="enqueue with a unique key (PostgreSQL)")
    def unique_enqueue(ctx: Context) -> None:
        r = ctx.measure("unique-enqueue", "pydelayed", lambda: my_measurement(ctx.sizes.single))
        if r:
            ctx.report.put("unique-enqueue", "pydelayed", r)
            ctx.report.row("enqueue with a unique key", "jobs/s", True, {"pydelayed": r["rate"]})

The runner prints the rows a scenario added as one table under its title as soon as it
returns, saves everything it `put` in the JSON, and draws its `chart` if it has one.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import System
from report import Report, Sizes

ChartFn = Callable[[dict[str, Any], Path], list[Path]]


@dataclass
class Scenario:
    name: str
    fn: Callable[[Context], None]
    order: int  # run order among the selected scenarios
    default: bool  # part of the default --scenarios list
    title: str
    chart: ChartFn | None = None  # draws PNGs from the results JSON into a directory


REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str, *, order: int, default: bool = True, title: str = "", chart: ChartFn | None = None
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Register `fn` as the scenario `name` (the one line a new scenario needs)."""

    def register(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        if name in REGISTRY and REGISTRY[name].fn is not fn:
            raise RuntimeError(f"two scenarios are named {name!r}: rename one of them")
        REGISTRY[name] = Scenario(name, fn, order, default, title or name, chart)
        return fn

    return register


def discover() -> list[Scenario]:
    """Import every module of bench/suite/ (each registers its scenarios); all, in run order."""
    import suite

    for module in pkgutil.iter_modules(suite.__path__):
        importlib.import_module(f"suite.{module.name}")
    return sorted(REGISTRY.values(), key=lambda s: (s.order, s.name))


@dataclass
class Context:
    """What a scenario gets: the command line, sizes, systems, the report, shared figures."""

    args: argparse.Namespace
    sizes: Sizes
    systems: list[System]  # pydelayed first (as configured: supervisor or plain), then the peers
    report: Report
    selected: list[str]  # the scenario names of this run
    shared: dict[str, Any] = field(default_factory=dict)  # figures one scenario leaves for another

    @property
    def W(self) -> int:  # W: worker processes, as in the README
        return self.args.workers

    @property
    def C(self) -> int:  # C: threads per process, as in the README
        return self.args.threads

    @property
    def timeout(self) -> float:
        return self.args.timeout

    @property
    def ours(self) -> System:
        return next(s for s in self.systems if s.ours)

    @property
    def ours_plain(self) -> System | None:
        """Ours as W `delayed work` processes beside the supervisor (None if ours is plain)."""
        ours = self.ours
        return ours.variant("pydelayed plain", supervisor=False) if ours.supervisor else None

    @property
    def peers(self) -> list[System]:
        return [s for s in self.systems if not s.ours]

    def measure(self, scenario: str, name: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement; print its time; on an exception record it and return None."""
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:
            self.report.error(scenario, name, exc)
            return None
        print(f"   {scenario:<14} {name:<24} {time.perf_counter() - t0:6.1f} s", flush=True)
        return value
