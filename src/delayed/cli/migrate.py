"""`delayed migrate`: apply the pending schema steps, print them (`--sql`), or check (`--check`).

Exit statuses (cli/options.py): 0 done or current; 1 the database failed, or with `--check`
steps are pending; 2 bad config or usage.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .. import schema
from ..db import describe_error, engine_for, redact
from ..errors import DelayedError
from .options import EXIT_FAILED, config_options, fail, load_config

_DIALECTS = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}


@click.command("migrate")
@config_options("migrate")
@click.option(
    "--sql",
    is_flag=True,
    help="Print the pending DDL (with its version rows) instead of running it; against an empty "
    "database, or with --dialect, all of it.",
)
@click.option(
    "--dialect",
    type=click.Choice(sorted(_DIALECTS)),
    default=None,
    help="With --sql: print every step for this dialect without connecting to a database.",
)
@click.option("--check", is_flag=True, help="Exit 1 naming the pending steps, 0 when the schema is current.")
def migrate(sql: bool, dialect: str | None, check: bool, **params: Any) -> None:
    """Bring the schema to this release's version (safe to run again, and on many hosts at once)."""
    config = load_config("migrate", params)
    table = schema.get_table(config.table_name)
    where = redact(config.database_url)
    if sql and dialect is not None:
        _print_sql(schema.full_sql(_DIALECTS[dialect].dialect(), table))
        return
    engine = engine_for(config.database_url)
    try:
        if sql:
            _print_sql(schema.pending_sql(engine, table))
        elif check:
            _check(engine, table, where)
        else:
            _apply(engine, table, where)
    except DelayedError as exc:
        fail(str(exc), EXIT_FAILED)
    except Exception as exc:
        fail(f"migrate on {where} failed: {describe_error(exc)}", EXIT_FAILED)


def _print_sql(statements: list[str]) -> None:
    if not statements:
        click.echo("-- the schema is current: nothing to apply")
    for statement in statements:
        click.echo(f"{statement};\n")


def _check(engine: Any, table: Any, where: str) -> None:
    todo = schema.pending(engine, table)
    if todo:
        listed = "; ".join(f"{step.version} ({step.summary})" for step in todo)
        fail(f"schema of {schema.qualified(table)} on {where} has pending steps: {listed}", EXIT_FAILED)
    click.echo(f"{schema.qualified(table)} is at version {schema.latest_version()} (current) on {where}")


def _apply(engine: Any, table: Any, where: str) -> None:
    done = schema.apply(engine, table)
    for item in done:
        click.echo(f"Recorded {item}" if item.adopted else f"Applied {item}")
    if done:
        click.echo(f"{schema.qualified(table)} is now at version {schema.latest_version()} on {where}")
    else:
        click.echo(f"{schema.qualified(table)} is up to date (version {schema.latest_version()}) on {where}")
