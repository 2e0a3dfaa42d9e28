"""Engines: one per process, made after any fork, with a driver chosen for each dialect.

Nothing here may cross a fork: the engine remembers the pid that made it, and a child that
finds a parent's engine drops it (without closing the parent's sockets) and makes its own.
"""

from __future__ import annotations

import logging
import math
import os
import select
import threading
import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from .config import get_config
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


def timeout_args(url: str | URL, connect_timeout: float, network_timeout: float) -> dict[str, Any]:
    """Driver connect arguments that bound every wait on the database (the workers' engine).

    PostgreSQL (libpq): connect_timeout for the connection, and since libpq has no read
    timeout, TCP keepalives (a silent peer is dropped after about network_timeout) and
    tcp_user_timeout (data the peer never acknowledges fails the connection after
    network_timeout). MySQL/MariaDB: connect_timeout, and read and write timeouts on every
    statement (PyMySQL's read timeout also covers the server's greeting: without it a host
    that accepts and never answers blocked the connect for ever). SQLite: nothing (its busy
    timeout is set for every engine). A key the URL's query sets is left to the URL.
    """
    parsed = normalize_url(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    args: dict[str, Any] = {}
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        args = {
            "connect_timeout": max(2, math.ceil(connect_timeout)),  # libpq: whole seconds, at least 2
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(network_timeout / 3)),
            "keepalives_interval": max(1, math.ceil(network_timeout / 6)),
            "keepalives_count": 3,
            "tcp_user_timeout": max(1, int(network_timeout * 1000)),
        }
    elif backend == "mysql" and driver in ("pymysql", "mysqldb"):
        whole = driver == "mysqldb"  # mysqlclient takes whole seconds
        args = {
            "connect_timeout": math.ceil(connect_timeout) if whole else connect_timeout,
            "read_timeout": math.ceil(network_timeout) if whole else network_timeout,
            "write_timeout": math.ceil(network_timeout) if whole else network_timeout,
        }
    return {key: value for key, value in args.items() if key not in parsed.query}


# Engines made for PostgreSQL behind a transaction-pooling PgBouncer ([delayed] pooler):
# the backend asks `transaction_pooled(engine)` and leaves out what breaks there.
_transaction_pooled: weakref.WeakSet[Engine] = weakref.WeakSet()


def transaction_pooled(engine: Engine) -> bool:
    """Was `engine` made for a transaction-pooling PgBouncer (no session state survives a
    transaction: no LISTEN, no session SET, no server-side prepared statement)?"""
    return engine in _transaction_pooled


def create_engine(url: str | URL, pooler: str = "none", **kwargs: Any) -> Engine:
    """A new engine for `url` with our drivers and per-dialect connection settings.

    `pooler="transaction"` (PostgreSQL behind PgBouncer in transaction mode): psycopg never
    prepares a statement on the server (prepare_threshold=None), since the next transaction
    may run on another server connection that does not know it.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    pooled = pooler == "transaction" and backend == "postgresql" and parsed.get_driver_name() == "psycopg"
    if pooled:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "prepare_threshold": None}
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
    if pooled:
        _transaction_pooled.add(engine)
    return engine


class _Engines:
    """The process's engines, one per database URL, made on first use after any fork."""

    LIMIT = 8  # URLs kept; the oldest is disposed past this (tests switch databases often)

    def __init__(self) -> None:
        self.by_url: dict[str, Engine] = {}
        self.pid = os.getpid()
        self.lock = threading.Lock()


_engines = _Engines()


def engine_for(url: str, pooler: str = "none") -> Engine:
    """This process's engine for `url`: shared by everything that uses the same database.

    An engine inherited through fork is forgotten without touching the parent's sockets, and
    the child makes its own. `pooler`: [delayed] pooler (see create_engine).
    """
    key = url if pooler == "none" else f"{url}\x00pooler {pooler}"
    with _engines.lock:
        _forget_after_fork()
        engine = _engines.by_url.get(key)
        if engine is None:
            _make_room()
            engine = _engines.by_url[key] = create_engine(url, pooler=pooler)
        return engine


def _forget_after_fork() -> None:
    """In a forked child: drop the parent's engines without touching their sockets (lock held)."""
    if _engines.pid != os.getpid():
        for engine in _engines.by_url.values():
            engine.dispose(close=False)
        _engines.by_url.clear()
        _engines.pid = os.getpid()


def _make_room() -> None:
    """Dispose of the oldest engine past the limit (lock held)."""
    if len(_engines.by_url) >= _engines.LIMIT:
        oldest = next(iter(_engines.by_url))
        _engines.by_url.pop(oldest).dispose()  # checked-out connections live on


def worker_engine_for(
    url: str, connect_timeout: float, network_timeout: float, pooler: str = "none"
) -> Engine:
    """This process's engine for a worker's own connections (claims, outcomes, releases, LISTEN).

    Separate from `engine_for(url)`, which jobs share through delayed.get_engine(): its
    timeouts (see timeout_args) would cut a job's own long statements short.
    """
    key = f"{url}\x00worker {connect_timeout} {network_timeout} {pooler}"
    with _engines.lock:
        _forget_after_fork()
        engine = _engines.by_url.get(key)
        if engine is None:
            _make_room()
            args = timeout_args(url, connect_timeout, network_timeout)
            extra: dict[str, Any] = {"connect_args": args} if args else {}
            engine = _engines.by_url[key] = create_engine(url, pooler=pooler, **extra)
        return engine


def get_engine() -> Engine:
    """The process's engine for the configured database_url (for the edges: enqueue, CLI)."""
    config = get_config()
    return engine_for(config.database_url, config.pooler)


def reset_engine() -> None:
    """Dispose of every engine this process made; the next use makes new ones."""
    with _engines.lock:
        mine = _engines.pid == os.getpid()
        for engine in _engines.by_url.values():
            engine.dispose(close=mine)
        _engines.by_url.clear()
        _engines.pid = os.getpid()
