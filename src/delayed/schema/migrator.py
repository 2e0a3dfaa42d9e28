"""Applying the schema steps: the version table, the lock, pending steps, the start-up check.

The version table (`delayed_schema_migrations` beside `delayed_jobs`) holds one row per
applied step. Pending = the steps whose version has no row, so steps merged in any order
apply. A database made before versioning (the jobs table, no version table rows) is
adopted: each step's `adopt` inspects it and the step is recorded without running when its
objects exist.

Two hosts migrating at once: each takes a lock first, then re-reads the applied versions.
- PostgreSQL: DDL is transactional, so each step runs in one transaction with its version
  row, under `pg_advisory_xact_lock` (released at commit).
- MySQL/MariaDB: DDL commits by itself, so a session `GET_LOCK` is held for the whole run,
  the version row is written after the step's statements, and a statement whose object
  already exists (a step cut short by a crash, then run again) is passed over.
- SQLite: each step in `BEGIN IMMEDIATE` (the database's one write lock), DDL included.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.schema import CreateTable

from ..errors import DelayedError
from ..timeutil import utcnow
from . import steps as _steps
from .tables import TableNames, jobs, version_table

log = logging.getLogger("delayed.schema")

MYSQL_LOCK_WAIT = 120  # seconds GET_LOCK waits for another host's migrate
# MySQL error codes of "already there" (a step re-run after a crash): table, column, index.
_MYSQL_EXISTS = {1050, 1060, 1061}


class MigrationError(DelayedError):
    """`delayed migrate` could not apply the schema (lock timeout, a refused statement)."""


class SchemaOutOfDate(DelayedError):
    """The database's schema lacks steps this release needs: run `delayed migrate`."""


@dataclass(frozen=True)
class Applied:
    """What one migrate did with one step: ran it, or recorded an existing one (adopted)."""

    version: int
    summary: str
    adopted: bool

    def __str__(self) -> str:
        how = ", adopted: its objects existed" if self.adopted else ""
        return f"version {self.version} ({self.summary}){how}"


def _names(table: sa.Table) -> TableNames:
    return TableNames.of(table)


def _steps_now() -> tuple[_steps.Step, ...]:
    """STEPS read at call time (tests inject a step with monkeypatch)."""
    return tuple(sorted(_steps.STEPS, key=lambda step: step.version))


# ------------------------------------------------------------------ reading the state
def applied_versions(conn: Connection, names: TableNames) -> set[int] | None:
    """The applied versions, or None when there is no version table."""
    versions = version_table(names.configured)
    if not sa.inspect(conn).has_table(versions.name, schema=versions.schema):
        return None
    return {int(v) for v in conn.execute(sa.select(versions.c.version)).scalars()}


def pending(engine: Engine, table: sa.Table = jobs) -> list[_steps.Step]:
    """The steps `migrate` would apply or record (all of them on an empty database)."""
    return [step for step, _statements in _plan(engine, _names(table))[1]]


def pending_sql(engine: Engine, table: sa.Table = jobs) -> list[str]:
    """The statements `migrate` would run now, with their version rows (for `--sql`)."""
    names = _names(table)
    has_versions, plan = _plan(engine, names)
    return _script(engine.dialect, names, plan, with_version_table=not has_versions)


def _plan(engine: Engine, names: TableNames) -> tuple[bool, list[tuple[_steps.Step, list[str]]]]:
    """(has a version table, [(pending step, the statements it needs)]); adoption included."""
    with engine.connect() as conn:
        applied = applied_versions(conn, names)
        inspector = sa.inspect(conn)
        adopting = not applied and inspector.has_table(names.jobs, schema=names.schema)
        plan = []
        for step in _steps_now():
            if applied and step.version in applied:
                continue
            completing = step.adopt(inspector, engine.dialect, names) if adopting and step.adopt else None
            plan.append((step, step.statements(engine.dialect, names) if completing is None else completing))
        return applied is not None, plan


def full_sql(dialect: Dialect, table: sa.Table = jobs) -> list[str]:
    """Every statement of every step for an empty database, with the version table and rows."""
    names = _names(table)
    plan = [(step, step.statements(dialect, names)) for step in _steps_now()]
    return _script(dialect, names, plan, with_version_table=True)


def ddl(dialect: Dialect, table: sa.Table = jobs) -> list[str]:
    """The DDL of every step (no version table): what the steps create on an empty database."""
    names = _names(table)
    return [s for step in _steps_now() for s in step.statements(dialect, names)]


def _script(
    dialect: Dialect,
    names: TableNames,
    plan: list[tuple[_steps.Step, list[str]]],
    *,
    with_version_table: bool,
) -> list[str]:
    versions = version_table(names.configured)
    script = [str(CreateTable(versions).compile(dialect=dialect)).strip()] if with_version_table else []
    for step, statements in plan:
        script += statements
        now = sa.func.current_timestamp()
        row = versions.insert().values(version=step.version, summary=step.summary, applied_at=now)
        script.append(str(row.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).strip())
    return script


def check_current(engine: Engine, table: sa.Table = jobs) -> None:
    """SchemaOutOfDate when steps are pending; nothing when current or when the jobs table is
    missing (the worker's claim then says so, as before versioning).

    One SELECT in the usual case (a worker calls it once at start).
    """
    names = _names(table)
    versions = version_table(names.configured)
    wanted = {step.version for step in _steps_now()}
    try:
        with engine.connect() as conn:
            applied = {int(v) for v in conn.execute(sa.select(versions.c.version)).scalars()}
    except sa.exc.DBAPIError:
        applied = _versions_after_error(engine, names)
        if applied is None:
            return
    missing = sorted(wanted - applied)
    if missing:
        raise SchemaOutOfDate(out_of_date_message(qualify(names), applied, missing))


