"""Real databases for every test: SQLite, PostgreSQL and MariaDB/MySQL.

Each test session makes its own fresh database on each server (dropped at the end), so
parallel runs never share a table. A server that cannot be reached is skipped locally; under
CI (CI=true) a skipped backend is a failure. DELAYED_TEST_BACKENDS=sqlite,postgresql limits
which backends run.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.config import build_config, set_config
from delayed.db import create_engine
from tests.pgbouncer import PGBOUNCER, PgBouncer

PG_ADMIN_URL = os.environ.get("DELAYED_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("DELAYED_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
ALL_BACKENDS = ("sqlite", "postgresql", "mysql")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def selected_backends() -> list[str]:
    wanted = os.environ.get("DELAYED_TEST_BACKENDS")
    if not wanted:
        return list(ALL_BACKENDS)
    return [b.strip() for b in wanted.split(",") if b.strip() in ALL_BACKENDS]


def unavailable(backend: str, reason: str) -> None:
    message = f"{backend} is not reachable: {reason}"
    if IN_CI:
        pytest.fail(f"{message} (under CI every backend must run)", pytrace=False)
    pytest.skip(message)


@dataclass
class ServerDatabase:
    backend: str
    url: str
    engine: sa.Engine


class _Servers:
    """Creates one database per backend per test session, on first use."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.made: dict[str, ServerDatabase] = {}
        self.errors: dict[str, str] = {}
        self.drops: list[tuple[str, str]] = []

    def get(self, backend: str) -> ServerDatabase:
        if backend in self.errors:
            unavailable(backend, self.errors[backend])
        if backend not in self.made:
            try:
                self.made[backend] = self._create(backend)
            except Exception as exc:
                self.errors[backend] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                unavailable(backend, self.errors[backend])
        return self.made[backend]

    def _create(self, backend: str) -> ServerDatabase:
        name = f"pyd_{uuid.uuid4().hex[:10]}"
        if backend == "sqlite":
            url = f"sqlite:///{self.tmp / (name + '.sqlite3')}"
        else:
            admin_url = PG_ADMIN_URL if backend == "postgresql" else MYSQL_ADMIN_URL
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            admin.dispose()
            url = str(sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False))
            self.drops.append((admin_url, name))
        engine = create_engine(url)
        schema.migrate(engine)
        return ServerDatabase(backend, url, engine)

    def close(self) -> None:
        for db in self.made.values():
            db.engine.dispose()
        for admin_url, name in self.drops:
            admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
            try:
                with admin.connect() as conn:
                    if admin_url.startswith("postgresql"):
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    else:
                        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            except Exception as exc:  # leave it; a later run is not affected (new names)
                print(f"could not drop test database {name}: {exc}")
            admin.dispose()


def _sendable(text: str) -> str:
    """`text` with lone surrogates escaped: pytest-xdist sends reports as UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Captured output may hold what the bad-input tests feed the worker (a lone surrogate in
    a job's error, logged as given): escaped here, or an xdist worker dies sending the report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [(title, _sendable(content)) for title, content in report.sections]


@pytest.fixture(autouse=True)
def _the_servers_to_itself_when_exclusive(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist the tests run in several processes at once, but a test marked
    `exclusive` (the chaos test restarts PostgreSQL) must run alone: every test holds a shared
    lock on a file of this run while it runs, an exclusive test the exclusive lock. A gate lock
    in front gives the exclusive test precedence (tests arriving while it waits wait behind it),
    so it is not starved by the others' stream of shared locks. Without xdist: nothing to do."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        yield
        return
    exclusive = request.node.get_closest_marker("exclusive") is not None
    base = Path(tempfile.gettempdir()) / f"delayed-tests-{run}"
    with open(f"{base}.gate", "a") as gate, open(f"{base}.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Servers]:
    holder = _Servers(tmp_path_factory.mktemp("databases"))
    yield holder
    holder.close()


@dataclass
class Database:
    """What a test gets: the backend's name, URL and engine, with a few row helpers."""

    backend: str
    url: str
    engine: sa.Engine

    @property
    def table(self) -> sa.Table:
        return schema.jobs

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        t = self.table
        query = sa.select(t).order_by(t.c.id)
        for key, value in where.items():
            query = query.where(t.c[key] == value)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def row(self, job_id: int) -> dict[str, Any] | None:
        found = self.rows(id=job_id)
        return found[0] if found else None

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.table)).scalar_one()

    def update(self, job_id: int, **values: Any) -> None:
        t = self.table
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == job_id).values(**values))

    def execute(self, sql: str) -> None:
        with self.engine.begin() as conn:
            conn.exec_driver_sql(sql)


def _truncate(db: ServerDatabase) -> None:
    with db.engine.begin() as conn:
        for table in ("delayed_jobs", "delayed_job_leases", "delayed_workers"):
            if db.backend == "sqlite":
                conn.exec_driver_sql(f"DELETE FROM {table}")
            else:
                conn.exec_driver_sql(f"TRUNCATE TABLE {table}")


@pytest.fixture(params=selected_backends())
def db(request: pytest.FixtureRequest, servers: _Servers) -> Iterator[Database]:
    """A clean delayed_jobs table on one backend, configured as the process's database."""
    server = servers.get(request.param)
    _truncate(server)
    set_config(build_config(environ={}, overrides={"database_url": server.url, "sleep_delay": 0.2}))
    yield Database(server.backend, server.url, server.engine)
    delayed.db.reset_engine()
    set_config(build_config(environ={}))


def _only(servers: _Servers, backend: str) -> Iterator[Database]:
    server = servers.get(backend)
    _truncate(server)
    set_config(build_config(environ={}, overrides={"database_url": server.url, "sleep_delay": 0.2}))
    yield Database(server.backend, server.url, server.engine)
    delayed.db.reset_engine()
    set_config(build_config(environ={}))


@pytest.fixture
def pg(servers: _Servers) -> Iterator[Database]:
    """PostgreSQL only (for features only PostgreSQL has)."""
    yield from _only(servers, "postgresql")


@pytest.fixture
def mysql_db(servers: _Servers) -> Iterator[Database]:
    """MariaDB/MySQL only."""
    yield from _only(servers, "mysql")


@pytest.fixture(params=[b for b in selected_backends() if b != "sqlite"])
def row_locking_db(request: pytest.FixtureRequest, servers: _Servers) -> Iterator[Database]:
    """The servers with row locks (PostgreSQL, MariaDB): for what SQLite's one writer rules out."""
    yield from _only(servers, request.param)


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer in transaction pooling mode in front of the test PostgreSQL (tests/pgbouncer.py)."""
    if PGBOUNCER is None:
        unavailable("pgbouncer", "no pgbouncer executable (apt-get install pgbouncer)")
    admin = sa.make_url(PG_ADMIN_URL)
    bouncer = PgBouncer(admin.host or "127.0.0.1", admin.port or 5432)
    yield bouncer
    bouncer.stop()
