"""What a configured table name may be: a plain identifier, optionally schema-qualified.

The name reaches DDL, index names, a trigger, a NOTIFY channel and every query. Issue 11
item 9: a name such as `v" SET (fillfactor=90);DROP TABLE victim;--` once ran its DROP inside
`delayed migrate`. So only `[A-Za-z_][A-Za-z0-9_]*` parts are accepted (one optional schema
part), short enough that every name derived from it fits the database's identifier limit;
and SQL never splices the name itself: SQLAlchemy's identifier preparer quotes it.

A leaf module (no SQLAlchemy, nothing of ours), so the config can check the setting.
"""

from __future__ import annotations

import re

_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The longest identifier each database accepts (PostgreSQL truncates silently at 63 bytes,
# MySQL/MariaDB refuse past 64; SQLite has no limit, 128 keeps names readable).
MAX_IDENTIFIER = {"postgresql": 63, "mysql": 64, "mariadb": 64, "sqlite": 128}
# The longest name derived from a jobs table name `x` (x = its bare part):
# index_x_on_name (14 more characters), and from its prefix p (x without `_jobs`):
# p_schema_migrations (18 more than p, 13 more than x), ix_p_cron_runs_run_at (16 more than x).
DERIVED_EXTRA = 16


def split_table_name(name: str) -> tuple[str | None, str]:
    """(schema or None, bare name); ValueError saying what is accepted for anything else."""
    if not isinstance(name, str):
        raise ValueError(f"expected a table name (a string), got {name!r}")
    parts = name.split(".")
    if len(parts) > 2 or not all(_PART.fullmatch(part) for part in parts):
        raise ValueError(
            f"{name!r} is not a plain table name: use letters, digits and underscores "
            "(not starting with a digit), optionally schema-qualified as schema.table"
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def table_name(value: object) -> str:
    """The config value parser of `table_name` (syntax only; see `check_length`)."""
    split_table_name(value)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


def check_length(name: str, dialect_name: str) -> str | None:
    """Why `name` is too long for `dialect_name` (a message), or None when it fits."""
    limit = MAX_IDENTIFIER.get(dialect_name)
    if limit is None:
        return None
    schema, bare = split_table_name(name)
    if schema is not None and len(schema) > limit:
        return f"its schema part {schema!r} is longer than {dialect_name}'s {limit}-character limit"
    if len(bare) + DERIVED_EXTRA > limit:
        return (
            f"{bare!r} is {len(bare)} characters: the names derived from it (such as "
            f"index_{bare}_on_name) must fit {dialect_name}'s {limit}-character limit, so at most "
            f"{limit - DERIVED_EXTRA} characters"
        )
    return None
