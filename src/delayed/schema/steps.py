"""The versioned schema steps: `STEPS`, in version order, each the DDL text of one change.

A step's `statements(dialect, names)` returns its DDL for one dialect, so `delayed migrate
--sql` prints exactly what `delayed migrate` runs. Versions are pre-assigned (see
docs/migrations.md): 1 baseline jobs table, 2 cron tables, 3 worker registry, 4 unique keys
and concurrency leases, 5 kept results. Applied versions are recorded one row each, so a
step merged later with a lower number still applies.

`adopt` serves databases made before versioning (the jobs table exists, the version table
does not): it inspects the database and returns None when the step's objects are absent
(the step then runs), or the statements that complete them (possibly none); the step is
then recorded as applied. Steps added after versioning need no `adopt`.

Every identifier in the DDL is quoted by SQLAlchemy (CreateTable, CreateIndex, the dialect's
identifier preparer), never spliced by hand: the names come from configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable, DropIndex

from .tables import (
    KEPT_RESULTS_VERSION,
    TableNames,
    cron_tables,
    get_table,
    index_applies,
    leases_table,
    make_table,
    workers_table,
)

Statements = Callable[[Dialect, TableNames], list[str]]
Adopt = Callable[[sa.Inspector, Dialect, TableNames], list[str] | None]


@dataclass(frozen=True)
class Step:
    """One schema change: its version, a one-line summary, its DDL per dialect."""

    version: int
    summary: str
    statements: Statements
    adopt: Adopt | None = None


def create_table(table: sa.Table, dialect: Dialect) -> list[str]:
    """CREATE TABLE and the table's CREATE INDEXes for `dialect`, as text."""
    statements = [str(CreateTable(table).compile(dialect=dialect)).strip()]
    for index in sorted(table.indexes, key=lambda i: i.name or ""):
        if index_applies(index, dialect):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return statements


def _quoted_name(dialect: Dialect, schema: str | None, name: str) -> str:
    prep = dialect.identifier_preparer
    return (prep.quote_schema(schema) + "." if schema else "") + prep.quote(name)


def _string_literal(dialect: Dialect, value: str) -> str:
    process = sa.String().literal_processor(dialect)
    assert process is not None
    return str(process(value))


def postgres_extras(table: sa.Table, dialect: Dialect) -> list[str]:
    """Fillfactor, autovacuum, and the statement-level NOTIFY trigger (PostgreSQL only).

    Every row is written at least twice (insert, claim, delete), so pages keep room for HOT
    updates and autovacuum runs early; the trigger wakes idle workers when jobs are inserted.
    Each statement is safe to run again (adoption of an old table re-runs them).
    """
    prep = dialect.identifier_preparer
    quoted = prep.format_table(table)
    live_index = _quoted_name(dialect, table.schema, f"idx_{table.name}_live")
    function = _quoted_name(dialect, table.schema, f"{table.name}_notify")
    trigger = prep.quote(f"{table.name}_notify")
    channel = _string_literal(dialect, table.name)
    return [
        f"ALTER TABLE {quoted} SET (fillfactor = 33, autovacuum_vacuum_scale_factor = 0.02)",
        f"ALTER INDEX {live_index} SET (fillfactor = 33)",
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify({channel}, ''); RETURN NULL; END $$",
        f"DROP TRIGGER IF EXISTS {trigger} ON {quoted}",
        f"CREATE TRIGGER {trigger} AFTER INSERT ON {quoted} FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
    ]


# ------------------------------------------------------------------ 1: the baseline jobs table
def _baseline(dialect: Dialect, names: TableNames) -> list[str]:
    table = make_table(names.configured, sa.MetaData(), version=1)  # the first release's shape
    statements = create_table(table, dialect)
    if dialect.name == "postgresql":
        statements += postgres_extras(table, dialect)
    return statements


def _adopt_baseline(inspector: sa.Inspector, dialect: Dialect, names: TableNames) -> list[str] | None:
    """An old jobs table: create its missing indexes and (PostgreSQL) re-apply the extras."""
    if not inspector.has_table(names.jobs, schema=names.schema):
        return None
    table = make_table(names.configured, sa.MetaData(), version=1)
    existing = {ix["name"] for ix in inspector.get_indexes(names.jobs, schema=names.schema)}
    statements = [
        str(CreateIndex(index).compile(dialect=dialect)).strip()
        for index in sorted(table.indexes, key=lambda i: i.name or "")
        if index.name not in existing and index_applies(index, dialect)
    ]
    if dialect.name == "postgresql":
        statements += postgres_extras(table, dialect)
    return statements


