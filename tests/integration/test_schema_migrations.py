"""Versioned schema migrations (issue 12 item 1) on real PostgreSQL, MariaDB and SQLite.

Each test works on its own table family (`mig<hex>_jobs`, `mig<hex>_cron_runs`, ...,
`mig<hex>_schema_migrations`) in the session's database, dropped afterwards, so it never
touches the shared `delayed_jobs` the other tests use.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

import delayed
from delayed import schema
from delayed.config import build_config, set_config
from delayed.schema import steps as schema_steps
from tests.helpers import run_delayed, subprocess_env
from tests.jobs.sample_jobs import Remember, performed


@dataclass
class Family:
    db: object
    names: schema.TableNames
    table: sa.Table
    engine: sa.Engine
    url: str

    def versions(self) -> list[int]:
        versions = schema.version_table(self.names.configured)
        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(versions.c.version)).scalars())

    def tables(self) -> set[str]:
        return set(sa.inspect(self.engine).get_table_names())

    def run_baseline_of_last_release(self) -> None:
        """The previous release's `delayed migrate`: step 1's statements, no version table."""
        with self.engine.begin() as conn:
            for statement in schema.STEPS[0].statements(self.engine.dialect, self.names):
                conn.exec_driver_sql(statement)


def _drop(engine: sa.Engine, names: schema.TableNames) -> None:
    with engine.begin() as conn:
        for name in (names.versions, names.cron_entries, names.cron_runs, names.jobs):
            table = sa.Table(name, sa.MetaData())
            conn.execute(sa.schema.DropTable(table, if_exists=True))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{names.jobs}_notify"()')


@pytest.fixture
def family(db) -> Iterator[Family]:
    names = schema.TableNames.for_jobs(f"mig{uuid.uuid4().hex[:8]}_jobs")
    set_config(build_config(environ={}, overrides={"database_url": db.url, "table_name": names.configured}))
    performed.clear()
    yield Family(db, names, schema.get_table(names.configured), db.engine, db.url)
    _drop(db.engine, names)


ALL = sorted(step.version for step in schema.STEPS)  # 1, 2, then each later step
LATER = ALL[2:]


def test_fresh_database_gets_every_step_with_one_version_row_each(family: Family) -> None:
    assert [step.version for step in schema.pending(family.engine, family.table)] == ALL
    done = schema.apply(family.engine, family.table)
    assert [(item.version, item.adopted) for item in done] == [(v, False) for v in ALL]
    assert family.versions() == ALL
    assert {family.names.jobs, family.names.cron_runs, family.names.cron_entries} <= family.tables()
    assert schema.migrate(family.engine, family.table) == []  # again: nothing
    assert schema.pending(family.engine, family.table) == []
    schema.check_current(family.engine, family.table)  # no error


@pytest.mark.parametrize("made_by", ["last release (jobs only)", "cron release (jobs + cron tables)"])
def test_upgrade_in_place_keeps_queued_jobs_and_runs_them(family: Family, made_by: str) -> None:
    """The issue's test: a table made by the previous release, jobs queued, `delayed migrate`
    (the real CLI once, in-process for the cron release's table), then a real worker runs
    every job."""
    family.run_baseline_of_last_release()
    if made_by.startswith("cron"):
        with family.engine.begin() as conn:
            for statement in schema.STEPS[1].statements(family.engine.dialect, family.names):
                conn.exec_driver_sql(statement)
    ids = [Remember.perform_later(i) for i in range(5)]
    with pytest.raises(schema.SchemaOutOfDate, match=f"is at version 0, this release needs {ALL[-1]}"):
        delayed.Worker().check_schema()

    result = run_delayed(
        "migrate", env=subprocess_env(family.url, DELAYED_TABLE_NAME=family.names.configured)
    )

    assert result.returncode == 0, result.stderr
    assert "Recorded version 1" in result.stdout
    expected_step_2 = "Recorded version 2" if made_by.startswith("cron") else "Applied version 2"
    assert expected_step_2 in result.stdout
    assert family.versions() == ALL
    assert {family.names.cron_runs, family.names.cron_entries} <= family.tables()
    indexes = {ix["name"] for ix in sa.inspect(family.engine).get_indexes(family.names.jobs)}
    if family.engine.dialect.name != "mysql":  # step 6: a partial index, none on MySQL
        assert f"idx_{family.names.jobs}_failed_list" in indexes
    status = delayed.Worker(sleep_delay=0.05).run(exit_on_complete=True, install_signals=False)
    assert status == 0
    assert sorted(value for kind, (value, *_rest) in performed if kind == "remember") == list(range(5))
    with family.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(family.table)).scalar_one()
    assert left == 0 and len(ids) == 5


def test_adoption_creates_an_old_tables_missing_index(family: Family) -> None:
    family.run_baseline_of_last_release()
    index = f"index_{family.names.jobs}_on_name"
    with family.engine.begin() as conn:
        on = f" ON {family.names.jobs}" if family.engine.dialect.name == "mysql" else ""
        conn.exec_driver_sql(f"DROP INDEX {index}{on}")
    done = schema.apply(family.engine, family.table)
    assert [(item.version, item.adopted) for item in done] == [(1, True), (2, False)] + [
        (v, False) for v in LATER
    ]
    assert index in {ix["name"] for ix in sa.inspect(family.engine).get_indexes(family.names.jobs)}


def test_two_hosts_migrating_at_once_both_succeed_and_apply_each_step_once(family: Family) -> None:
    barrier = threading.Barrier(3)
    results: list[list[schema.Applied]] = []
    errors: list[BaseException] = []

    def host() -> None:
        engine = delayed.db.create_engine(family.url)  # each host its own engine and connections
        try:
            barrier.wait()
            results.append(schema.apply(engine, family.table))
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=host) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    applied = sorted(item.version for result in results for item in result)
    assert applied == ALL, results  # each step by exactly one host
    assert family.versions() == ALL


def test_a_step_merged_later_with_a_lower_version_still_applies(
    family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions are recorded one row each: 103 and 105 applied, then 104 arrives: 104 runs."""
    made: list[int] = []

    def step(version: int) -> schema.Step:
        def statements(dialect: sa.Dialect, names: schema.TableNames) -> list[str]:
            made.append(version)
            table = sa.Table(f"{names.jobs}_x{version}", sa.MetaData(), sa.Column("id", sa.Integer))
            return [str(sa.schema.CreateTable(table).compile(dialect=dialect))]

        return schema.Step(version, f"test step {version}", statements)

    try:
        monkeypatch.setattr(schema_steps, "STEPS", (*schema.STEPS, step(103), step(105)))
        schema.apply(family.engine, family.table)
        monkeypatch.setattr(schema_steps, "STEPS", (*schema.STEPS, step(103), step(104), step(105)))
        missing = r"at version 105, this release needs 105 \(missing 104\)"
        with pytest.raises(schema.SchemaOutOfDate, match=missing):
            schema.check_current(family.engine, family.table)
        made.clear()
        assert [item.version for item in schema.apply(family.engine, family.table)] == [104]
        assert made == [104]
        assert family.versions() == [*ALL, 103, 104, 105]
    finally:
        with family.engine.begin() as conn:
            for version in (103, 104, 105):
                conn.execute(
                    sa.schema.DropTable(
                        sa.Table(f"{family.names.jobs}_x{version}", sa.MetaData()), if_exists=True
                    )
                )


def test_worker_refuses_to_start_while_a_step_is_pending(
    family: Family, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema.apply(family.engine, family.table)
    extra = schema.Step(99, "a test-only step", lambda dialect, names: ["SELECT 1"])
    monkeypatch.setattr(schema_steps, "STEPS", (*schema.STEPS, extra))
    Remember.perform_later("must not run")
    worker = delayed.Worker(sleep_delay=0.05)
    with pytest.raises(schema.SchemaOutOfDate) as raised:
        worker.run(exit_on_complete=True, install_signals=False)
    assert str(raised.value) == (
        f"schema of {family.names.jobs} is at version {ALL[-1]}, this release needs 99 (missing 99): "
        "run `delayed migrate`"
    )
    assert performed == []
    schema.apply(family.engine, family.table)
    assert delayed.Worker(sleep_delay=0.05).run(exit_on_complete=True, install_signals=False) == 0
    assert [kind for kind, _ in performed] == ["remember"]


def test_missing_table_keeps_the_claim_loops_message(family: Family) -> None:
    """No jobs table at all: the start check passes it on to the claim loop's own message."""
    schema.check_current(family.engine, family.table)  # no error: nothing to compare


def test_sql_prints_the_pending_ddl_and_a_dba_can_run_it(family: Family) -> None:
    """`--sql` against an empty family prints everything, version rows included; run by hand
    (as a DBA would), the schema is then current; `--sql` again prints nothing to apply."""
    statements = schema.pending_sql(family.engine, family.table)
    assert statements[0].startswith(f"CREATE TABLE {family.names.versions}")
    assert sum("INSERT INTO" in s for s in statements) == len(ALL)
    with family.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    assert family.versions() == ALL
    assert schema.pending_sql(family.engine, family.table) == []
    assert schema.migrate(family.engine, family.table) == []


def test_mysql_step_cut_short_by_a_crash_runs_again(mysql_db) -> None:
    """MariaDB commits each DDL statement: a step half done (one cron table made, no version
    row) is completed by the next migrate, passing over what exists."""
    names = schema.TableNames.for_jobs(f"mig{uuid.uuid4().hex[:8]}_jobs")
    table = schema.get_table(names.configured)
    try:
        schema.apply(mysql_db.engine, table)
        versions = schema.version_table(names.configured)
        runs, entries = schema.cron_tables(names.configured)
        with mysql_db.engine.begin() as conn:
            conn.execute(versions.delete().where(versions.c.version == 2))
            conn.execute(sa.schema.DropTable(entries))
        done = schema.apply(mysql_db.engine, table)
        assert [item.version for item in done] == [2]
        assert {runs.name, entries.name} <= set(sa.inspect(mysql_db.engine).get_table_names())
    finally:
        _drop(mysql_db.engine, names)


# ----------------------------------------------------------------------------- issue 11 item 9
def _migrate_enqueue_work(url: str, configured: str) -> None:
    set_config(build_config(environ={}, overrides={"database_url": url, "table_name": configured}))
    performed.clear()
    table = schema.get_table(configured)
    engine = delayed.db.create_engine(url)
    try:
        assert [item.version for item in schema.apply(engine, table)] == ALL
        Remember.perform_later("quoted")
        assert delayed.Worker(sleep_delay=0.05).run(exit_on_complete=True, install_signals=False) == 0
        assert [value for kind, (value, *_rest) in performed if kind == "remember"] == ["quoted"]
    finally:
        _drop(engine, schema.TableNames.for_jobs(configured))
        engine.dispose()


def test_a_name_that_needs_quoting_works_everywhere(db) -> None:
    """A reserved word in mixed case: only an identifier preparer gets every statement right
    (DDL, the PostgreSQL extras and trigger, LISTEN, claims, outcomes)."""
    _migrate_enqueue_work(db.url, "Select")


def test_a_schema_qualified_table_name_on_postgresql(pg) -> None:
    schema_name = f"mig_s{uuid.uuid4().hex[:6]}"
    pg.execute(f"CREATE SCHEMA {schema_name}")
    try:
        _migrate_enqueue_work(pg.url, f"{schema_name}.jobs")
        with pg.engine.connect() as conn:
            assert "jobs" not in sa.inspect(conn).get_table_names()  # not in public
    finally:
        pg.execute(f"DROP SCHEMA {schema_name} CASCADE")


INJECTIONS = [
    'v" SET (fillfactor=90);DROP TABLE victim;--',
    "jobs; DROP TABLE x",
    "a.b.c",
    "1jobs",
    "",
    "jobs ",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_table_name_accepts_plain_identifiers_only(name: str) -> None:
    with pytest.raises(
        delayed.ConfigError, match=r"environment variable DELAYED_TABLE_NAME: \[delayed\] table_name"
    ):
        build_config(environ={"DELAYED_TABLE_NAME": name})
    with pytest.raises(ValueError, match="is not a plain table name"):
        schema.make_table(name, sa.MetaData())


def test_table_name_too_long_for_the_dialect_is_a_config_error() -> None:
    fits = "j" * 47
    build_config(environ={"DELAYED_TABLE_NAME": fits, "DELAYED_DATABASE_URL": "postgresql://u@h/d"})
    with pytest.raises(delayed.ConfigError, match="must fit postgresql's 63-character limit, so at most 47"):
        build_config(environ={"DELAYED_TABLE_NAME": fits + "j", "DELAYED_DATABASE_URL": "postgresql://u@h/d"})
    build_config(environ={"DELAYED_TABLE_NAME": fits + "j", "DELAYED_DATABASE_URL": "sqlite:///x.db"})
