"""A jobs-table row as Django's TaskResult: what `DelayedBackend.get_result` returns.

Status from the row (the gem's columns):
- `failed_at` set -> FAILED (attempts used up; the row is kept, `last_error` holds the error);
- `locked_at` set -> RUNNING (a worker holds it);
- otherwise READY: waiting for its first run, or for a retry after a failed attempt
  (`attempts` > 0, the last error in `errors`), as Django defines READY.
A successful job's row is deleted, so its id is unknown afterwards (TaskResultDoesNotExist).
SUCCESSFUL and `return_value` come with kept results (issue 15 item 3): the seam is
`_finished`, which reads the `finished_at` / `result` columns when the table has them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from importlib import import_module
from typing import Any

from ...registry import registered_jobs
from ...timeutil import to_naive_utc
from .compat import TaskError, TaskResult, TaskResultDoesNotExist, TaskResultStatus
from .jobs import TaskJob, django_datetime, worker_ids
from .priorities import to_django_priority


def to_naive(value: Any) -> datetime | None:
    """A timestamp column as naive UTC, whichever form the driver returned it in."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))  # SQLite text
    return to_naive_utc(value)


def row_to_result(row: dict[str, Any], backend: Any, result_id: str) -> TaskResult:
    """Build the TaskResult of one row; TaskResultDoesNotExist when it is not a Django task."""
    task = resolve_task(row["name"], result_id)
    try:
        handler = json.loads(row["handler"])
    except (TypeError, ValueError):
        raise TaskResultDoesNotExist(f"job {result_id} has an unreadable handler") from None
    status, started, finished, last_attempted = _timeline(row)
    attempts = int(row["attempts"] or 0)
    errors = [_error(row["last_error"])] if row.get("last_error") else []
    result = TaskResult(
        task=_task_as_stored(task, row, backend),
        id=result_id,
        status=status,
        enqueued_at=django_datetime(to_naive(row["created_at"])),
        started_at=django_datetime(started),
        finished_at=django_datetime(finished),
        last_attempted_at=django_datetime(last_attempted),
        args=handler.get("args", []),
        kwargs=handler.get("kwargs", {}),
        backend=backend.alias,
        errors=errors,
        worker_ids=worker_ids(attempts, row.get("locked_by"), status == TaskResultStatus.RUNNING),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", _return_value(row))
    return result


def resolve_task(name: str, result_id: str) -> Any:
    """The Task registered under `name` in this process (its module must have been imported)."""
    job_class = registered_jobs().get(name)
    if job_class is None:
        job_class = _import_task_module(name)
    if job_class is None or not issubclass(job_class, TaskJob):
        raise TaskResultDoesNotExist(
            f"job {result_id} runs {name!r}, which is not a Django task known to this process "
            "(a pydelayed job, or a task whose module is not imported here)"
        )
    return job_class.task


def _import_task_module(name: str) -> Any:
    """Import the module of `name` when it belongs to an installed app, then look again.

    Only project code is imported (a module inside an INSTALLED_APPS package), and what runs
    or is returned is still only what the backend registered when that module made its Tasks.
    """
    from django.apps import apps

    module = name.rsplit(".", 1)[0]
    if "." not in name or apps.get_containing_app_config(module) is None:
        return None
    try:
        import_module(module)
    except ImportError:
        return None
    return registered_jobs().get(name)


def _task_as_stored(task: Any, row: dict[str, Any], backend: Any) -> Any:
    """The Task with the row's priority, queue and run_after, when Django accepts them."""
    changes: dict[str, Any] = {"priority": to_django_priority(int(row["priority"]))}
    if row.get("queue") is not None:
        changes["queue_name"] = row["queue"]
    run_at, created = to_naive(row["run_at"]), to_naive(row["created_at"])
    if run_at is not None and created is not None and run_at > created:
        changes["run_after"] = django_datetime(run_at)
    try:
        return task.using(**changes)
    except Exception:  # e.g. an operator moved the row to a queue this backend does not list
        return task


def _timeline(row: dict[str, Any]) -> tuple[Any, datetime | None, datetime | None, datetime | None]:
    """(status, started_at, finished_at, last_attempted_at) from the row.

    pydelayed records when the running attempt started (`locked_at`) and when a job failed
    for good (`failed_at`); it keeps no start time of earlier attempts, so for a failed or
    retrying job started_at is None and last_attempted_at is the time of the last failure
    (`updated_at`, written with it).
    """
    failed_at = to_naive(row.get("failed_at"))
    locked_at = to_naive(row.get("locked_at"))
    updated_at = to_naive(row.get("updated_at"))
    attempts = int(row.get("attempts") or 0)
    finished = _finished(row)
    if failed_at is not None:
        return TaskResultStatus.FAILED, None, failed_at, updated_at or failed_at
    if finished is not None:
        return TaskResultStatus.SUCCESSFUL, None, finished, finished
    if locked_at is not None:
        return TaskResultStatus.RUNNING, locked_at, None, locked_at
    return TaskResultStatus.READY, None, None, updated_at if attempts else None


def _finished(row: dict[str, Any]) -> datetime | None:
    """When a kept successful job finished (issue 15 item 3 adds the column); None until then."""
    return to_naive(row.get("finished_at"))


def _return_value(row: dict[str, Any]) -> Any:
    """A kept job's JSON return value (issue 15 item 3: the `result` column)."""
    raw = row.get("result")
    return json.loads(raw) if isinstance(raw, str | bytes) else raw


def _error(last_error: str) -> Any:
    """Django's TaskError from `last_error` ("Qual: message\\n<traceback>").

    The class's import path is read from the traceback's final line, which Python writes as
    `module.Class: message` (just `Class` for builtins).
    """
    qualname = last_error.split("\n", 1)[0].split(":", 1)[0].strip()
    start = last_error.find("Traceback (most recent call last):")
    body = last_error[start:] if start >= 0 else last_error  # the message itself may span lines
    # The final exception's line: `<module>.<qualname>: message`, or the qualname alone.
    final = re.compile(rf"^((?:[A-Za-z_][\w]*\.)*{re.escape(qualname)})(?::|$)")
    path = qualname
    for line in reversed(body.splitlines()):
        match = final.match(line)
        if match:
            path = match.group(1)
            break
    if "." not in path:
        path = f"builtins.{path}"
    return TaskError(exception_class_path=path, traceback=body)
