"""pydelayed's schema: the tables (latest shape), the versioned steps, and the migrator.

- `tables.py`: every Table at the latest version (`jobs`, `metadata` for Alembic, `make_table`,
  `get_table`, `cron_tables`, the version table) and `TableNames`;
- `steps.py`: `STEPS`, one `Step` per schema change with its DDL per dialect;
- `migrator.py`: the version table, the lock, `migrate`, `pending`, `check_current`;
- `identifiers.py`: what a configured table name may be.

See docs/migrations.md for how to add a step.
"""

from __future__ import annotations

from .identifiers import split_table_name
from .migrator import (
    Applied,
    MigrationError,
    SchemaOutOfDate,
    apply,
    check_current,
    ddl,
    full_sql,
    migrate,
    pending,
    pending_sql,
)
from .steps import STEPS, Step, latest_version, postgres_extras
from .tables import (
    TableNames,
    _index_applies,
    cron_table_names,
    cron_tables,
    get_table,
    index_applies,
    jobs,
    make_table,
    metadata,
    notify_channel,
    qualified,
    version_table,
)

__all__ = [
    "STEPS",
    "Applied",
    "MigrationError",
    "SchemaOutOfDate",
    "Step",
    "TableNames",
    "_index_applies",
    "apply",
    "check_current",
    "cron_table_names",
    "cron_tables",
    "ddl",
    "full_sql",
    "get_table",
    "index_applies",
    "jobs",
    "latest_version",
    "make_table",
    "metadata",
    "migrate",
    "notify_channel",
    "pending",
    "pending_sql",
    "postgres_extras",
    "qualified",
    "split_table_name",
    "version_table",
]