# ------------------------------------------------------------------ 2: the cron tables
def _cron(dialect: Dialect, names: TableNames) -> list[str]:
    statements: list[str] = []
    for table in cron_tables(names.configured):
        statements += create_table(table, dialect)
    return statements


def _adopt_cron(inspector: sa.Inspector, dialect: Dialect, names: TableNames) -> list[str] | None:
    """Made by the cron release's unversioned migrate: present (both tables), or run the step."""
    runs, entries = cron_tables(names.configured)
    present = [inspector.has_table(t.name, schema=t.schema) for t in (runs, entries)]
    if not all(present):
        return None if not any(present) else _missing_cron_tables(runs, entries, present, dialect)
    return []


def _missing_cron_tables(
    runs: sa.Table, entries: sa.Table, present: list[bool], dialect: Dialect
) -> list[str]:
    statements: list[str] = []
    for table, there in zip((runs, entries), present, strict=True):
        if not there:
            statements += create_table(table, dialect)
    return statements


# ------------------------------------------------------------------ 3: the worker registry
def _workers(dialect: Dialect, names: TableNames) -> list[str]:
    """delayed_workers: a new table, so nothing to do to the rows of a live jobs table."""
    return create_table(workers_table(names.configured), dialect)


def _adopt_workers(inspector: sa.Inspector, dialect: Dialect, names: TableNames) -> list[str] | None:
    """Adoption (no version rows) of a database that has the registry table: record step 3,
    creating its index if missing; without the table, run the step."""
    workers = workers_table(names.configured)
    if not inspector.has_table(workers.name, schema=workers.schema):
        return None
    existing = {ix["name"] for ix in inspector.get_indexes(workers.name, schema=workers.schema)}
    return [
        str(CreateIndex(index).compile(dialect=dialect)).strip()
        for index in sorted(workers.indexes, key=lambda i: i.name or "")
        if index.name not in existing
    ]


def new_indexes(table: sa.Table, version: int, dialect: Dialect) -> list[str]:
    """CREATE INDEX for the indexes of `table` marked `info=since(version)` on `dialect`."""
    return [
        str(CreateIndex(index).compile(dialect=dialect)).strip()
        for index in sorted(table.indexes, key=lambda i: i.name or "")
        if index.info.get("since") == version and index_applies(index, dialect)
    ]


# ------------------------------------------------------------------ 4: unique jobs, concurrency leases
def _step4_columns(table: sa.Table) -> list[sa.Column[object]]:
    return [table.c.unique_key, table.c.concurrency_key, table.c.concurrency_limit]


def _add_column(table: sa.Table, column: sa.Column[object], dialect: Dialect) -> str:
    prep = dialect.identifier_preparer
    kind = column.type.compile(dialect=dialect)
    return f"ALTER TABLE {prep.format_table(table)} ADD COLUMN {prep.quote(column.name)} {kind}"


def _unique_and_leases(dialect: Dialect, names: TableNames) -> list[str]:
    """Issue 13: the jobs table's nullable unique_key, concurrency_key and concurrency_limit
    (added in place on a table full of jobs), their indexes, and the leases table."""
    table = get_table(names.configured)
    statements = [_add_column(table, column, dialect) for column in _step4_columns(table)]
    statements += new_indexes(table, 4, dialect)
    return statements + create_table(leases_table(names.configured), dialect)


def _adopt_unique(inspector: sa.Inspector, dialect: Dialect, names: TableNames) -> list[str] | None:
    """A table that has step 4's columns without a version row (a version table dropped, or
    a pre-release build of issue 13): complete what is missing instead of adding twice."""
    if not inspector.has_table(names.jobs, schema=names.schema):
        return None
    columns = {c["name"] for c in inspector.get_columns(names.jobs, schema=names.schema)}
    table = get_table(names.configured)
    if not columns & {c.name for c in _step4_columns(table)}:
        return None
    statements = [_add_column(table, c, dialect) for c in _step4_columns(table) if c.name not in columns]
    existing = {ix["name"] for ix in inspector.get_indexes(names.jobs, schema=names.schema)}
    statements += [
        statement
        for index, statement in zip(_step4_indexes(table), new_indexes(table, 4, dialect), strict=True)
        if index.name not in existing
    ]
    leases = leases_table(names.configured)
    if not inspector.has_table(leases.name, schema=leases.schema):
        statements += create_table(leases, dialect)
    return statements


def _step4_indexes(table: sa.Table) -> list[sa.Index]:
    """In new_indexes' order (by name)."""
    return sorted((i for i in table.indexes if i.info.get("since") == 4), key=lambda i: i.name or "")


