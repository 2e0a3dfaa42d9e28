"""The `delayed_jobs` table (the Ruby gem's columns) and its indexes, per dialect.

`delayed.schema.jobs` is a plain SQLAlchemy Core `Table` on `delayed.schema.metadata`, so
Alembic users can include it in their own migrations. `migrate(engine)` creates what is
missing and is safe to run again; `ddl(dialect_name)` returns the same DDL as text.

Index choices (see the Ruby gem's migrations 03-07):
- pickup index `idx_delayed_jobs_live`, ordered like the pickup query (priority, run_at, id):
  PostgreSQL: partial `WHERE failed_at IS NULL`, without locked_at/locked_by so that a claim
  is a HOT update; queue last so a queue filter is checked in the index.
  SQLite: partial, (priority, run_at); the rowid (= id) is implicitly the last key.
  MySQL/MariaDB: no partial indexes, so failed_at leads: (failed_at, priority, run_at); InnoDB
  appends the primary key, which gives the id tiebreak.
- `idx_delayed_jobs_failed` (priority, queue) WHERE failed_at IS NOT NULL, for the monitor.
- `index_delayed_jobs_on_name`.
On PostgreSQL `migrate` also sets fillfactor 33 and a 0.02 autovacuum scale factor (every row
is written at least twice), and installs a statement-level trigger that NOTIFYs idle workers
when jobs are inserted, so they start without waiting for the next poll.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex, CreateTable

metadata = sa.MetaData()

_Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def make_table(name: str = "delayed_jobs", meta: sa.MetaData | None = None) -> sa.Table:
    """Build the jobs table under `name` (index names follow the table name)."""
    meta = metadata if meta is None else meta
    table = sa.Table(
        name,
        meta,
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("handler", _LongText, nullable=False),
        sa.Column("last_error", _LongText, nullable=True),
        sa.Column("run_at", _Timestamp, nullable=False),
        sa.Column("locked_at", _Timestamp, nullable=True),
        sa.Column("failed_at", _Timestamp, nullable=True),
        sa.Column("locked_by", sa.String(255), nullable=True),
        sa.Column("queue", sa.String(255), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", _Timestamp, nullable=True),
        sa.Column("updated_at", _Timestamp, nullable=True),
        # Kept results (keep_finished): a successful job's row stays, out of the pickup index.
        sa.Column("finished_at", _Timestamp, nullable=True),
        sa.Column("result", _LongText, nullable=True),
    )
    sa.Index(f"index_{name}_on_name", table.c.name)
    sa.Index(
        f"idx_{name}_live",
        table.c.priority,
        table.c.run_at,
        table.c.id,
        table.c.queue,
        postgresql_where=sa.and_(table.c.failed_at.is_(None), table.c.finished_at.is_(None)),
    ).ddl_if(dialect="postgresql")
    sa.Index(
        f"idx_{name}_live",
        table.c.priority,
        table.c.run_at,
        sqlite_where=sa.and_(table.c.failed_at.is_(None), table.c.finished_at.is_(None)),
    ).ddl_if(dialect="sqlite")
    # MySQL has no partial index: both markers lead, so the ready range (NULL, NULL, priority,
    # run_at) holds no failed and no finished row.
    sa.Index(
        f"idx_{name}_live",
        table.c.failed_at,
        table.c.finished_at,
        table.c.priority,
        table.c.run_at,
    ).ddl_if(callable_=lambda ddl, target, bind, dialect, **kw: dialect.name in ("mysql", "mariadb"))
    # Pruning kept results and `delayed jobs list --finished` (partial where the database can).
    sa.Index(
        f"idx_{name}_finished",
        table.c.finished_at,
        postgresql_where=table.c.finished_at.isnot(None),
        sqlite_where=table.c.finished_at.isnot(None),
    )
    sa.Index(
        f"idx_{name}_failed",
        table.c.priority,
        table.c.queue,
        postgresql_where=table.c.failed_at.isnot(None),
        sqlite_where=table.c.failed_at.isnot(None),
    ).ddl_if(callable_=lambda ddl, target, bind, dialect, **kw: dialect.name in ("postgresql", "sqlite"))
    return table


jobs = make_table()
_tables: dict[str, sa.Table] = {"delayed_jobs": jobs}


def get_table(name: str = "delayed_jobs") -> sa.Table:
    """The Table for `name`; tables other than delayed_jobs live on their own MetaData."""
    if name not in _tables:
        _tables[name] = make_table(name, sa.MetaData())
    return _tables[name]


def notify_channel(table: sa.Table) -> str:
    """The LISTEN/NOTIFY channel for a table: its name."""
    return table.name


def _postgres_extras(table: sa.Table) -> list[str]:
    name = table.name
    quoted = f'"{name}"'
    function = f'"{name}_notify"'
    return [
        f"ALTER TABLE {quoted} SET (fillfactor = 33, autovacuum_vacuum_scale_factor = 0.02)",
        f'ALTER INDEX "idx_{name}_live" SET (fillfactor = 33)',
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{notify_channel(table)}', ''); RETURN NULL; END $$",
        f"DROP TRIGGER IF EXISTS {function} ON {quoted}",
        f"CREATE TRIGGER {function} AFTER INSERT ON {quoted} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
    ]


def ddl(dialect: sa.engine.Dialect, table: sa.Table = jobs) -> list[str]:
    """The statements `migrate` runs on an empty database, as text for `--sql`."""
    statements = [str(CreateTable(table).compile(dialect=dialect)).strip()]
    for index in sorted(table.indexes, key=lambda i: i.name or ""):
        if _index_applies(index, dialect):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    if dialect.name == "postgresql":
        statements.extend(_postgres_extras(table))
    for cron_table in cron_tables(table.name):
        statements.append(str(CreateTable(cron_table).compile(dialect=dialect)).strip())
        for index in sorted(cron_table.indexes, key=lambda i: i.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return statements


def _index_applies(index: sa.Index, dialect: sa.engine.Dialect) -> bool:
    condition = index._ddl_if
    if condition is None:
        return True
    if condition.dialect is not None:
        names = {condition.dialect} if isinstance(condition.dialect, str) else set(condition.dialect)
        return dialect.name in names
    if condition.callable_ is not None:
        return bool(condition.callable_(None, index, None, dialect))
    return True


def migrate(engine: Engine, table: sa.Table = jobs) -> list[str]:
    """Create the tables and indexes that are missing; returns what it created. Idempotent."""
    inspector = sa.inspect(engine)
    created: list[str] = []
    with engine.begin() as conn:
        created += _create_cron_tables(conn, inspector, table)
        if not inspector.has_table(table.name):
            table.create(conn)
            created.append(f"table {table.name}")
        else:
            existing = {ix["name"] for ix in inspector.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in existing and _index_applies(index, engine.dialect):
                    index.create(conn)
                    created.append(f"index {index.name}")
        if engine.dialect.name == "postgresql":
            for statement in _postgres_extras(table):
                conn.exec_driver_sql(statement)
    return created


# ============================================================================ cron tables
# ISSUE 14 (recurring jobs). The one place the cron tables are declared; `migrate` creates
# them when missing. To become a versioned migration step once the migration framework
# (branch `schema`) is on main.
#
# delayed_cron_runs: one row per (entry key, tick) ever enqueued, inserted in the job's own
#   transaction with an insert-or-skip: the primary key makes a tick enqueue once across every
#   host. `job_id` is the delayed_jobs row it made; `kind` says "schedule", "catch_up" or
#   "manual" (`delayed cron run`). Indexed on run_at so pruning reads old rows in order.
# delayed_cron_entries: state an operator sets per entry and every host must see (paused).
def cron_table_names(jobs_table_name: str) -> tuple[str, str]:
    """(runs, entries) table names beside a jobs table: delayed_jobs -> delayed_cron_runs, ..."""
    prefix = jobs_table_name[: -len("_jobs")] if jobs_table_name.endswith("_jobs") else jobs_table_name
    return f"{prefix}_cron_runs", f"{prefix}_cron_entries"


_cron_tables: dict[str, tuple[sa.Table, sa.Table]] = {}


def cron_tables(jobs_table_name: str = "delayed_jobs") -> tuple[sa.Table, sa.Table]:
    """The (runs, entries) Tables that go with the jobs table `jobs_table_name`."""
    if jobs_table_name not in _cron_tables:
        runs_name, entries_name = cron_table_names(jobs_table_name)
        meta = metadata if jobs_table_name == "delayed_jobs" else sa.MetaData()
        runs = sa.Table(
            runs_name,
            meta,
            sa.Column("cron_key", sa.String(255), primary_key=True),
            sa.Column("run_at", _Timestamp, primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("job_id", _BigId, nullable=True),
            sa.Column("enqueued_at", _Timestamp, nullable=False),
        )
        sa.Index(f"ix_{runs_name}_run_at", runs.c.run_at)
        entries = sa.Table(
            entries_name,
            meta,
            sa.Column("cron_key", sa.String(255), primary_key=True),
            sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("paused_at", _Timestamp, nullable=True),
            sa.Column("resumed_at", _Timestamp, nullable=True),
            sa.Column("updated_at", _Timestamp, nullable=False),
        )
        _cron_tables[jobs_table_name] = (runs, entries)
    return _cron_tables[jobs_table_name]


def _create_cron_tables(conn: sa.Connection, inspector: sa.Inspector, table: sa.Table) -> list[str]:
    created = []
    for cron_table in cron_tables(table.name):
        if not inspector.has_table(cron_table.name):
            cron_table.create(conn)
            created.append(f"table {cron_table.name}")
    return created