def _versions_after_error(engine: Engine, names: TableNames) -> set[int] | None:
    """No version table readable: an unversioned jobs table is at version 0; no jobs table
    (or no database) is left to the worker's own message (None)."""
    try:
        with engine.connect() as conn:
            if sa.inspect(conn).has_table(names.jobs, schema=names.schema):
                return set()
    except sa.exc.DBAPIError:
        return None
    return None


def qualify(names: TableNames) -> str:
    return names.qualify(names.jobs)


def out_of_date_message(table: str, applied: set[int], missing: list[int]) -> str:
    at = max(applied) if applied else 0
    need = _steps.latest_version(_steps_now())
    gaps = f" (missing {', '.join(map(str, missing))})" if missing != list(range(at + 1, need + 1)) else ""
    return f"schema of {table} is at version {at}, this release needs {need}{gaps}: run `delayed migrate`"


# ------------------------------------------------------------------ applying
def migrate(engine: Engine, table: sa.Table = jobs) -> list[str]:
    """Apply the pending steps (adopting an unversioned table); what it did, one line each.

    Idempotent, and safe when several hosts run it at once (see the module docstring).
    """
    return [str(item) for item in apply(engine, table)]


def apply(engine: Engine, table: sa.Table = jobs) -> list[Applied]:
    names = _names(table)
    guard = _GUARDS.get(engine.dialect.name, _Guard)()
    done: list[Applied] = []
    with guard.session(engine, names) as conn:
        with guard.unit(conn):
            done += _prepare(conn, names)
        for step in _steps_now():
            with guard.unit(conn):
                applied = applied_versions(conn, names) or set()
                if step.version in applied:
                    continue
                _run(conn, step.statements(conn.dialect, names))
                _record(conn, names, step)
                done.append(Applied(step.version, step.summary, adopted=False))
    for item in done:
        log.debug("schema of %s: %s", qualify(names), item)
    return done


def _prepare(conn: Connection, names: TableNames) -> list[Applied]:
    """Create the version table if missing; adopt an unversioned database's existing steps."""
    versions = version_table(names.configured)
    applied = applied_versions(conn, names)
    if applied is None:
        versions.create(conn)
        applied = set()
    inspector = sa.inspect(conn)
    if applied or not inspector.has_table(names.jobs, schema=names.schema):
        return []
    adopted = []
    for step in _steps_now():
        if step.adopt is None:
            continue
        completing = step.adopt(sa.inspect(conn), conn.dialect, names)
        if completing is None:
            continue
        _run(conn, completing)
        _record(conn, names, step)
        adopted.append(Applied(step.version, step.summary, adopted=True))
    return adopted


def _run(conn: Connection, statements: list[str]) -> None:
    for statement in statements:
        try:
            conn.exec_driver_sql(statement)
        except sa.exc.DBAPIError as exc:
            if not (conn.dialect.name == "mysql" and _mysql_code(exc) in _MYSQL_EXISTS):
                raise
            log.info("already there, passed over: %s", statement.splitlines()[0])


def _mysql_code(exc: sa.exc.DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _record(conn: Connection, names: TableNames, step: _steps.Step) -> None:
    versions = version_table(names.configured)
    conn.execute(versions.insert().values(version=step.version, summary=step.summary, applied_at=utcnow()))


def _lock_key(names: TableNames) -> tuple[int, str]:
    """A stable advisory-lock key (signed 64 bits) and GET_LOCK name for this table family."""
    digest = hashlib.blake2b(f"delayed-migrate:{names.configured}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True), f"delayed_migrate_{digest.hex()}"


class _Guard:
    """Exclusion for one migrate run: `session` for the run, `unit` for each step."""

    @contextmanager
    def session(self, engine: Engine, names: TableNames) -> Iterator[Connection]:
        with engine.connect() as conn:
            self.names = names
            yield conn

    def unit(self, conn: Connection) -> AbstractContextManager[object]:
        return conn.begin()


class _PostgresGuard(_Guard):
    @contextmanager
    def _locked(self, conn: Connection) -> Iterator[None]:
        with conn.begin():
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(self.names)[0]})
            yield

    def unit(self, conn: Connection) -> AbstractContextManager[object]:
        return self._locked(conn)


class _MySQLGuard(_Guard):
    @contextmanager
    def session(self, engine: Engine, names: TableNames) -> Iterator[Connection]:
        self.names = names
        lock = _lock_key(names)[1]
        with engine.connect() as base:
            conn = base.execution_options(isolation_level="AUTOCOMMIT")
            got = conn.execute(
                sa.text("SELECT GET_LOCK(:name, :wait)"), {"name": lock, "wait": MYSQL_LOCK_WAIT}
            )
            if got.scalar() != 1:
                raise MigrationError(
                    f"another `delayed migrate` has held the migration lock of {qualify(names)} for "
                    f"{MYSQL_LOCK_WAIT} s; try again once it has finished"
                )
            try:
                yield conn
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": lock})

    def unit(self, conn: Connection) -> AbstractContextManager[object]:
        return _nothing()


class _SQLiteGuard(_Guard):
    @contextmanager
    def session(self, engine: Engine, names: TableNames) -> Iterator[Connection]:
        self.names = names
        with engine.connect() as base:
            yield base.execution_options(isolation_level="AUTOCOMMIT")

    def unit(self, conn: Connection) -> AbstractContextManager[object]:
        return _immediate(conn)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _immediate(conn: Connection) -> Iterator[None]:
    """SQLite's write lock for one step: DDL and the version row commit together."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    conn.exec_driver_sql("COMMIT")


_GUARDS: dict[str, Callable[[], _Guard]] = {
    "postgresql": _PostgresGuard,
    "mysql": _MySQLGuard,
    "sqlite": _SQLiteGuard,
}
