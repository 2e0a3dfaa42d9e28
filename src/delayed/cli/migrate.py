"""`delayed migrate`: create the jobs table and its indexes, or print their DDL (`--sql`)."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .. import schema
from ..db import describe_error, engine_for, redact
from .options import EXIT_FAILED, config_options, fail, load_config

_DIALECTS = {"postgresql": postgresql, "mysql": mysql, "sqlite": sqlite}


@click.command("migrate")
@config_options("migrate")
@click.option("--sql", is_flag=True, help="Print the DDL instead of running it.")
@click.option(
    "--dialect",
    type=click.Choice(sorted(_DIALECTS)),
    default=None,
    help="With --sql: the dialect to print for (default: the configured database's).",
)
def migrate(sql: bool, dialect: str | None, **params: Any) -> None:
    """Create the delayed_jobs table and its indexes (safe to run again)."""
    config = load_config("migrate", params)
    table = schema.get_table(config.table_name)
    if sql:
        engine_dialect = engine_for(config.database_url).dialect
        target = _DIALECTS[dialect].dialect() if dialect is not None else engine_dialect
        for statement in schema.ddl(target, table):
            click.echo(f"{statement};\n")
        return
    try:
        created = schema.migrate(engine_for(config.database_url), table)
    except Exception as exc:
        fail(f"migrate on {redact(config.database_url)} failed: {describe_error(exc)}", EXIT_FAILED)
    if created:
        click.echo(f"Created {', '.join(created)} on {redact(config.database_url)}")
    else:
        click.echo(f"{table.name} is up to date on {redact(config.database_url)}")
