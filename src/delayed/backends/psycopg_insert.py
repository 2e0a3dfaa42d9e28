"""Enqueue on a caller's psycopg 3 connection, inside whatever transaction it has open."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from .postgres import insert_statement

_CHUNK = 10_000  # rows per statement


def insert_psycopg(conn: Any, table_name: str, rows: list[dict[str, Any]]) -> list[int]:
    """The rows in `INSERT ... SELECT FROM unnest(arrays) RETURNING id` statements (the
    backend's, see postgres.insert_statement) on a psycopg Connection; ids in input order."""
    table = sql.Identifier(*table_name.split(".")).as_string(conn)  # schema.table: each part quoted
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
