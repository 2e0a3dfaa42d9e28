"""`delayed`: the command line: migrate, work, monitor (monitor_cli.py), jobs (jobs_cli.py).

Flags mirror the Ruby rake task's environment knobs (QUEUE/QUEUES, MAX_CLAIMS, MIN_PRIORITY,
MAX_PRIORITY), which are read as well: flags win over the environment, which wins over the
file given with -c. A bad setting exits with status 2 and a message naming the key.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from .cli_common import fail, load_config, with_config
from .db import get_engine, redact
from .errors import DelayedError
from .jobs_cli import jobs_group
from .monitor_cli import monitor
from .web.command import web

log = logging.getLogger("delayed")


@click.group()
@click.version_option(package_name="pydelayed")
def main() -> None:
    """pydelayed: background jobs kept in a SQL table."""


@main.command()
@with_config
@click.option("--sql", is_flag=True, help="Print the DDL instead of running it.")
@click.option(
    "--dialect",
    type=click.Choice(["postgresql", "mysql", "sqlite"]),
    default=None,
    help="With --sql: the dialect to print for (default: the configured database's).",
)
def migrate(config_file: str | None, database_url: str | None, sql: bool, dialect: str | None) -> None:
    """Create the delayed_jobs table and its indexes (safe to run again)."""
    from . import schema

    config = load_config(config_file, {"database_url": database_url})
    table = schema.get_table(config.table_name)
    if sql:
        dialect_obj = _dialect(dialect) if dialect is not None else get_engine().dialect
        for statement in schema.ddl(dialect_obj, table):
            click.echo(f"{statement};\n")
        return
    try:
        created = schema.migrate(get_engine(), table)
    except Exception as exc:
        fail(f"migrate on {redact(config.database_url)} failed: {_one_line(exc)}")
    if created:
        click.echo(f"Created {', '.join(created)} on {redact(config.database_url)}")
    else:
        click.echo(f"{table.name} is up to date on {redact(config.database_url)}")


def _dialect(name: str) -> Any:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    return {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}[name].dialect()


def _one_line(exc: BaseException) -> str:
    from .db import describe_error

    return describe_error(exc)


@main.command()
@with_config
@click.option("--queue", "queue", multiple=True, help="A queue to work (repeatable). Env: QUEUE.")
@click.option("--queues", default=None, help="Comma-separated queues. Env: QUEUES.")
@click.option("--max-claims", type=int, default=None, help="Threads / jobs per pickup. Env: MAX_CLAIMS.")
@click.option("--min-priority", default=None, help="Lowest priority to pick up. Env: MIN_PRIORITY.")
@click.option("--max-priority", default=None, help="Highest priority to pick up. Env: MAX_PRIORITY.")
@click.option("--sleep-delay", default=None, help="Seconds to wait when idle. Env: SLEEP_DELAY.")
@click.option("--read-ahead", type=int, default=None, help="MySQL candidates per pickup.")
@click.option("--require", "require", multiple=True, help="Module with job classes to import (repeatable).")
@click.option("--exit-on-complete", is_flag=True, help="Exit 0 once no job is ready.")
def work(
    config_file: str | None,
    database_url: str | None,
    queue: tuple[str, ...],
    queues: str | None,
    max_claims: int | None,
    min_priority: str | None,
    max_priority: str | None,
    sleep_delay: str | None,
    read_ahead: int | None,
    require: tuple[str, ...],
    exit_on_complete: bool,
) -> None:
    """Work off jobs until SIGTERM/SIGINT (or, with --exit-on-complete, until none is ready)."""
    from .worker import Worker

    queue_list = [*queue, *([q.strip() for q in queues.split(",") if q.strip()] if queues else [])]
    overrides = {
        "database_url": database_url,
        "queues": queue_list or None,
        "max_claims": max_claims,
        "min_priority": min_priority,
        "max_priority": max_priority,
        "sleep_delay": sleep_delay,
        "read_ahead": read_ahead,
    }
    config = load_config(config_file, overrides, require)
    if config.section("tracing")["enabled"]:
        from .tracing import instrument_from_config

        try:
            instrument_from_config(config)
        except DelayedError as exc:
            fail(str(exc))
    from . import prometheus, statsd

    statsd.install(config)
    try:
        prometheus.install(config)  # [prometheus] multiproc_dir: job counters and timings
        worker = Worker(config=config)
    except DelayedError as exc:
        fail(str(exc))
    status = worker.run(exit_on_complete=exit_on_complete)
    if status != 0:
        # A second signal: the running jobs' locks are released; do not wait for their
        # threads (the interpreter would join them at exit), leave now.
        logging.shutdown()
        os._exit(status)
    sys.exit(status)


main.add_command(jobs_group)
main.add_command(monitor)
main.add_command(web)

if __name__ == "__main__":  # pragma: no cover
    main()