# ------------------------------------------------------------------ 5: kept results (issue 15)
def _kept_results(dialect: Dialect, names: TableNames) -> list[str]:
    """finished_at and result (nullable: in place on a full table), the pickup index rebuilt
    without finished rows, and an index on finished_at for pruning.

    The pickup index keeps its name: PostgreSQL and SQLite drop and create it in the step's
    transaction (CREATE INDEX blocks writes while it builds: on a big table, migrate at a
    quiet time); MySQL in one ALTER TABLE (DROP INDEX, ADD INDEX), so a step cut short and
    run again never finds the index missing.
    """
    table = get_table(names.configured)
    prep = dialect.identifier_preparer
    quoted = prep.format_table(table)
    statements = [
        f"ALTER TABLE {quoted} ADD COLUMN {prep.quote(column.name)} {column.type.compile(dialect=dialect)}"
        for column in (table.c.finished_at, table.c.result)
    ]
    live_name = f"idx_{table.name}_live"
    live = next(ix for ix in table.indexes if ix.name == live_name and index_applies(ix, dialect))
    if dialect.name in ("mysql", "mariadb"):
        columns = ", ".join(prep.quote(column.name) for column in live.columns)
        name = prep.quote(live_name)
        statements.append(f"ALTER TABLE {quoted} DROP INDEX {name}, ADD INDEX {name} ({columns})")
    else:
        before = make_table(names.configured, sa.MetaData(), version=KEPT_RESULTS_VERSION - 1)
        old = next(ix for ix in before.indexes if ix.name == live_name and index_applies(ix, dialect))
        statements.append(str(DropIndex(old).compile(dialect=dialect)).strip())
        statements.append(str(CreateIndex(live).compile(dialect=dialect)).strip())
        if dialect.name == "postgresql":
            statements.append(
                f"ALTER INDEX {_quoted_name(dialect, table.schema, live_name)} SET (fillfactor = 33)"
            )
    statements += [
        str(CreateIndex(ix).compile(dialect=dialect)).strip()
        for ix in table.indexes
        if ix.name == f"idx_{table.name}_finished"
    ]
    return statements


def _adopt_kept_results(inspector: sa.Inspector, dialect: Dialect, names: TableNames) -> list[str] | None:
    """An unversioned table already at this shape (made from the latest Table, e.g. by
    `metadata.create_all`): record the step, creating the pruning index if it is missing."""
    columns = {c["name"] for c in inspector.get_columns(names.jobs, schema=names.schema)}
    if "finished_at" not in columns:
        return None
    table = get_table(names.configured)
    existing = {ix["name"] for ix in inspector.get_indexes(names.jobs, schema=names.schema)}
    return [
        str(CreateIndex(ix).compile(dialect=dialect)).strip()
        for ix in table.indexes
        if ix.name == f"idx_{table.name}_finished" and ix.name not in existing
    ]


# ------------------------------------------------------------------ 6: the failed-jobs list index
def _failed_list(dialect: Dialect, names: TableNames) -> list[str]:
    """The dashboard's failed list at a million rows (bench/README.md, web_million.py)."""
    return new_indexes(get_table(names.configured), 6, dialect)


def _adopt_failed_list(inspector: sa.Inspector, dialect: Dialect, names: TableNames) -> list[str] | None:
    """Adoption (no version rows) of a table whose step-6 index exists: record it, do not make
    it twice (the index name is the step's only object)."""
    if not inspector.has_table(names.jobs, schema=names.schema):
        return None
    existing = {ix["name"] for ix in inspector.get_indexes(names.jobs, schema=names.schema)}
    return [] if f"idx_{names.jobs}_failed_list" in existing else None


STEPS: tuple[Step, ...] = (
    Step(1, "baseline jobs table and its indexes", _baseline, _adopt_baseline),
    Step(2, "cron tables for recurring jobs", _cron, _adopt_cron),
    Step(
        3,
        "worker registry: delayed_workers (heartbeats, rescue of dead workers' jobs)",
        _workers,
        _adopt_workers,
    ),
    Step(
        4,
        "unique keys and concurrency limits: three job columns, the leases table",
        _unique_and_leases,
        _adopt_unique,
    ),
    Step(
        KEPT_RESULTS_VERSION,
        "kept results: finished_at, result, pickup index without finished rows",
        _kept_results,
        _adopt_kept_results,
    ),
    Step(6, "failed-jobs list index (PostgreSQL, SQLite)", _failed_list, _adopt_failed_list),
)


def latest_version(steps: tuple[Step, ...] | None = None) -> int:
    """The highest version this release knows."""
    return max(step.version for step in (STEPS if steps is None else steps))
