"""`delayed monitor`: report every queue's gauges each interval, or once (`--once`).

`delayed monitor --once --format json` prints one pass and exits 0: a document for a
horizontal autoscaler or a cron check (`alert_age_percent` is the autoscaling signal).
Without `--once` it runs until SIGTERM/SIGINT, emitting events and StatsD gauges.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import click

from .. import statsd
from ..db import describe_error, redact
from ..errors import DelayedError
from ..monitor import Monitor
from ..prometheus import start_exporter
from ..wakeup import Wakeup
from .options import EXIT_FAILED, config_options, fail, load_config


def render_text(metrics: list[Any]) -> str:
    """One line per (priority, queue): `queue  priority  count=.. future_count=.. ...`."""
    rows: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for metric in metrics:
        rows.setdefault((metric.priority, metric.queue), {})[metric.name] = metric.value
    width_q = max([len(str(q)) for _, q in rows] + [5])
    width_p = max([len(str(p)) for p, _ in rows] + [8])
    lines = [f"{'queue':<{width_q}}  {'priority':<{width_p}}  metrics"]
    for (priority, queue), values in rows.items():
        body = " ".join(f"{name}={value}" for name, value in values.items())
        lines.append(f"{queue!s:<{width_q}}  {priority!s:<{width_p}}  {body}")
    return "\n".join(lines)


def render_limited(limited: list[Any]) -> str:
    """The keys at their concurrency limit, most rows waiting first ("" when none)."""
    if not limited:
        return ""
    lines = ["", "concurrency keys at their limit (rows waiting):"]
    lines += [f"  {k.key}  limit {k.limit}  waiting {k.waiting}" for k in limited]
    return "\n".join(lines)


def render_json(metrics: list[Any], monitor: Any, duration: float) -> str:
    """`{table, database_adapter, queues, duration, metrics: [{metric, priority, queue, value}]}`."""
    document = {
        "table": monitor.table.name,
        "database_adapter": monitor.backend.name,
        "queues": monitor.queues,
        "duration": round(duration, 6),
        "metrics": [metric.as_dict() for metric in metrics],
        "concurrency_limited": [
            {"key": k.key, "limit": k.limit, "waiting": k.waiting} for k in getattr(monitor, "limited", [])
        ],
    }
    return json.dumps(document, indent=2)


@click.command("monitor")
@config_options("monitor")
@click.option("--once", is_flag=True, help="Run one pass, print it and exit.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="With --once: how to print the metrics.",
)
def monitor(once: bool, output_format: str, **params: Any) -> None:
    """Report count, ages and alert_age_percent per queue and priority name (as StatsD gauges)."""
    config = load_config("monitor", params)
    try:
        mon = Monitor(config)
    except DelayedError as exc:
        fail(str(exc))
    statsd.install(config)
    if once and params.get("prometheus_bind"):
        fail("--prometheus serves metrics until stopped; it cannot be combined with --once")
    if once:
        started = time.perf_counter()
        try:
            metrics = mon.run_once()
        except Exception as exc:
            where = redact(config.database_url)
            fail(f"monitor query on {where} failed: {describe_error(exc)}", EXIT_FAILED)
        duration = time.perf_counter() - started
        if output_format == "json":
            text = render_json(metrics, mon, duration)
        else:
            text = render_text(metrics) + render_limited(mon.limited)
        click.echo(text)
        return
    if config.section("prometheus").bind:  # [prometheus] bind or --prometheus HOST:PORT
        try:
            start_exporter(config)
        except (DelayedError, ImportError) as exc:
            fail(str(exc))
    stop = stop_on_signals()
    try:
        mon.run(stop)
    finally:
        stop.close()


def stop_on_signals() -> Wakeup:
    """A Wakeup that SIGTERM and SIGINT set: the handler only sets a flag and writes a byte
    (a threading.Event's set() could deadlock on the lock the interrupted wait holds)."""
    stop = Wakeup()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return stop
