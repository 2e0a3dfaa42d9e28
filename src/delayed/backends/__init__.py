"""Choose the backend for an engine, and insert rows on whatever connection the caller holds."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from ..record import Outcome
from ..schema import qualified
from .base import Backend, ClaimFilter, Waiter
from .django_insert import insert_django, is_django_connection
from .mysql import MySQLBackend
from .postgres import PostgresBackend
from .psycopg_insert import insert_psycopg
from .sqlite import SQLiteBackend

__all__ = [
    "Backend",
    "ClaimFilter",
    "MySQLBackend",
    "Outcome",
    "PostgresBackend",
    "SQLiteBackend",
    "Waiter",
    "backend_for",
    "insert_rows",
]

_BACKENDS: dict[str, type[Backend]] = {
    "postgresql": PostgresBackend,
    "mysql": MySQLBackend,
    "mariadb": MySQLBackend,
    "sqlite": SQLiteBackend,
}


# Backends are stateless apart from their cached SQL texts: one per (engine, table), so an
# enqueue does not build a Backend (and recompile its statements) per call. Bounded, so
# engines made and disposed one after another (tests, the CLI) are not kept alive for ever.
_CACHE: dict[tuple[Engine, sa.Table], Backend] = {}
_CACHE_SIZE = 16
_CACHE_LOCK = threading.Lock()


def backend_for(engine: Engine, table: sa.Table) -> Backend:
    """The Backend for the engine's dialect; other dialects are refused with the list we support."""
    backend = _CACHE.get((engine, table))
    if backend is not None:
        return backend
    try:
        cls = _BACKENDS[engine.dialect.name]
    except KeyError:
        raise NotImplementedError(
            f"pydelayed supports PostgreSQL, MySQL/MariaDB and SQLite, not {engine.dialect.name!r}"
        ) from None
    backend = cls(engine, table)
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)), None)
        return _CACHE.setdefault((engine, table), backend)


def _is_psycopg(obj: Any) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("psycopg") and hasattr(obj, "cursor")


def insert_rows(rows: list[dict[str, Any]], table: sa.Table, using: Any) -> list[int]:
    """Insert job rows inside the caller's transaction on `using` (they commit or roll back)."""
    if isinstance(using, Session):
        conn = using.connection()
        return backend_for(conn.engine, table).insert(conn, rows)
    if isinstance(using, Connection):
        return backend_for(using.engine, table).insert(using, rows)
    if _is_psycopg(using):
        return insert_psycopg(using, qualified(table), rows)
    if is_django_connection(using):
        return insert_django(using, qualified(table), rows)
    raise TypeError(
        "using= takes a SQLAlchemy Connection or Session, a psycopg Connection or a Django "
        f"database connection; got {type(using)!r}"
    )
