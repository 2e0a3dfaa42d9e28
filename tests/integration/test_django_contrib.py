"""delayed.contrib.django in this process: enqueue on a Django connection, settings checks, mappings.

Django is configured here with minimal settings (no project); the real project, workers and
Django 6 are in tests/integration/test_django_backend.py. Database tests use the `db` fixture
(SQLite, PostgreSQL, MariaDB) through a Django DatabaseWrapper made for that database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        USE_TZ=True,
        TIME_ZONE="UTC",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[],
        TASKS={
            "default": {"BACKEND": "delayed.contrib.django.DelayedBackend", "QUEUES": []},
        },
    )
    django.setup()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

import delayed  # noqa: E402
from delayed.backends import insert_rows  # noqa: E402
from delayed.contrib.django import backend as backend_module  # noqa: E402
from delayed.contrib.django import database_url, priorities  # noqa: E402
from delayed.contrib.django.compat import InvalidTask, Task, TaskResultStatus  # noqa: E402
from delayed.contrib.django.results import _error, row_to_result  # noqa: E402
from delayed.contrib.django.schema import database_url as _database_url  # noqa: E402
from delayed.errors import ConfigError  # noqa: E402
from delayed.registry import registered_jobs  # noqa: E402

DelayedBackend = backend_module.DelayedBackend


# ----------------------------------------------------------------------------- a Django connection
def _django_settings(url: str) -> dict[str, Any]:
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.database}
    if backend == "mysql":
        import pymysql

        pymysql.install_as_MySQLdb()
    engine = {"postgresql": "django.db.backends.postgresql", "mysql": "django.db.backends.mysql"}[backend]
    return {
        "ENGINE": engine,
        "NAME": parsed.database,
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.host or "",
        "PORT": str(parsed.port or ""),
    }


@pytest.fixture
def django_conn(db: Any) -> Iterator[Any]:
    """A Django DatabaseWrapper on the test's database (not registered in `connections`)."""
    from django.db import connections
    from django.db.utils import load_backend

    alias = f"pyd_{db.backend}"
    default = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    settings_dict = connections.configure_settings({"default": default, alias: _django_settings(db.url)})[
        alias
    ]
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    yield wrapper
    wrapper.close()


def _rows(n: int) -> list[dict[str, Any]]:
    return [delayed.job(lambda: None, name=f"t.django.job{n}").build().row() for _ in range(n)]


def test_insert_rows_on_a_django_connection_joins_its_transaction(db: Any, django_conn: Any) -> None:
    django_conn.set_autocommit(False)  # what transaction.atomic() does on its connection
    ids = insert_rows(_rows(3), delayed.jobs_table, using=django_conn)
    assert len(ids) == 3 and ids == sorted(ids)
    assert db.count() == 0, "another connection saw the jobs before the commit"
    django_conn.rollback()
    assert db.count() == 0, "a rolled-back Django transaction left jobs"
    ids = insert_rows(_rows(2), delayed.jobs_table, using=django_conn)
    django_conn.commit()
    django_conn.set_autocommit(True)
    rows = db.rows()
    assert [r["id"] for r in rows] == ids
    assert rows[0]["name"] == "t.django.job2" and rows[0]["attempts"] == 0
    # The timestamps read back as pydelayed wrote them (SQLite compares them as text).
    assert rows[0]["run_at"] == rows[0]["created_at"]
    assert json.loads(rows[0]["handler"])["job"] == "t.django.job2"


def test_a_django_insert_is_picked_up_by_a_worker(db: Any, django_conn: Any) -> None:
    ran: list[int] = []

    @delayed.job(name="t.django.pick")
    def pick(n: int) -> None:
        ran.append(n)

    insert_rows([pick.build(7).row()], delayed.jobs_table, using=django_conn)  # autocommit: committed now
    assert delayed.Worker(max_claims=1).work_off(5) == (1, 0)
    assert ran == [7] and db.count() == 0


# ----------------------------------------------------------------------------- settings
def test_backend_options_are_checked() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"unknown key\(s\) \['DATABSE'\]"):
        DelayedBackend("x", {"OPTIONS": {"DATABSE": "default"}})
    with pytest.raises(ImproperlyConfigured, match="'nope', which is not in DATABASES"):
        DelayedBackend("x", {"OPTIONS": {"DATABASE": "nope"}})
    with pytest.raises(ImproperlyConfigured, match="MAX_ATTEMPTS'\\] must be an integer >= 1"):
        DelayedBackend("x", {"OPTIONS": {"MAX_ATTEMPTS": 0}})
    with pytest.raises(ImproperlyConfigured, match="ENQUEUE_ON_COMMIT'\\] must be True or False"):
        DelayedBackend("x", {"ENQUEUE_ON_COMMIT": "yes"})
    backend = DelayedBackend("x", {"OPTIONS": {"MAX_ATTEMPTS": 3}, "QUEUES": ["a"]})
    assert backend.database == "default" and backend.max_attempts == 3 and backend.queues == {"a"}
    assert (backend.supports_defer, backend.supports_priority) == (True, True)
    assert (backend.supports_get_result, backend.supports_async_task) == (True, True)


