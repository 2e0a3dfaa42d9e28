"""Django tasks as pydelayed job classes, and what a worker does to run one.

Every Task validated by a DelayedBackend (Django validates a Task when `@task` makes it and
on each `.using(...)`) gets a pydelayed Job class registered under the task's module path,
e.g. `shop.tasks.send_receipt`. So:
- the `name` column, `delayed jobs`, StatsD, events and tracing spans show the task's path;
- a worker runs only tasks whose module it imported (the registry); nothing named in the
  table is ever imported. `delayed work` imports every installed app's `tasks` module
  after `django.setup()` (see setup.py); tasks elsewhere go in `require`.

The job's `perform` runs the task the way Django's own backends do: `Task.call` (an async
task runs through asgiref's `async_to_sync` on the job's thread, one event loop per running
task, until pydelayed's core runs async jobs on a shared loop), with a TaskContext when the
task takes one, the task_started / task_finished signals, and the ORM's connection
housekeeping before and after, as for a request.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ...job import Job
from ...registry import registered_jobs
from .compat import (
    InvalidTask,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_finished,
    task_started,
)

if TYPE_CHECKING:
    from .backend import DelayedBackend


class TaskJob(Job, abstract=True):
    """A pydelayed job that runs one Django Task; subclasses are made by `job_class_for`."""

    task: ClassVar[Any]  # the Task (a module-level @task object) this class runs
    backend_alias: ClassVar[str]

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        return run_task(self, list(args), kwargs)


def job_class_for(task: Any, backend: DelayedBackend) -> type[TaskJob]:
    """The registered job class of `task`, made on first sight (re-made when the function changes)."""
    name = task.module_path
    existing = registered_jobs().get(name)
    if existing is not None:
        if not issubclass(existing, TaskJob):
            raise InvalidTask(
                f"{name!r} is already the name of the pydelayed job class {existing.__qualname__}; "
                "rename the task or the job class"
            )
        if (
            existing.task.func is task.func
            and existing.max_attempts == backend.max_attempts
            and existing.keep_finished == backend.keep_finished
        ):
            return existing
    namespace = {
        "task": task,
        "backend_alias": task.backend,
        "max_attempts": backend.max_attempts,
        "keep_finished": backend.keep_finished,
        "__module__": task.func.__module__,
        "__qualname__": f"TaskJob[{task.func.__qualname__}]",
        "__doc__": task.func.__doc__,
    }
    return type(f"TaskJob_{task.func.__name__}", (TaskJob,), namespace, name=name)  # type: ignore[call-arg]


def django_datetime(naive_utc: datetime | None) -> datetime | None:
    """A stored naive-UTC timestamp as Django shows datetimes: aware with USE_TZ, else local naive."""
    if naive_utc is None:
        return None
    from django.conf import settings
    from django.utils import timezone

    aware = naive_utc.replace(tzinfo=UTC)
    if settings.USE_TZ:
        return aware
    return timezone.make_naive(aware, timezone.get_default_timezone())


def run_task(job: TaskJob, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run the task of `job` for its row; re-raise its exception so pydelayed retries or fails it.

    Returns the task's return value normalised to JSON, which the core drops today; kept
    results (issue 15 item 3) will store what `perform` returns.
    """
    from django.db import close_old_connections
    from django.utils import timezone

    task = job.task
    record = job.record
    backend = task_backends[job.backend_alias]
    now = timezone.now()
    result = TaskResult(
        task=task,
        id=str(record.id) if record is not None else "",
        status=TaskResultStatus.RUNNING,
        enqueued_at=django_datetime(record.created_at) if record is not None else None,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=job.backend_alias,
        errors=[],
        worker_ids=worker_ids(record.attempts if record else 0, record.locked_by if record else None, True),
    )
    close_old_connections()
    task_started.send(sender=type(backend), task_result=result)
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        value = normalize_json(value)
    except BaseException as exc:
        object.__setattr__(result, "finished_at", timezone.now())
        object.__setattr__(result, "status", TaskResultStatus.FAILED)
        result.errors.append(task_error(exc))
        task_finished.send(sender=type(backend), task_result=result)  # inside except: exc_info for loggers
        raise
    finally:
        close_old_connections()
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    task_finished.send(sender=type(backend), task_result=result)
    return value


def task_error(exc: BaseException) -> Any:
    """Django's TaskError for an exception: the class's import path and the traceback text."""
    cls = type(exc)
    path = f"{cls.__module__}.{cls.__qualname__}"
    return TaskError(exception_class_path=path, traceback="".join(traceback.format_exception(exc)))


def worker_ids(attempts: int, locked_by: str | None, running: bool) -> list[str]:
    """Django's worker_ids: one entry per attempt (so `TaskResult.attempts` counts them).

    pydelayed keeps the name of the worker holding a running job (`locked_by`) but not of
    those that ran earlier attempts: those entries are "" (unknown).
    """
    ids = [""] * attempts
    if running:
        ids.append(locked_by or "")
    return ids
