"""`delayed supervise -c FILE` (alias `delayed-supervisor`): the preforking master."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from ..db import describe_error, engine_for, redact
from ..errors import DelayedError
from ..schema import SchemaOutOfDate, check_current, get_table, latest_version
from ..supervisor import Settings, load_settings, serve
from .options import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, config_file_option


@click.command("supervise")
@config_file_option
@click.option("--check", is_flag=True, help="Check the config, print what it means, exit 0 (good) or 2.")
@click.option(
    "--connect", is_flag=True, help="With --check: also reach the database and its jobs table (1 if not)."
)
def supervise(config_file: str | None, check: bool, connect: bool) -> None:
    """Run workers under a preforking master: drains on TERM, reloads on HUP (see conf/delayed.toml)."""
    if check or connect:
        sys.exit(check_config(config_file, connect))
    sys.exit(serve(config_file))


def check_config(path: str | None, connect: bool) -> int:
    """Print what the file means (or what is wrong with it); with `connect`, try the database."""
    try:
        settings = load_settings(path)
    except DelayedError as exc:
        click.echo(f"delayed-supervisor: error: {exc}", err=True)
        return EXIT_BAD_INPUT
    click.echo(f"{path or 'no file (defaults and environment)'}: OK")
    for line in describe(settings):
        click.echo(f"  {line}")
    if not connect:
        return EXIT_OK
    config = settings.config
    table = get_table(config.table_name)
    try:
        engine = engine_for(config.database_url)
        with engine.connect() as conn:
            present = sa.inspect(conn).has_table(table.name, schema=table.schema)
        if present:
            check_current(engine, table)
    except SchemaOutOfDate as exc:
        click.echo(f"Error: {exc}", err=True)
        return EXIT_FAILED
    except Exception as exc:
        click.echo(f"Error: database {redact(config.database_url)}: {describe_error(exc)}", err=True)
        return EXIT_FAILED
    if not present:
        click.echo(f"Error: table {config.table_name} does not exist: run `delayed migrate`", err=True)
        return EXIT_FAILED
    click.echo(f"  database reachable; table {config.table_name} present, schema version {latest_version()}")
    return EXIT_OK


def describe(settings: Settings) -> list[str]:
    """One line per thing a reader of the file would want confirmed."""
    config = settings.config
    lines = [f"database: {redact(config.database_url)} (table {config.table_name})"]
    for pool in settings.pools:
        if pool.kind == "monitor":
            lines.append("monitor: one child")
            continue
        if pool.kind == "scheduler":
            lines.append(f"cron scheduler: one child, {len(settings.cron_entries)} entr(ies)")
            continue
        queues = ", ".join(pool.queues) or "all"
        low = "any" if pool.min_priority is None else pool.min_priority
        high = "any" if pool.max_priority is None else pool.max_priority
        lines.append(
            f"pool {pool.name}: {pool.workers} child(ren) x {pool.max_claims} thread(s); "
            f"queues {queues}; priorities {low}..{high}"
        )
    lines.append(
        f"max_run_time {config.max_run_time:g} s (+{settings.max_run_time_grace:g} s grace); "
        f"graceful_timeout {settings.graceful_timeout:g} s; "
        f"heartbeat_timeout {settings.heartbeat_timeout:g} s"
    )
    if config.require:
        lines.append(f"require: {', '.join(config.require)}")
    for entry in settings.cron_entries:
        lines.append(f"cron {entry.key}: {entry.schedule.describe()} -> {entry.job}")
    if settings.cron_entries and not config.scheduler.enabled:
        lines.append("cron scheduler: off ([scheduler] enabled = false)")
    return lines
