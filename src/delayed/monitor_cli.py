"""`delayed monitor`: report every queue's gauges each interval, or once (`--once`).

`delayed monitor --once --format json` prints one pass and exits 0: a document for a
horizontal autoscaler or a cron check (`alert_age_percent` is the autoscaling signal).
Without `--once` it runs until SIGTERM/SIGINT, emitting events and StatsD gauges.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import click

from .cli_common import fail, load_config, with_config
from .db import describe_error, redact
from .errors import DelayedError


def _queue_list(queue: tuple[str, ...], queues: str | None) -> list[str]:
    return [*queue, *([q.strip() for q in queues.split(",") if q.strip()] if queues else [])]


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


def render_json(metrics: list[Any], monitor: Any, duration: float) -> str:
    """`{table, database_adapter, queues, duration, metrics: [{metric, priority, queue, value}]}`."""
    document = {
        "table": monitor.table.name,
        "database_adapter": monitor.backend.name,
        "queues": monitor.queues,
        "duration": round(duration, 6),
        "metrics": [metric.as_dict() for metric in metrics],
    }
    return json.dumps(document, indent=2)


@click.command("monitor")
@with_config
@click.option("--queue", "queue", multiple=True, help="A queue to report on (repeatable).")
@click.option("--queues", default=None, help="Comma-separated queues to report on.")
@click.option("--interval", default=None, help="Seconds between passes (default [monitor] interval, 60).")
@click.option("--once", is_flag=True, help="Run one pass, print it and exit.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="With --once: how to print the metrics.",
)
@click.option(
    "--prometheus",
    "prometheus_bind",
    default=None,
    metavar="HOST:PORT",
    help="Also serve Prometheus metrics on HOST:PORT/metrics (default [prometheus] bind).",
)
def monitor(
    config_file: str | None,
    database_url: str | None,
    queue: tuple[str, ...],
    queues: str | None,
    interval: str | None,
    once: bool,
    output_format: str,
    prometheus_bind: str | None,
) -> None:
    """Report count, ages and alert_age_percent per queue and priority name (as StatsD gauges)."""
    from . import statsd
    from .config import SECTIONS, ConfigError
    from .monitor import Monitor

    config = load_config(config_file, {"database_url": database_url})
    queue_list = _queue_list(queue, queues)
    seconds = None
    if interval is not None:
        try:
            seconds = SECTIONS["monitor"].settings["interval"].parse(interval)
        except ValueError as exc:
            fail(f"--interval: {exc}")
    try:
        mon = Monitor(config, queues=queue_list or None, interval=seconds)
    except (ConfigError, DelayedError) as exc:
        fail(str(exc))
    statsd.install(config)
    if once and prometheus_bind:
        fail("--prometheus serves metrics until stopped; it cannot be combined with --once")
    if once:
        started = time.perf_counter()
        try:
            metrics = mon.run_once()
        except Exception as exc:
            where = redact(config.database_url)
            click.echo(f"Error: monitor query on {where} failed: {describe_error(exc)}", err=True)
            sys.exit(1)
        duration = time.perf_counter() - started
        text = render_json(metrics, mon, duration) if output_format == "json" else render_text(metrics)
        click.echo(text)
        mon.close()
        return
    if prometheus_bind or config.section("prometheus")["bind"]:
        from .prometheus import start_exporter  # [prometheus] / --prometheus: see prometheus.py

        try:
            start_exporter(config, prometheus_bind)
        except (ConfigError, ImportError) as exc:
            fail(str(exc))
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    mon.run(stop)
