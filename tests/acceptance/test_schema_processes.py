"""Schema versions as users meet them: real `delayed` and `delayed-supervisor` processes."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from delayed import schema
from delayed.db import create_engine
from tests.helpers import run_delayed, subprocess_env

LATEST = schema.latest_version()
OUT_OF_DATE = (
    f"schema of delayed_jobs is at version {LATEST}, this release needs {LATEST} (missing 2): "
    "run `delayed migrate`"
)


def test_work_and_the_supervisor_refuse_an_out_of_date_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    env = subprocess_env(url)
    engine = create_engine(url)
    schema.migrate(engine)
    versions = schema.version_table()
    with engine.begin() as conn:  # step 2 undone: no cron tables, no row for it
        conn.execute(versions.delete().where(versions.c.version == 2))
        for table in schema.cron_tables():
            conn.execute(sa.schema.DropTable(table))
    engine.dispose()

    work = run_delayed("work", "--exit-on-complete", env=env, timeout=60)
    assert work.returncode == 1
    assert work.stderr.strip().splitlines() == [f"Error: {OUT_OF_DATE}"]

    supervisor = run_delayed("supervise", env=env, timeout=60)
    assert supervisor.returncode == 1
    assert f"delayed-supervisor: error: {OUT_OF_DATE}" in supervisor.stderr
    assert "Traceback" not in supervisor.stderr and "spawned" not in supervisor.stderr

    connect = run_delayed("supervise", "--check", "--connect", env=env, timeout=60)
    assert connect.returncode == 1 and OUT_OF_DATE in connect.stderr


def test_migrate_sql_prints_pending_ddl_without_running_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'review.sqlite3'}"
    env = subprocess_env(url)
    printed = run_delayed("migrate", "--sql", env=env)
    assert printed.returncode == 0, printed.stderr
    assert "CREATE TABLE delayed_schema_migrations" in printed.stdout
    assert (
        "CREATE TABLE delayed_jobs" in printed.stdout and "CREATE TABLE delayed_cron_runs" in printed.stdout
    )
    engine = sa.create_engine(url)
    assert sa.inspect(engine).get_table_names() == []  # nothing ran
    engine.dispose()


def test_migrate_refuses_an_injected_table_name_with_exit_2(pg) -> None:
    """Issue 11 item 9's reproduction (the other strings: test_schema_migrations, in-process)."""
    name = 'v" SET (fillfactor=90);DROP TABLE victim;--'
    pg.execute("CREATE TABLE IF NOT EXISTS victim (id integer)")
    result = run_delayed("migrate", env=subprocess_env(pg.url, DELAYED_TABLE_NAME=name))
    assert result.returncode == 2
    assert "table_name" in result.stderr and "is not a plain table name" in result.stderr
    assert sa.inspect(pg.engine).has_table("victim")
