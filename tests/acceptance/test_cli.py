"""`delayed migrate` and `delayed work` as a user runs them: real subprocesses, real databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from delayed import schema
from tests.helpers import run_delayed, subprocess_env
from tests.jobs.sample_jobs import AlwaysFails, Remember


def test_migrate_sql_prints_dialect_ddl() -> None:
    env = subprocess_env()
    pg = run_delayed("migrate", "--sql", "--dialect", "postgresql", env=env)
    assert pg.returncode == 0, pg.stderr
    assert "CREATE TABLE delayed_jobs" in pg.stdout
    assert "idx_delayed_jobs_live ON delayed_jobs (priority, run_at, id, queue) WHERE failed_at IS NULL" in (
        pg.stdout
    )
    assert "pg_notify" in pg.stdout
    my = run_delayed("migrate", "--sql", "--dialect", "mysql", env=env)
    assert "idx_delayed_jobs_live ON delayed_jobs (failed_at, priority, run_at)" in my.stdout
    assert "DATETIME(6)" in my.stdout


def test_migrate_adopts_an_unversioned_table_creating_its_missing_indexes(db) -> None:
    """A table made before versioning, missing an index: recorded as version 1, index made."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE delayed_schema_migrations")
        conn.exec_driver_sql(
            "DROP INDEX index_delayed_jobs_on_name ON delayed_jobs"
            if db.backend == "mysql"
            else "DROP INDEX index_delayed_jobs_on_name"
        )
    env = subprocess_env(db.url)
    check = run_delayed("migrate", "--check", env=env)
    assert check.returncode == 1
    assert "has pending steps: 1 (baseline jobs table and its indexes)" in check.stderr
    first = run_delayed("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert (
        "Recorded version 1 (baseline jobs table and its indexes), adopted: its objects existed"
        in first.stdout
    )
    second = run_delayed("migrate", env=env)
    assert second.returncode == 0 and f"up to date (version {schema.latest_version()})" in second.stdout
    assert run_delayed("migrate", "--check", env=env).returncode == 0
    names = {ix["name"] for ix in sa.inspect(db.engine).get_indexes("delayed_jobs")}
    assert {"index_delayed_jobs_on_name", "idx_delayed_jobs_live"} <= names


def test_migrate_creates_table_on_empty_database(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    result = run_delayed("migrate", "--database-url", url, env=subprocess_env())
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(url)
    assert sa.inspect(engine).has_table(schema.jobs.name)
    engine.dispose()
    assert "Applied version 1 (baseline jobs table and its indexes)" in result.stdout
    assert f"delayed_jobs is now at version {schema.latest_version()}" in result.stdout


def test_work_exit_on_complete_runs_jobs(db) -> None:
    ok = [Remember.set(queue="cli").perform_later(i) for i in range(20)]
    bad = AlwaysFails.set(queue="cli").perform_later("cli failure")
    other = Remember.set(queue="elsewhere").perform_later("not mine")
    result = run_delayed(
        "work",
        "--require",
        "sample_jobs",
        "--queue",
        "cli",
        "--exit-on-complete",
        "--max-claims",
        "3",
        env=subprocess_env(db.url),
    )
    assert result.returncode == 0, result.stderr
    assert all(db.row(i) is None for i in ok)
    assert db.row(bad)["attempts"] == 1
    assert db.row(other)["locked_at"] is None
    assert "21 jobs processed" in result.stderr


def test_work_flags_from_environment(db) -> None:
    Remember.set(queue="env-q").perform_later("env")
    Remember.set(queue="other").perform_later("other")
    env = subprocess_env(db.url, QUEUES="env-q", MAX_CLAIMS="2")
    result = run_delayed("work", "--require", "sample_jobs", "--exit-on-complete", env=env)
    assert result.returncode == 0, result.stderr
    assert "max_claims=2" in result.stderr
    assert [r["queue"] for r in db.rows()] == ["other"]


def test_work_bad_flag_value_exits_2_naming_it(db) -> None:
    result = run_delayed("work", "--min-priority", "urgent", "--exit-on-complete", env=subprocess_env(db.url))
    assert result.returncode == 2
    assert "urgent" in result.stderr


def test_work_unknown_require_module_exits_2(db) -> None:
    result = run_delayed("work", "--require", "no_such_jobs_module", env=subprocess_env(db.url))
    assert result.returncode == 2
    assert "no_such_jobs_module" in result.stderr


def test_readme_quick_start(tmp_path) -> None:
    """The README's quick start, in a scratch copy of examples/: enqueue by script, then work."""
    import shutil
    import subprocess
    import sys

    from tests.helpers import ROOT

    shutil.copy(ROOT / "examples" / "jobs.py", tmp_path / "jobs.py")
    env = subprocess_env()
    enqueue = subprocess.run(
        [sys.executable, "jobs.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert enqueue.returncode == 0, enqueue.stderr
    assert "Enqueued jobs [1, 2, 3]" in enqueue.stdout
    work = subprocess.run(
        [sys.executable, "-m", "delayed.cli", "work", "--require", "jobs", "--exit-on-complete"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert work.returncode == 0, work.stderr
    assert "Sending the welcome email to user 42" in work.stdout
    assert "Building the report for 2026-11-23" in work.stdout
    assert "3 jobs processed" in work.stderr and ", 0 failed" in work.stderr


@pytest.mark.parametrize(
    ("flags", "env", "file", "expected"),
    [
        (
            ["--min-priority", "reporting", "--max-priority", "interactive"],
            {},
            None,
            ["min_priority 'reporting' (= 30, from the command line)", "max_priority 'interactive' (= 0"],
        ),
        (
            [],
            {"MIN_PRIORITY": "20", "MAX_PRIORITY": "10"},
            None,
            ["environment variable MIN_PRIORITY", "MAX_PRIORITY"],
        ),
        (
            [],
            {},
            '[delayed]\nmin_priority = "eventual"\nmax_priority = 0\n',
            ["'eventual' (= 20", "max_priority 0"],
        ),
    ],
)
def test_work_refuses_an_inverted_priority_range_with_exit_2(
    tmp_path, flags: list[str], env: dict[str, str], file: str | None, expected: list[str]
) -> None:
    args = ["work", "--exit-on-complete", "--database-url", f"sqlite:///{tmp_path / 'x.sqlite3'}", *flags]
    if file is not None:
        (tmp_path / "delayed.toml").write_text(file)
        args += ["-c", str(tmp_path / "delayed.toml")]
    result = run_delayed(*args, env=subprocess_env(**env), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is above max_priority" in result.stderr and "no job could ever be picked up" in result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr and "Starting worker" not in result.stderr


def test_supervise_check_refuses_an_inverted_pool_range_with_exit_2(tmp_path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text('[[pool]]\nname = "urgent"\nmin_priority = "reporting"\nmax_priority = "interactive"\n')
    result = run_delayed("supervise", "-c", str(path), "--check", env=subprocess_env(), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "[[pool]] #1 (urgent) min_priority 'reporting' (= 30" in result.stderr
    assert "max_priority 'interactive' (= 0" in result.stderr
