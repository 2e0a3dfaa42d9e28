"""Enqueue on a caller's psycopg 3 connection, inside whatever transaction it has open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from .dedupe import has_unique, insert_deduplicated, sent_columns

_COLUMNS = (
    "priority",
    "attempts",
    "handler",
    "run_at",
    "queue",
    "name",
    "created_at",
    "updated_at",
    "unique_key",
    "concurrency_key",
    "concurrency_limit",
)


def insert_psycopg(conn: Any, table_name: str, rows: list[dict[str, Any]]) -> list[int]:
    """Multi-row INSERT ... RETURNING id on a psycopg Connection; ids in input order.

    Unique jobs: `ON CONFLICT (unique_key) DO NOTHING`, then the taken keys' ids are read."""
    if not has_unique(rows):
        return _insert(conn, table_name, rows, skip_taken=False)

    def offer(keyed: list[dict[str, Any]]) -> dict[str, tuple[int, bool]]:
        return {row["unique_key"]: (job_id, True) for row, job_id in _insert_keyed(conn, table_name, keyed)}

    return insert_deduplicated(
        rows,
        lambda plain: _insert(conn, table_name, plain, skip_taken=False),
        offer,
        lambda keys: _find_keys(conn, table_name, keys),
    )


def _insert(conn: Any, table_name: str, rows: list[dict[str, Any]], skip_taken: bool) -> list[int]:
    table = sql.Identifier(*table_name.split("."))
    sent = sent_columns(rows, _COLUMNS)
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in sent)
    ids: list[int] = []
    with conn.cursor() as cursor:
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(sent)))
            values = sql.SQL(", ").join([one] * len(chunk))
            query = sql.SQL("INSERT INTO {} ({}) VALUES {} RETURNING id").format(table, columns, values)
            params = [row.get(c) for row in chunk for c in sent]
            cursor.execute(query, params)
            ids.extend(sorted(int(r[0]) for r in cursor.fetchall()))
    return ids


def _insert_keyed(conn: Any, table_name: str, rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """One insert-or-skip per row: (row, id) for the rows inserted."""
    table = sql.Identifier(*table_name.split("."))
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS)
    one = sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS))
    query = sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (unique_key) DO NOTHING RETURNING id"
    ).format(table, columns, one)
    inserted = []
    with conn.cursor() as cursor:
        for row in rows:
            cursor.execute(query, [row.get(c) for c in _COLUMNS])
            found = cursor.fetchone()
            if found is not None:
                inserted.append((row, int(found[0])))
    return inserted


def _find_keys(conn: Any, table_name: str, keys: Sequence[str]) -> dict[str, int]:
    query = sql.SQL("SELECT unique_key, id FROM {} WHERE unique_key = ANY(%s)").format(
        sql.Identifier(*table_name.split("."))
    )
    with conn.cursor() as cursor:
        cursor.execute(query, [list(keys)])
        return {key: int(job_id) for key, job_id in cursor.fetchall()}
