"""The Django Tasks backend in a real Django project, with real workers, on all three databases.

Every test runs twice per database: on this interpreter (Python 3.11: Django 5.2 and the
django-tasks backport) and in the Python 3.12 venv made by `.ci/django6-venv.sh` (Django 6's
`django.tasks`). Each (interpreter, database) pair gets a scratch database of its own, made
empty here and migrated by Django's `migrate` (so the app's migration creating the jobs
table is itself under test), dropped at the end.

The project is tests/django_project; each step (`scenario.py place ...`, `result ...`) is a
fresh process with the project's settings, as a request would be, and workers are
`python -m delayed.cli work --exit-on-complete` subprocesses with DJANGO_SETTINGS_MODULE set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from delayed import schema
from tests.conftest import IN_CI, MYSQL_ADMIN_URL, PG_ADMIN_URL, selected_backends
from tests.helpers import ROOT, kill_session, render_toml, wait_for

pytestmark = pytest.mark.slow

PROJECT = ROOT / "tests" / "django_project"
DJANGO6_VENV = Path(os.environ.get("DELAYED_DJANGO6_VENV", "/work/venvs/django6"))
DJANGO6_PYTHON = DJANGO6_VENV / "bin" / "python"


def _host_has_django() -> bool:
    try:
        import django  # noqa: F401
    except ImportError:
        return False
    return True


INTERPRETERS = {"host": sys.executable, "django6": str(DJANGO6_PYTHON)}


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (under CI every Django variant must run)", pytrace=False)
    pytest.skip(reason)


# ----------------------------------------------------------------------------- the project
@dataclass
class Project:
    """The Django project on one interpreter and one scratch database."""

    interpreter: str
    python: str
    backend: str
    url: str
    tmp: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DELAYED_", "DJANGO_"))}
        env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), str(ROOT / "src")])
        env["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
        env["DJANGO_DATABASE_URL"] = self.url
        env["DELAYED_DATABASE_URL"] = self.url
        env.update(extra)
        return env

    def run(self, step: str, *args: object, check: bool = True) -> Any:
        """One scenario step in its own process; its JSON output."""
        proc = subprocess.run(
            [self.python, str(PROJECT / "scenario.py"), step, *map(str, args)],
            env=self.env(),
            cwd=str(PROJECT),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if not check:
            return proc
        assert proc.returncode == 0, f"scenario {step} {args} failed:\n{proc.stderr[-3000:]}"
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def worker_cmd(self, *args: str) -> list[str]:
        return [self.python, "-m", "delayed.cli", "work", *args]

    def work(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A worker until nothing is ready; its output is returned (and checked for exit 0)."""
        proc = subprocess.run(
            self.worker_cmd("--exit-on-complete", "--sleep-delay", "0.2", *args),
            env=self.env(),
            cwd=str(PROJECT),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, f"worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        return proc

    def rows(self) -> list[dict[str, Any]]:
        engine = sa.create_engine(_sa_url(self.url), poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                t = schema.jobs
                return [dict(r) for r in conn.execute(sa.select(t).order_by(t.c.id)).mappings()]
        finally:
            engine.dispose()

    def clean(self) -> None:
        engine = sa.create_engine(_sa_url(self.url), poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                for table in ("delayed_jobs", "shop_order", "shop_runlog"):
                    conn.exec_driver_sql(f"DELETE FROM {table}")
        finally:
            engine.dispose()


def _sa_url(url: str) -> str:
    from delayed.db import normalize_url

    return normalize_url(url).render_as_string(hide_password=False)


def _create_database(backend: str, tmp: Path) -> tuple[str, Any]:
    """A new empty database; (url, drop callback)."""
    name = f"pydj_{uuid.uuid4().hex[:10]}"
    if backend == "sqlite":
        path = tmp / f"{name}.sqlite3"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    admin_url = PG_ADMIN_URL if backend == "postgresql" else MYSQL_ADMIN_URL
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except Exception as exc:
        _skip_or_fail(f"{backend} is not reachable: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        admin.dispose()
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    url = url.replace("+psycopg", "").replace("+pymysql", "")  # the project's settings pick drivers

    def drop() -> None:
        engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                force = " WITH (FORCE)" if backend == "postgresql" else ""
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        finally:
            engine.dispose()

    return url, drop


@pytest.fixture(scope="module", params=list(INTERPRETERS))
def interpreter(request: pytest.FixtureRequest) -> str:
    name = request.param
    if name == "host" and not _host_has_django():
        _skip_or_fail("Django is not installed for this interpreter (pip install -e '.[test]')")
    if name == "django6" and not DJANGO6_PYTHON.exists():
        _skip_or_fail(f"no Django 6 venv at {DJANGO6_VENV} (run .ci/django6-venv.sh)")
    return name


@pytest.fixture(scope="module", params=selected_backends())
def migrated(
    request: pytest.FixtureRequest, interpreter: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Project, dict[str, Any]]]:
    """A scratch database migrated by Django; (project, what `migrate` reported)."""
    tmp = tmp_path_factory.mktemp(f"django-{interpreter}-{request.param}")
    url, drop = _create_database(request.param, tmp)
    project = Project(interpreter, INTERPRETERS[interpreter], request.param, url, tmp)
    try:
        info = project.run("info")
        assert info["vendor"] == {"mysql": "mysql"}.get(request.param, request.param)
        if interpreter == "django6":
            assert info["tasks_api"] == "django.tasks" and info["django"].startswith("6."), info
        yield project, project.run("migrate")
    finally:
        drop()


@pytest.fixture
def project(migrated: tuple[Project, dict[str, Any]]) -> Project:
    migrated[0].clean()
    return migrated[0]


# ----------------------------------------------------------------------------- the schema
def test_django_migrate_creates_pydelayeds_jobs_table(migrated: tuple[Project, dict[str, Any]]) -> None:
    """`manage.py migrate` makes the table `delayed migrate` makes: same columns, same indexes."""
    project, report = migrated
    assert "delayed_jobs" in report["tables"]
    engine = sa.create_engine(_sa_url(project.url), poolclass=sa.NullPool)
    try:
        inspector = sa.inspect(engine)
        columns = {c["name"] for c in inspector.get_columns("delayed_jobs")}
        indexes = {ix["name"] for ix in inspector.get_indexes("delayed_jobs")}
        expected = {ix.name for ix in schema.jobs.indexes if schema._index_applies(ix, engine.dialect)}
        assert columns == {c.name for c in schema.jobs.columns}
        assert expected <= indexes, f"missing {expected - indexes}"
        assert schema.migrate(engine) == []  # pydelayed's own migrate finds nothing left to do
        assert schema.pending(engine) == []  # every step recorded in delayed_schema_migrations
        schema.check_current(engine, schema.jobs)
    finally:
        engine.dispose()
    assert project.run("migrate")["tables"] == report["tables"]  # again: nothing to apply


# ----------------------------------------------------------------------------- transactions
def test_rollback_leaves_no_job_and_commit_runs_the_task(project: Project) -> None:
    kept = project.run("place", "A-1")
    rolled_back = project.run("place", "A-2", "fail")
    assert rolled_back["rolled_back"] is True
    rows = project.rows()
    assert [str(r["id"]) for r in rows] == [kept["result_id"]], "the rolled-back enqueue left a row"
    assert rows[0]["name"] == "shop.tasks.process_order"
    assert json.loads(rows[0]["handler"])["args"] == [kept["order_id"]]
    assert "does_not_exist" in project.run("result", rolled_back["result_id"])
    assert project.run("result", kept["result_id"])["status"] == "READY"
    assert project.run("orders")["orders"] == {"A-1": False}

    out = project.work()
    assert "1 jobs processed" in out.stderr, out.stderr[-2000:]
    assert project.run("orders")["orders"] == {"A-1": True}, "the task did not run with the ORM"
    assert project.rows() == []  # success deletes the row (until kept results exist)


def test_enqueue_on_commit_false_enqueues_outside_the_transaction(project: Project) -> None:
    """The legacy ENQUEUE_ON_COMMIT = False: the job is committed at once, whatever the caller does."""
    proc = project.run("place", "B-1", "fail", "outside", check=False)
    if project.backend == "sqlite":
        assert proc.returncode != 0 and "ENQUEUE_ON_COMMIT = False" in proc.stderr, proc.stderr[-2000:]
        assert project.rows() == []
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    result_id = json.loads(proc.stdout.strip().splitlines()[-1])["result_id"]
    assert [str(r["id"]) for r in project.rows()] == [result_id], "the job should survive the rollback"
    assert project.run("orders")["orders"] == {}


# ----------------------------------------------------------------------------- results
def test_get_result_follows_ready_running_failed(project: Project) -> None:
    release = project.tmp / f"release-{uuid.uuid4().hex[:6]}"
    result_id = project.run("enqueue", "fail_when_released", json.dumps([str(release)]))["result_id"]
    ready = project.run("result", result_id)
    assert ready["status"] == "READY" and ready["attempts"] == 0 and ready["errors"] == []
    assert ready["task"] == "shop.tasks.fail_when_released" and ready["args"] == [str(release)]
    assert ready["enqueued_at"] and ready["started_at"] is None

    log = project.tmp / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen(
            project.worker_cmd("--exit-on-complete", "--sleep-delay", "0.2"),
            env=project.env(),
            cwd=str(PROJECT),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        running = wait_for(
            lambda: (r := project.run("result", result_id))["status"] == "RUNNING" and r, timeout=60
        )
        assert running["started_at"] and running["last_attempted_at"] == running["started_at"]
        assert running["attempts"] == 1 and running["worker_ids"][-1].startswith("host:")
        assert running["finished_at"] is None
        release.touch()
        assert worker.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    failed = project.run("result", result_id)
    assert failed["status"] == "FAILED", failed
    assert failed["attempts"] == 1 and failed["finished_at"]
    [error] = failed["errors"]
    assert error["exception_class_path"] == "shop.tasks.PaymentError"
    assert error["exception_class"] == "PaymentError"
    assert f"card declined after {release} appeared" in error["traceback"]
    assert failed["return_value_error"] == "Task failed"
    log_text = log.read_text()
    assert "state=RUNNING" in log_text and "state=FAILED" in log_text, "task signals were not sent"


def test_get_result_is_successful_with_the_return_value_when_results_are_kept(project: Project) -> None:
    result_id = project.run("enqueue", "add", json.dumps([2, 3]))["result_id"]
    assert project.run("result", result_id, "kept")["status"] == "READY"
    out = project.work()
    assert "1 jobs processed" in out.stderr, out.stderr[-2000:]
    done = project.run("result", result_id, "kept")
    assert done["status"] == "SUCCESSFUL", done
    assert done["return_value"] == {"sum": 5}
    assert done["finished_at"] and done["attempts"] == 0 and done["errors"] == []
    [row] = project.rows()
    assert row["finished_at"] is not None and json.loads(row["result"]) == {"sum": 5}
    assert project.work().returncode == 0 and len(project.rows()) == 1, "a kept row is never picked up again"


def test_unknown_result_id_raises_result_does_not_exist(project: Project) -> None:
    assert "no job 987654" in project.run("result", "987654")["does_not_exist"]
    assert "not a DelayedBackend result id" in project.run("result", "not-a-number")["does_not_exist"]


# ----------------------------------------------------------------------------- priority, queues, defer
def test_django_priority_runs_higher_first_stored_negated(project: Project) -> None:
    labels = {"p-100": -100, "p0": 0, "p50": 50, "p100": 100, "p-5": -5}
    ids = {}
    for label, priority in labels.items():
        ids[label] = project.run("enqueue", "note", json.dumps([label]), priority)["result_id"]
    rows = {str(r["id"]): r for r in project.rows()}
    for label, priority in labels.items():
        assert rows[ids[label]]["priority"] == -priority
        assert rows[ids[label]]["queue"] == "mailers"
        assert project.run("result", ids[label])["priority"] == priority
    project.work("--max-claims", "1")
    assert project.run("runlog")["labels"] == ["p100", "p50", "p0", "p-5", "p-100"]


def test_run_after_context_and_async_tasks(project: Project) -> None:
    later = project.run("enqueue", "note", json.dumps(["later"]), "", "", 3600)["result_id"]
    ctx = project.run("enqueue", "with_context", json.dumps(["ctx"]))["result_id"]
    project.run("enqueue", "async_note", json.dumps(["async"]))
    project.work()
    labels = project.run("runlog")["labels"]
    assert sorted(labels) == sorted(["async", f"ctx id={ctx} attempt=1"])
    deferred = project.run("result", later)
    assert deferred["status"] == "READY" and deferred["run_after"], deferred


def test_queue_not_in_queues_is_refused(project: Project) -> None:
    proc = project.run("enqueue", "note", json.dumps(["x"]), "", "reports", check=False)
    assert proc.returncode != 0 and "Queue 'reports' is not valid for backend" in proc.stderr
    assert project.rows() == []


# ----------------------------------------------------------------------------- the supervisor
def test_supervisor_children_set_django_up(project: Project) -> None:
    """`delayed-supervisor`: each forked child runs django.setup() and works the tasks."""
    config = project.tmp / "delayed.toml"
    config.write_text(
        render_toml(
            {
                "delayed": {"database_url": project.url, "sleep_delay": 0.2},
                "supervisor": {"graceful_timeout": 20},
                "pool": [{"name": "web", "workers": 2, "max_claims": 2}],
            }
        )
    )
    placed = [project.run("place", f"S-{n}") for n in range(3)]
    log = project.tmp / "supervisor.log"
    with open(log, "w") as out:
        sup = subprocess.Popen(
            [project.python, "-m", "delayed.supervisor", "-c", str(config)],
            env=project.env(),
            cwd=str(PROJECT),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(lambda: all(project.run("orders")["orders"].values()), timeout=90)
        assert project.rows() == []
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if sup.poll() is None:
            kill_session(sup.pid)
            sup.wait()
    text = log.read_text()
    assert text.count("Django set up from djproject.settings") >= 2, text[-3000:]
    assert len(placed) == 3


# ----------------------------------------------------------------------------- observability
def test_django_enqueue_takes_pydelayeds_enqueue_path(project: Project) -> None:
    """Events (and so StatsD) and tracing see a Django enqueue like any pydelayed enqueue."""
    out = project.run("observed", "O-1")
    assert out["events"] == [{"jobs": ["shop.tasks.process_order"], "ids": [out["result_id"]]}]
    if project.interpreter == "host":  # the test extra brings the OpenTelemetry SDK here
        assert out["traced"], "opentelemetry-sdk is missing for the host interpreter"
    if out["traced"]:
        assert {"name": "default publish", "kind": "PRODUCER"} in out["spans"], out["spans"]
        assert "trace" in out["handler_keys"]
