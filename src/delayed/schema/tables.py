"""Every table pydelayed uses, declared at the LATEST schema version (SQLAlchemy Core).

`delayed.schema.jobs` is a plain Core `Table` on `delayed.schema.metadata`, so Alembic users
can include it in their own migrations. How an existing database reaches this shape is the
business of `steps.py` (one versioned step per change) and `migrator.py`; a new column or
table is declared here AND added by a new step.

Table names: every name derives from the configured jobs table name (`TableNames`), which is
a plain identifier, optionally schema-qualified (`reporting.delayed_jobs`); see
`identifiers.py`. Schema-qualified names become `Table(name, schema=...)`, so every name
reaching SQL is quoted by SQLAlchemy.

Index choices (see the Ruby gem's migrations 03-07):
- pickup index `idx_delayed_jobs_live`, ordered like the pickup query (priority, run_at, id):
  PostgreSQL: partial `WHERE failed_at IS NULL` (from step 5, kept results: `AND finished_at IS
  NULL`, and MySQL's gets finished_at second), without locked_at/locked_by so that a claim
  is a HOT update; queue last so a queue filter is checked in the index.
  SQLite: partial, (priority, run_at); the rowid (= id) is implicitly the last key.
  MySQL/MariaDB: no partial indexes, so failed_at leads: (failed_at, priority, run_at); InnoDB
  appends the primary key, which gives the id tiebreak.
- `idx_delayed_jobs_failed` (priority, queue) WHERE failed_at IS NOT NULL, for the monitor.
- `index_delayed_jobs_on_name`.

The cron tables (issue 14):
- delayed_cron_runs: one row per (entry key, tick) ever enqueued, inserted in the job's own
  transaction with an insert-or-skip: the primary key makes a tick enqueue once across every
  host. `job_id` is the delayed_jobs row it made; `kind` says "schedule", "catch_up" or
  "manual" (`delayed cron run`). Indexed on run_at so pruning reads old rows in order.
- delayed_cron_entries: state an operator sets per entry and every host must see (paused).

The version table (`delayed_schema_migrations`): one row per applied step.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from .identifiers import split_table_name

metadata = sa.MetaData()

_Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_LongText = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

DEFAULT_TABLE_NAME = "delayed_jobs"


@dataclass(frozen=True)
class TableNames:
    """Every table name derived from the configured jobs table name (bare names + schema).

    delayed_jobs -> delayed_cron_runs, delayed_cron_entries, delayed_schema_migrations: the
    prefix is the jobs name without its `_jobs` suffix. A helper adding a table adds a field
    here and a line in `for_jobs`.
    """

    configured: str  # as configured: "delayed_jobs" or "reporting.delayed_jobs"
    schema: str | None
    jobs: str
    cron_runs: str
    cron_entries: str
    versions: str
    leases: str
    workers: str

    @classmethod
    def for_jobs(cls, configured: str = DEFAULT_TABLE_NAME) -> TableNames:
        schema, jobs = split_table_name(configured)
        prefix = jobs[: -len("_jobs")] if jobs.endswith("_jobs") else jobs
        return cls(
            configured=configured,
            schema=schema,
            jobs=jobs,
            cron_runs=f"{prefix}_cron_runs",
            cron_entries=f"{prefix}_cron_entries",
            versions=f"{prefix}_schema_migrations",
            leases=f"{prefix}_job_leases",
            workers=f"{prefix}_workers",
        )

    @classmethod
    def of(cls, table: sa.Table) -> TableNames:
        """The names that go with a jobs Table."""
        return cls.for_jobs(qualified(table))

    def qualify(self, bare: str) -> str:
        """`bare` with this schema in front, as configured (a key, not SQL)."""
        return f"{self.schema}.{bare}" if self.schema else bare


def qualified(table: sa.Table) -> str:
    """`schema.name` or `name`: the configured form of a Table's name (a key, not SQL)."""
    return f"{table.schema}.{table.name}" if table.schema else table.name


def _meta_for(configured: str) -> sa.MetaData:
    """The default table lives on `metadata` (Alembic's view); others on their own MetaData."""
    return metadata if configured == DEFAULT_TABLE_NAME else sa.MetaData()


