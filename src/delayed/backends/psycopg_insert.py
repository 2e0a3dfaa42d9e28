"""Enqueue on a caller's psycopg 3 connection, inside whatever transaction it has open."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from .dedupe import has_unique, insert_deduplicated
from .postgres import insert_statement

_CHUNK = 10_000  # rows per statement


def insert_psycopg(conn: Any, table_name: str, rows: list[dict[str, Any]]) -> list[int]:
    """The rows in `INSERT ... SELECT FROM unnest(arrays) RETURNING id` statements (the
    backend's, see postgres.insert_statement) on a psycopg Connection; ids in input order.

    Unique jobs: the same statement with `ON CONFLICT (unique_key) DO NOTHING`, then the
    taken keys' ids are read (delayed.backends.dedupe)."""
    table = sql.Identifier(*table_name.split(".")).as_string(conn)  # schema.table: each part quoted
    if not has_unique(rows):
        return _insert(conn, table, rows)
    return insert_deduplicated(
        rows,
        lambda plain: _insert(conn, table, plain),
        lambda keyed: _insert_keyed(conn, table, keyed),
        lambda keys: _find_keys(conn, table, keys),
    )


def _insert(conn: Any, table: str, rows: list[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    with conn.cursor() as cursor:
        binary = not isinstance(cursor, psycopg.ClientCursor)  # it cannot bind binary arrays
        for start in range(0, len(rows), _CHUNK):
            text, params = insert_statement(table, rows[start : start + _CHUNK], binary)
            cursor.execute(text, params)
            chunk_ids = [int(r[0]) for r in cursor.fetchall()]
            chunk_ids.sort()  # unnest() yields the rows in array order, ids drawn in that order
            ids.extend(chunk_ids)
    return ids


def _insert_keyed(conn: Any, table: str, rows: list[dict[str, Any]]) -> dict[str, tuple[int, bool]]:
    """Rows with distinct keys through the insert-or-skip: {key: (id, True)} for those inserted."""
    answered: dict[str, tuple[int, bool]] = {}
    with conn.cursor() as cursor:
        binary = not isinstance(cursor, psycopg.ClientCursor)
        for start in range(0, len(rows), _CHUNK):
            text, params = insert_statement(table, rows[start : start + _CHUNK], binary)
            cursor.execute(text, params)
            for job_id, key in cursor.fetchall():
                answered[key] = (int(job_id), True)
    return answered


def _find_keys(conn: Any, table: str, keys: Sequence[str]) -> dict[str, int]:
    query = f"SELECT unique_key, id FROM {table} WHERE unique_key = ANY(%s)"
    with conn.cursor() as cursor:
        cursor.execute(query, [list(keys)])
        return {key: int(job_id) for key, job_id in cursor.fetchall()}
