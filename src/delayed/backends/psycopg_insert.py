"""Enqueue on a caller's psycopg 3 connection, inside whatever transaction it has open."""

from __future__ import annotations

from typing import Any

from psycopg import sql

_COLUMNS = ("priority", "attempts", "handler", "run_at", "queue", "name", "created_at", "updated_at")


def insert_psycopg(conn: Any, table_name: str, rows: list[dict[str, Any]]) -> list[int]:
    """Multi-row INSERT ... RETURNING id on a psycopg Connection; ids in input order."""
    table = sql.Identifier(*table_name.split("."))  # schema.table: each part quoted by psycopg
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS)
    ids: list[int] = []
    with conn.cursor() as cursor:
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)))
            values = sql.SQL(", ").join([one] * len(chunk))
            query = sql.SQL("INSERT INTO {} ({}) VALUES {} RETURNING id").format(table, columns, values)
            params = [row[c] for row in chunk for c in _COLUMNS]
            cursor.execute(query, params)
            ids.extend(sorted(int(r[0]) for r in cursor.fetchall()))
    return ids
