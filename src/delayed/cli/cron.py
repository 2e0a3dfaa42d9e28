"""`delayed cron`: list the recurring jobs, run one now, pause and resume (API: delayed.recurring.api).

    delayed cron list [--json]     key, schedule, next tick, last enqueued tick and its job's state
    delayed cron run KEY           enqueue the entry's job now (recorded as a "manual" run)
    delayed cron pause KEY         stop enqueuing its ticks on every host (stored in the database)
    delayed cron resume KEY        enqueue again from its next tick

The entries come from the config's `[[cron]]` tables and from `delayed.cron(...)` calls in the
`require` modules, so pass the same -c (and --require) as the workers. Exit status: 0 done;
1 the database failed; 2 bad input (the config, a bad entry, a key no entry has).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from ..config import Config
from ..db import describe_error, redact
from ..errors import ConfigError
from ..recurring import api
from .options import EXIT_FAILED, config_options, fail, load_config

T = TypeVar("T")


@contextmanager
def _errors(config: Config) -> Iterator[None]:
    """A bad entry or key: exit 2 with its message; a database failure: exit 1 naming the URL."""
    try:
        yield
    except ConfigError as exc:
        fail(str(exc))
    except sa.exc.SQLAlchemyError as exc:
        click.echo(f"Error: database {redact(config.database_url)} failed: {describe_error(exc)}", err=True)
        click.echo("(has `delayed migrate` created the cron tables?)", err=True)
        sys.exit(EXIT_FAILED)


def _call(params: dict[str, Any], action: Callable[[Config], T]) -> T:
    config = load_config("cron", params)
    with _errors(config):
        return action(config)
    raise AssertionError("unreachable")  # _errors exits on every error


@click.group("cron")
def cron_group() -> None:
    """Recurring jobs ([[cron]] tables and delayed.cron() entries)."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


@cron_group.command("list")
@config_options("cron")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (times are naive UTC, ISO 8601).")
def list_command(as_json: bool, **params: Any) -> None:
    """Every entry: schedule, next tick, last enqueued tick and its job's state (times in UTC)."""
    statuses = _call(params, api.status)
    if as_json:
        click.echo(json.dumps([status.as_dict() for status in statuses], indent=2))
        return
    if not statuses:
        click.echo("no cron entries (add [[cron]] tables to the config, or delayed.cron() calls)")
        return
    headers = ("key", "schedule", "job", "next tick (UTC)", "last tick (UTC)", "last job")
    rows = []
    for status in statuses:
        last = status.last_run
        if last is None:
            last_job = "-"
        else:
            state = status.last_job_state or "not recorded"
            last_job = f"{last.job_id} {state}" + (f" ({last.kind})" if last.kind != "schedule" else "")
        rows.append(
            (
                status.key,
                status.schedule,
                status.job,
                "paused" if status.paused else _when(status.next_tick),
                _when(last.run_at if last else None),
                last_job,
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    for row in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@cron_group.command("run")
@click.argument("key")
@config_options("cron")
def run_command(key: str, **params: Any) -> None:
    """Enqueue KEY's job now, whatever its schedule (and even when it is paused)."""
    job_id, run_at = _call(params, lambda config: api.run_now(config, key))
    click.echo(f"cron {key}: enqueued job {job_id} (run_at {run_at.isoformat()} UTC)")


@cron_group.command("pause")
@click.argument("key")
@config_options("cron")
def pause_command(key: str, **params: Any) -> None:
    """Stop enqueuing KEY's ticks, on every host, until `delayed cron resume KEY`."""
    changed = _call(params, lambda config: api.pause(config, key))
    click.echo(f"cron {key}: paused" if changed else f"cron {key}: already paused")


@cron_group.command("resume")
@click.argument("key")
@config_options("cron")
def resume_command(key: str, **params: Any) -> None:
    """Enqueue KEY's ticks again, from its next tick (ticks while paused are not caught up)."""
    changed = _call(params, lambda config: api.resume(config, key))
    click.echo(f"cron {key}: resumed" if changed else f"cron {key}: was not paused")
