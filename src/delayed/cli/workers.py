"""`delayed workers`: the worker registry (every live `delayed work` and supervisor child).

    delayed workers [--json]    name, host, pid, pool, queues, heartbeat age, jobs held now

Heartbeat ages are measured with the database's clock. A worker whose heartbeat is older
than worker_timeout is marked dead: the next rescue (any live worker) gives its jobs back.
Exit status: 0 done; 1 the database failed; 2 bad input (the config).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import sqlalchemy as sa

from ..db import describe_error, redact
from ..errors import ConfigError
from ..workers import WorkerInfo, list_workers
from .options import EXIT_FAILED, config_options, fail, load_config


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _row(info: WorkerInfo) -> tuple[str, ...]:
    return (
        info.name,
        info.hostname,
        str(info.pid),
        info.pool or "-",
        ",".join(info.queues) or "all",
        _age(info.heartbeat_age) + (" DEAD" if info.dead else ""),
        str(info.jobs),
    )


@click.command("workers")
@config_options("workers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (times are naive UTC, ISO 8601).")
def workers(as_json: bool, **params: Any) -> None:
    """The registered workers: name, host, pid, pool, queues, heartbeat age, jobs held now."""
    config = load_config("workers", params, require_modules=False)
    try:
        found = list_workers(config)
    except ConfigError as exc:  # e.g. a database_url that is not one
        fail(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        click.echo(f"Error: database {redact(config.database_url)} failed: {describe_error(exc)}", err=True)
        click.echo("(has `delayed migrate` created the worker registry table?)", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps([info.as_dict() for info in found], indent=2))
        return
    if not found:
        click.echo("no registered workers")
        return
    headers = ("name", "host", "pid", "pool", "queues", "heartbeat", "jobs")
    rows = [headers, *(_row(info) for info in found)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