def test_database_url_of_django_settings() -> None:
    pg = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "app",
        "USER": "u",
        "PASSWORD": "p@ss",
        "HOST": "db.internal",
        "PORT": "5433",
        "OPTIONS": {"sslmode": "require"},
    }
    assert _database_url("a", pg) == "postgresql+psycopg://u:p%40ss@db.internal:5433/app?sslmode=require"
    my = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "app",
        "USER": "root",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": 3306,
        "OPTIONS": {"charset": "utf8mb4"},
    }
    assert _database_url("a", my) == "mysql+pymysql://root@127.0.0.1:3306/app?charset=utf8mb4"
    assert _database_url("a", {"ENGINE": "django.db.backends.sqlite3", "NAME": "/x/db.sqlite3"}) == (
        "sqlite:////x/db.sqlite3"
    )
    with pytest.raises(ConfigError, match="in-memory SQLite"):
        database_url("default")  # this module's settings: ":memory:"
    with pytest.raises(ConfigError, match="supports PostgreSQL, MySQL/MariaDB and SQLite"):
        _database_url("o", {"ENGINE": "django.db.backends.oracle", "NAME": "x"})


# ----------------------------------------------------------------------------- mappings
def test_priority_mapping_reverses_the_order_and_round_trips() -> None:
    django_order = [100, 50, 1, 0, -1, -100]  # Django: first runs first
    ours = [priorities.to_delayed_priority(p) for p in django_order]
    assert ours == sorted(ours), "pydelayed picks the lowest number first"
    assert [priorities.to_django_priority(p) for p in ours] == django_order
    assert priorities.to_django_priority(-500) == 100 and priorities.to_django_priority(500) == -100


def _raise(exc: BaseException) -> str:
    from delayed.retry import format_error

    try:
        raise exc
    except BaseException as caught:
        return format_error(caught)


class LocalError(Exception):
    pass


def test_last_error_becomes_a_task_error_with_the_class_path() -> None:
    error = _error(_raise(ValueError("bad\nsecond line")))
    assert error.exception_class_path == "builtins.ValueError" and error.exception_class is ValueError
    assert "bad" in error.traceback and error.traceback.startswith("Traceback")
    error = _error(_raise(LocalError("x")))
    assert error.exception_class_path == f"{__name__}.LocalError"
    assert error.exception_class is LocalError
    try:
        try:
            raise KeyError("first")
        except KeyError as first:
            raise LocalError("second") from first
    except LocalError as chained:
        from delayed.retry import format_error

        assert _error(format_error(chained)).exception_class_path == f"{__name__}.LocalError"


# ----------------------------------------------------------------------------- tasks as jobs
def some_task(n: int) -> int:
    return n * 2


def test_a_validated_task_is_a_registered_job_and_a_row_becomes_its_result() -> None:
    backend = DelayedBackend("default", {"QUEUES": []})
    task = Task(func=some_task, priority=0, backend="default", queue_name="q", run_after=None)
    job_class = registered_jobs()[f"{__name__}.some_task"]
    assert job_class.task is task
    assert task.using(priority=5) is not None
    assert registered_jobs()[f"{__name__}.some_task"] is job_class  # same function: same class
    row = {
        "id": 12,
        "priority": -5,
        "attempts": 1,
        "name": f"{__name__}.some_task",
        "queue": "q",
        "handler": json.dumps({"job": f"{__name__}.some_task", "args": [3], "kwargs": {}}),
        "last_error": _raise(LocalError("boom")),
        "run_at": "2030-01-01 00:00:00.000000",
        "created_at": "2029-12-31 23:00:00.000000",
        "updated_at": "2029-12-31 23:30:00.000000",
        "locked_at": None,
        "locked_by": None,
        "failed_at": None,
    }
    result = row_to_result(row, backend, "12")
    assert result.status == TaskResultStatus.READY  # waiting for its retry
    assert result.task.priority == 5 and result.task.queue_name == "q"
    assert result.task.run_after is not None and result.task.run_after.year == 2030
    assert result.attempts == 1 and result.errors[0].exception_class is LocalError
    assert result.last_attempted_at is not None and result.args == [3]
    running = row_to_result(
        {**row, "locked_at": "2030-01-01 00:00:01", "locked_by": "host:x pid:1"}, backend, "12"
    )
    assert running.status == TaskResultStatus.RUNNING and running.worker_ids == ["", "host:x pid:1"]
    failed = row_to_result({**row, "failed_at": "2030-01-01 00:00:02"}, backend, "12")
    assert failed.status == TaskResultStatus.FAILED and failed.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = failed.return_value


def test_a_task_named_like_a_pydelayed_job_is_refused() -> None:
    @delayed.job(name=f"{__name__}.clashing_task")
    def other() -> None: ...

    with pytest.raises(InvalidTask, match="already the name of the pydelayed job class"):
        Task(func=clashing_task, priority=0, backend="default", queue_name="default", run_after=None)


def clashing_task() -> None: ...