KEPT_RESULTS_VERSION = 5  # the step adding finished_at / result (issue 15)
_LATEST = 1 << 30


def since(version: int) -> dict[str, int]:
    """`info=since(N)` marks a column or index added by step N (absent from earlier shapes)."""
    return {"since": version}


def until(version: int) -> dict[str, int]:
    """`info=until(N)` marks an index step N replaced (present only in earlier shapes)."""
    return {"until": version}


def _in_shape(item: sa.Column[object] | sa.Index, version: int | None) -> bool:
    shape = _LATEST if version is None else version
    return item.info.get("since", 1) <= shape < item.info.get("until", _LATEST + 1)


def make_table(
    name: str = DEFAULT_TABLE_NAME, meta: sa.MetaData | None = None, version: int | None = None
) -> sa.Table:
    """Build the jobs table under `name` (index names follow the table name).

    `version=None` is the latest shape; `version=N` the shape after step N (columns and indexes
    marked `info=since(M)` with M > N left out), so step 1 creates exactly the table the first
    release made and each later step adds its own columns and indexes to it.
    """
    meta = metadata if meta is None else meta
    schema, bare = split_table_name(name)
    columns = [
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
        # Step 4 (issue 13): unique jobs and concurrency limits, nullable (added in place).
        sa.Column("unique_key", sa.String(255), nullable=True, info=since(4)),
        sa.Column("concurrency_key", sa.String(255), nullable=True, info=since(4)),
        sa.Column("concurrency_limit", sa.Integer, nullable=True, info=since(4)),
        # Kept results (keep_finished): a successful job's row stays, out of pickup.
        sa.Column("finished_at", _Timestamp, nullable=True, info=since(KEPT_RESULTS_VERSION)),
        sa.Column("result", _LongText, nullable=True, info=since(KEPT_RESULTS_VERSION)),
    ]
    table = sa.Table(bare, meta, *[c for c in columns if _in_shape(c, version)], schema=schema)
    _add_indexes(table, bare)
    if "unique_key" in table.c:
        # NULLs never collide in a UNIQUE index on PostgreSQL, SQLite and MariaDB: only keyed
        # rows compete for a key, and every dialect's insert-or-skip relies on this index.
        sa.Index(f"uq_{bare}_unique_key", table.c.unique_key, unique=True, info=since(4))
        sa.Index(f"ix_{bare}_concurrency_key", table.c.concurrency_key, info=since(4))
    for index in [i for i in table.indexes if not _in_shape(i, version)]:
        table.indexes.discard(index)
    return table


def _add_indexes(table: sa.Table, bare: str) -> None:
    """The jobs table's indexes (an Index attaches itself to its table)."""
    sa.Index(f"index_{bare}_on_name", table.c.name)
    sa.Index(
        f"idx_{bare}_live",
        table.c.priority,
        table.c.run_at,
        table.c.id,
        table.c.queue,
        postgresql_where=table.c.failed_at.is_(None),
        info=until(KEPT_RESULTS_VERSION),
    ).ddl_if(dialect="postgresql")
    sa.Index(
        f"idx_{bare}_live",
        table.c.priority,
        table.c.run_at,
        sqlite_where=table.c.failed_at.is_(None),
        info=until(KEPT_RESULTS_VERSION),
    ).ddl_if(dialect="sqlite")
    sa.Index(
        f"idx_{bare}_live",
        table.c.failed_at,
        table.c.priority,
        table.c.run_at,
        info=until(KEPT_RESULTS_VERSION),
    ).ddl_if(callable_=lambda ddl, target, bind, dialect, **kw: dialect.name in ("mysql", "mariadb"))
    if "finished_at" in table.c:
        _add_kept_results_indexes(table, bare)
    sa.Index(
        f"idx_{bare}_failed",
        table.c.priority,
        table.c.queue,
        postgresql_where=table.c.failed_at.isnot(None),
        sqlite_where=table.c.failed_at.isnot(None),
    ).ddl_if(callable_=lambda ddl, target, bind, dialect, **kw: dialect.name in ("postgresql", "sqlite"))
    # Step 6: the dashboard's failed-jobs list (newest first, filtered by queue, priority or
    # name) as an index-only scan; it changes only when a job fails, is retried or discarded,
    # never on the claim path. MySQL has no partial indexes: there it would index every row.
    sa.Index(
        f"idx_{bare}_failed_list",
        table.c.id,
        postgresql_include=["queue", "priority", "name"],
        postgresql_where=table.c.failed_at.isnot(None),
        info=since(6),
    ).ddl_if(dialect="postgresql")
    sa.Index(
        f"idx_{bare}_failed_list",
        table.c.id,
        table.c.queue,
        table.c.priority,
        table.c.name,
        sqlite_where=table.c.failed_at.isnot(None),
        info=since(6),
    ).ddl_if(dialect="sqlite")


