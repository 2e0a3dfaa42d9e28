"""Engines: one per process, made after any fork, with a driver chosen for each dialect.

Nothing here may cross a fork: the engine remembers the pid that made it, and a child that
finds a parent's engine drops it (without closing the parent's sockets) and makes its own.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from .errors import ConfigError

log = logging.getLogger("delayed.db")

# A bare "postgresql://" means psycopg2 and "mysql://" means mysqlclient to SQLAlchemy;
# our chosen drivers are psycopg 3 and PyMySQL.
_DEFAULT_DRIVERS = {"postgresql": "psycopg", "postgres": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL, filling in our driver when the URL names none."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConfigError(
            f"database_url {redact(str(url))!r} is not a database URL; "
            "expected e.g. postgresql://user@host/db, mysql://root@host/db or sqlite:///path"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgres":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif "+" not in parsed.drivername and backend in _DEFAULT_DRIVERS:
        parsed = parsed.set(drivername=f"{backend}+{_DEFAULT_DRIVERS[backend]}")
    return parsed


def redact(url: str | URL) -> str:
    """The URL with any password replaced by ***: the only form that may be logged."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def describe_error(exc: BaseException) -> str:
    """One line naming a database error, without SQL parameters (they may hold secrets)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text}" if text else type(orig).__name__


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; busy_timeout makes writers queue instead
    # of failing at once when two worker processes share the file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _pg_checkout_check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a dead pooled PostgreSQL connection at checkout, without a round trip.

    What `pool_pre_ping` does with a `SELECT 1` (a round trip on every checkout: a third of
    a one-job enqueue) is done here by looking at the socket: an idle connection has nothing
    to read unless the server closed it or sent an error (pg_terminate_backend, a restart),
    so only a readable socket costs a real ping. Raising DisconnectionError makes the pool
    drop this connection and hand out another (or a new one). Like pre-ping, this cannot
    see a connection that dies after checkout; statements still fail then, as before.
    """
    try:
        if dbapi_connection.closed or dbapi_connection.broken:
            raise sa.exc.DisconnectionError("pooled connection is closed")
        readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
    except sa.exc.DisconnectionError:
        raise
    except Exception as exc:  # no socket any more
        raise sa.exc.DisconnectionError(f"pooled connection unusable: {exc}") from exc
    if readable:
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"pooled connection lost: {exc}") from exc


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """A new engine for `url` with our drivers and per-dialect connection settings."""
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "sqlite":
        options["connect_args"] = {"timeout": 30, "check_same_thread": False}
        options.pop("pool_pre_ping")
    elif backend == "mysql":
        options["pool_recycle"] = 3600
    pg_check = (
        backend == "postgresql" and parsed.get_driver_name() == "psycopg" and "pool_pre_ping" not in kwargs
    )
    if pg_check:
        options["pool_pre_ping"] = False  # replaced by the socket check at checkout
    options.update(kwargs)
    try:
        engine = sa.create_engine(parsed, **options)
    except Exception as exc:
        raise ConfigError(f"cannot use database_url {redact(parsed)!r}: {exc}") from None
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    if pg_check:
        sa.event.listen(engine, "checkout", _pg_checkout_check)
    return engine


class _EngineHolder:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.pid = 0
        self.lock = threading.Lock()


_holder = _EngineHolder()


def get_engine() -> Engine:
    """The process's engine for the configured database_url, made on first use."""
    from .config import get_config

    with _holder.lock:
        if _holder.engine is not None and _holder.pid != os.getpid():
            # Inherited through fork: forget the parent's pool without touching its sockets.
            _holder.engine.dispose(close=False)
            _holder.engine = None
        if _holder.engine is None:
            _holder.engine = create_engine(get_config().database_url)
            _holder.pid = os.getpid()
        return _holder.engine


def reset_engine() -> None:
    """Drop the process's engine (after a config change); the next use makes a new one."""
    with _holder.lock:
        if _holder.engine is not None:
            _holder.engine.dispose(close=_holder.pid == os.getpid())
        _holder.engine = None
