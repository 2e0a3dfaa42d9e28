"""Enqueue on a caller's Django database connection, inside whatever transaction it has open.

`insert_rows(rows, using=django.db.connections["default"])` lands here. The rows are written
with that connection's own cursor, so they belong to the transaction Django has open on it
(`transaction.atomic()`): a rollback leaves no job, and no worker sees one before the commit.
Plain SQL with Django's `%s` placeholders works for every backend Django ships (its SQLite
cursor rewrites them); the column values are the ones `EnqueueRequest.row()` builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .dedupe import INSERT_COLUMNS, has_unique, insert_deduplicated, sent_columns

_CHUNK = 1000  # rows per INSERT: 8,000 parameters, below every backend's limit


def is_django_connection(obj: Any) -> bool:
    """A Django DatabaseWrapper, or the `django.db.connection` proxy in front of one."""
    module = type(obj).__module__ or ""
    return module.startswith("django.") and hasattr(obj, "vendor") and hasattr(obj, "in_atomic_block")


def _sqlite_datetime(value: Any) -> Any:
    """SQLite keeps timestamps as text compared as text: write SQLAlchemy's exact form.

    pydelayed's own SQLAlchemy engine writes `YYYY-MM-DD HH:MM:SS.ffffff` (always six digits);
    sqlite3's default adapter drops `.000000`, which would sort differently.
    """
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def insert_django(connection: Any, table_name: str, rows: list[dict[str, Any]]) -> list[int]:
    """Insert job rows on `connection`; ids in input order.

    Unique jobs go through each vendor's insert-or-skip (ON CONFLICT DO NOTHING on PostgreSQL
    and SQLite, ON DUPLICATE KEY UPDATE id = id RETURNING on MariaDB), then the taken keys'
    ids are read."""
    if has_unique(rows):
        return insert_deduplicated(
            rows,
            lambda plain: _insert(connection, table_name, plain),
            lambda keyed: _insert_keyed(connection, table_name, keyed),
            lambda keys: _find_keys(connection, table_name, keys),
        )
    return _insert(connection, table_name, rows)


def _quoted(connection: Any, table_name: str) -> str:
    quote = connection.ops.quote_name
    return ".".join(quote(part) for part in table_name.split("."))  # schema.table


def _insert_keyed(
    connection: Any, table_name: str, rows: list[dict[str, Any]]
) -> dict[str, tuple[int, bool]]:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in INSERT_COLUMNS)
    one = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"
    convert = _sqlite_datetime if connection.vendor == "sqlite" else None
    returning = f"RETURNING {quote('id')}, {quote('handler')}"
    if connection.vendor == "mysql":
        tail = f"ON DUPLICATE KEY UPDATE {quote('id')} = {quote('id')} {returning}"
    else:
        tail = f"ON CONFLICT ({quote('unique_key')}) DO NOTHING {returning}"
    answered: dict[str, tuple[int, bool]] = {}
    with connection.cursor() as cursor:
        for row in rows:
            params = [_value(row.get(c), convert) for c in INSERT_COLUMNS]
            cursor.execute(
                f"INSERT INTO {_quoted(connection, table_name)} ({columns}) VALUES {one} {tail}", params
            )
            found = cursor.fetchone()
            if found is not None:
                answered[row["unique_key"]] = (int(found[0]), found[1] == row["handler"])
    return answered


def _find_keys(connection: Any, table_name: str, keys: Sequence[str]) -> dict[str, int]:
    quote = connection.ops.quote_name
    marks = ", ".join(["%s"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {quote('unique_key')}, {quote('id')} FROM {_quoted(connection, table_name)} "
            f"WHERE {quote('unique_key')} IN ({marks})",
            list(keys),
        )
        return {key: int(job_id) for key, job_id in cursor.fetchall()}


def _insert(connection: Any, table_name: str, rows: list[dict[str, Any]]) -> list[int]:
    quote = connection.ops.quote_name
    table = ".".join(quote(part) for part in table_name.split("."))  # schema.table
    sent = sent_columns(rows, INSERT_COLUMNS)
    columns = ", ".join(quote(c) for c in sent)
    one = "(" + ", ".join(["%s"] * len(sent)) + ")"
    convert = _sqlite_datetime if connection.vendor == "sqlite" else None
    ids: list[int] = []
    with connection.cursor() as cursor:
        if connection.features.can_return_rows_from_bulk_insert:
            # PostgreSQL, MariaDB 10.5+, SQLite 3.35+: one multi-row INSERT ... RETURNING.
            # Ids of one statement come from one sequence in row order, so sorting restores it.
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                params = [_value(row.get(c), convert) for row in chunk for c in sent]
                values = ", ".join([one] * len(chunk))
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {quote('id')}", params
                )
                ids.extend(sorted(int(r[0]) for r in cursor.fetchall()))
        else:  # MySQL: no RETURNING; one row per statement, its id from lastrowid
            for row in rows:
                params = [_value(row.get(c), convert) for c in sent]
                cursor.execute(f"INSERT INTO {table} ({columns}) VALUES {one}", params)
                ids.append(int(cursor.lastrowid))
    return ids


def _value(value: Any, convert: Any) -> Any:
    return convert(value) if convert is not None else value