def _add_kept_results_indexes(table: sa.Table, bare: str) -> None:
    """Step 5: the pickup index without finished rows (kept results), and one for pruning.

    PostgreSQL and SQLite: the partial WHERE excludes finished rows too. MySQL has no partial
    index: finished_at is the second column, so the ready range (NULL, NULL, priority, run_at)
    holds no failed and no finished row.
    """
    live = sa.and_(table.c.failed_at.is_(None), table.c.finished_at.is_(None))
    kept = since(KEPT_RESULTS_VERSION)
    sa.Index(
        f"idx_{bare}_live",
        table.c.priority,
        table.c.run_at,
        table.c.id,
        table.c.queue,
        postgresql_where=live,
        info=kept,
    ).ddl_if(dialect="postgresql")
    sa.Index(f"idx_{bare}_live", table.c.priority, table.c.run_at, sqlite_where=live, info=kept).ddl_if(
        dialect="sqlite"
    )
    sa.Index(
        f"idx_{bare}_live",
        table.c.failed_at,
        table.c.finished_at,
        table.c.priority,
        table.c.run_at,
        info=kept,
    ).ddl_if(callable_=lambda ddl, target, bind, dialect, **kw: dialect.name in ("mysql", "mariadb"))
    sa.Index(
        f"idx_{bare}_finished",
        table.c.finished_at,
        postgresql_where=table.c.finished_at.isnot(None),
        sqlite_where=table.c.finished_at.isnot(None),
        info=kept,
    )


jobs = make_table()
_tables: dict[str, sa.Table] = {DEFAULT_TABLE_NAME: jobs}


def get_table(name: str = DEFAULT_TABLE_NAME) -> sa.Table:
    """The Table for `name`; tables other than delayed_jobs live on their own MetaData."""
    if name not in _tables:
        _tables[name] = make_table(name, sa.MetaData())
    return _tables[name]


def notify_channel(table: sa.Table) -> str:
    """The LISTEN/NOTIFY channel for a table: its (bare) name."""
    return table.name


def index_applies(index: sa.Index, dialect: sa.engine.Dialect) -> bool:
    """Whether `index` exists on `dialect` (some indexes are per dialect, see make_table)."""
    condition = index._ddl_if
    if condition is None:
        return True
    if condition.dialect is not None:
        names = {condition.dialect} if isinstance(condition.dialect, str) else set(condition.dialect)
        return dialect.name in names
    if condition.callable_ is not None:
        return bool(condition.callable_(None, index, None, dialect))
    return True


_index_applies = index_applies  # the name tests and older callers use


def cron_table_names(jobs_table_name: str) -> tuple[str, str]:
    """(runs, entries) table names beside a jobs table: delayed_jobs -> delayed_cron_runs, ..."""
    names = TableNames.for_jobs(jobs_table_name)
    return names.qualify(names.cron_runs), names.qualify(names.cron_entries)


_cron_tables: dict[str, tuple[sa.Table, sa.Table]] = {}


def cron_tables(jobs_table_name: str = DEFAULT_TABLE_NAME) -> tuple[sa.Table, sa.Table]:
    """The (runs, entries) Tables that go with the jobs table `jobs_table_name`."""
    if jobs_table_name not in _cron_tables:
        names = TableNames.for_jobs(jobs_table_name)
        meta = _meta_for(jobs_table_name)
        runs = sa.Table(
            names.cron_runs,
            meta,
            sa.Column("cron_key", sa.String(255), primary_key=True),
            sa.Column("run_at", _Timestamp, primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("job_id", _BigId, nullable=True),
            sa.Column("enqueued_at", _Timestamp, nullable=False),
            schema=names.schema,
        )
        sa.Index(f"ix_{names.cron_runs}_run_at", runs.c.run_at)
        entries = sa.Table(
            names.cron_entries,
            meta,
            sa.Column("cron_key", sa.String(255), primary_key=True),
            sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("paused_at", _Timestamp, nullable=True),
            sa.Column("resumed_at", _Timestamp, nullable=True),
            sa.Column("updated_at", _Timestamp, nullable=False),
            schema=names.schema,
        )
        _cron_tables[jobs_table_name] = (runs, entries)
    return _cron_tables[jobs_table_name]


_version_tables: dict[str, sa.Table] = {}


def version_table(jobs_table_name: str = DEFAULT_TABLE_NAME) -> sa.Table:
    """The version table beside a jobs table: one row per applied step (see migrator.py)."""
    if jobs_table_name not in _version_tables:
        names = TableNames.for_jobs(jobs_table_name)
        _version_tables[jobs_table_name] = sa.Table(
            names.versions,
            _meta_for(jobs_table_name),
            sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("summary", sa.String(255), nullable=False),
            sa.Column("applied_at", _Timestamp, nullable=False),
            schema=names.schema,
        )
    return _version_tables[jobs_table_name]


# ------------------------------------------------------------------ leases (issue 13, step 4)
# delayed_job_leases: one row per running job that holds a concurrency slot, keyed by job id
# (releasing twice is harmless). A lease counts only while its job row is still locked by the
# lease's holder and that lock is fresh, so a lease whose job finished, failed, was reclaimed
# or outlived the lock timeout frees its slot by itself; the rows are deleted with the
# outcome, on release and by the next grant of the key.
_lease_tables: dict[str, sa.Table] = {}


def leases_table(jobs_table_name: str = DEFAULT_TABLE_NAME) -> sa.Table:
    """The leases Table that goes with the jobs table `jobs_table_name`."""
    if jobs_table_name not in _lease_tables:
        names = TableNames.for_jobs(jobs_table_name)
        leases = sa.Table(
            names.leases,
            _meta_for(jobs_table_name),
            sa.Column("job_id", _BigId, primary_key=True, autoincrement=False),
            sa.Column("concurrency_key", sa.String(255), nullable=False),
            sa.Column("locked_by", sa.String(255), nullable=False),
            sa.Column("created_at", _Timestamp, nullable=False),
            schema=names.schema,
        )
        sa.Index(f"ix_{names.leases}_concurrency_key", leases.c.concurrency_key)
        _lease_tables[jobs_table_name] = leases
    return _lease_tables[jobs_table_name]


# The worker registry (issue 12, step 3): one row per live worker process (plain `delayed work`
# and every supervisor child), keyed by its name, which is unique per process start and is the
# `locked_by` of the rows it holds. `heartbeat_at` and `started_at` are written with the
# database's clock (never a host's), so hosts with skewed clocks agree on who is dead. Indexed
# on heartbeat_at: the rescue looks for the oldest heartbeats.
_workers_tables: dict[str, sa.Table] = {}


def workers_table(jobs_table_name: str = DEFAULT_TABLE_NAME) -> sa.Table:
    """The worker registry Table that goes with the jobs table `jobs_table_name` (as configured)."""
    if jobs_table_name not in _workers_tables:
        names = TableNames.for_jobs(jobs_table_name)
        table = sa.Table(
            names.workers,
            _meta_for(jobs_table_name),
            sa.Column("name", sa.String(255), primary_key=True),
            sa.Column("hostname", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("pool", sa.String(255), nullable=True),
            sa.Column("queues", sa.Text, nullable=True),  # JSON list; null or [] = every queue
            sa.Column("started_at", _Timestamp, nullable=False),
            sa.Column("heartbeat_at", _Timestamp, nullable=False),
            schema=names.schema,
        )
        sa.Index(f"ix_{names.workers}_hb", table.c.heartbeat_at)
        _workers_tables[jobs_table_name] = table
    return _workers_tables[jobs_table_name]
