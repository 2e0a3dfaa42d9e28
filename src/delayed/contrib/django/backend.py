"""`DelayedBackend`: Django's Tasks API on pydelayed's jobs table (PostgreSQL, MySQL/MariaDB, SQLite).

    TASKS = {"default": {"BACKEND": "delayed.contrib.django.DelayedBackend",
                         "QUEUES": ["default", "mailers"],
                         "OPTIONS": {"DATABASE": "default", "MAX_ATTEMPTS": 5, "KEEP_FINISHED": "7d"}}}

OPTIONS: DATABASE, the Django database alias holding the jobs table (default "default");
MAX_ATTEMPTS, attempts before a failing task is FAILED (default: pydelayed's max_attempts);
KEEP_FINISHED, how long a successful task's row and return value are kept, so `get_result`
answers SUCCESSFUL with `return_value` (a duration: "7d", seconds; default: pydelayed's
keep_finished, 0 = deleted at once, and get_result then raises TaskResultDoesNotExist).

Enqueue writes the row with Django's own connection for that database, through pydelayed's
enqueue path (`enqueue_many(using=connection)`: events, StatsD and tracing see it), so inside
`transaction.atomic()` the job commits or rolls back with the rest, and no worker sees it
before the commit. ENQUEUE_ON_COMMIT: see `_enqueue_on_commit`.

Priority: Django's is -100..100, higher first; pydelayed's is any integer, lower first. The
row gets the negated number: Django 100 -> -100 (before every default-named range), 0 -> 0
(`interactive`), -10 -> 10 (`user_visible`), -20 -> 20 (`eventual`), -30 -> 30 (`reporting`),
-100 -> 100. Workers' min_priority / max_priority filters use the row's (pydelayed) numbers.

The result id is the row's id (a string, as Django's ids are).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

from ...config import get_config
from ...db import create_engine
from ...enqueue import enqueue_many
from ...errors import ConfigError
from ...timeutil import to_naive_utc, to_seconds
from .compat import (
    BaseTaskBackend,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from .jobs import django_datetime, job_class_for
from .priorities import to_delayed_priority
from .results import row_to_result
from .schema import database_url

log = logging.getLogger("delayed.django")

_OPTIONS = ("DATABASE", "MAX_ATTEMPTS", "KEEP_FINISHED")


def _improperly_configured(message: str) -> Exception:
    from django.core.exceptions import ImproperlyConfigured

    return ImproperlyConfigured(message)


class DelayedBackend(BaseTaskBackend):
    """Stores tasks as pydelayed jobs; `delayed work` / `delayed-supervisor` run them."""

    supports_defer = True
    supports_async_task = True  # run through async_to_sync today (see jobs.py)
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        from django.conf import settings
        from django.db import DEFAULT_DB_ALIAS

        where = f"TASKS[{alias!r}]"
        options = dict(self.options or {})
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise _improperly_configured(
                f"{where}['OPTIONS'] has unknown key(s) {unknown}; DelayedBackend takes {list(_OPTIONS)}"
            )
        self.database: str = options.get("DATABASE", DEFAULT_DB_ALIAS)
        if self.database not in settings.DATABASES:
            raise _improperly_configured(
                f"{where}['OPTIONS']['DATABASE'] is {self.database!r}, which is not in DATABASES "
                f"({sorted(settings.DATABASES)})"
            )
        max_attempts = options.get("MAX_ATTEMPTS")
        if max_attempts is not None and (
            isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1
        ):
            raise _improperly_configured(
                f"{where}['OPTIONS']['MAX_ATTEMPTS'] must be an integer >= 1, got {max_attempts!r}"
            )
        self.max_attempts: int | None = max_attempts
        keep = options.get("KEEP_FINISHED")
        try:
            self.keep_finished: float | None = None if keep is None else to_seconds(keep)
        except ValueError as exc:
            raise _improperly_configured(f"{where}['OPTIONS']['KEEP_FINISHED']: {exc}") from None
        on_commit = params.get("ENQUEUE_ON_COMMIT")
        if on_commit is not None and not isinstance(on_commit, bool):
            raise _improperly_configured(
                f"{where}['ENQUEUE_ON_COMMIT'] must be True or False, got {on_commit!r}"
            )
        self.enqueue_on_commit: bool | None = on_commit

    # -- tasks ---------------------------------------------------------------------------
    def validate_task(self, task: Any) -> None:
        """Django's checks, then register the task as a pydelayed job class (see jobs.py)."""
        super().validate_task(task)
        job_class_for(task, self)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> TaskResult:
        """Insert the job on the jobs database's Django connection; READY result, id = row id."""
        from django.db import connections, transaction

        self.validate_task(task)
        job_class = job_class_for(task, self)
        request = job_class.set(
            priority=to_delayed_priority(task.priority),
            queue=task.queue_name,
            wait_until=self._run_at(task.run_after),
        ).build(*args, **kwargs)
        if self.enqueue_on_commit is False:
            ids = self._enqueue_outside_transaction(request)
        else:
            ids = enqueue_many([request], using=connections[self.database])
        result = TaskResult(
            task=task,
            id=str(ids[0]),
            status=TaskResultStatus.READY,
            enqueued_at=django_datetime(request.enqueued_at),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        announce = partial(task_enqueued.send, type(self), task_result=result)
        if self.enqueue_on_commit is False:
            announce()
        else:  # the task exists for workers at the commit; right away outside atomic()
            transaction.on_commit(announce, using=self.database)
        return result

    @staticmethod
    def _run_at(run_after: datetime | None) -> datetime | None:
        """run_after as naive UTC; a naive one (USE_TZ = False) is in Django's TIME_ZONE."""
        if run_after is None:
            return None
        if run_after.tzinfo is None:
            from django.utils import timezone

            run_after = timezone.make_aware(run_after, timezone.get_default_timezone())
        return to_naive_utc(run_after)

    def _enqueue_outside_transaction(self, request: Any) -> list[int]:
        """ENQUEUE_ON_COMMIT = False: commit the job at once on a connection of its own.

        It is then visible to workers immediately and survives a rollback of the caller's
        transaction. Refused on SQLite inside atomic(): the caller's connection may hold the
        database's only write lock, which the second connection would wait for.
        """
        from django.db import connections

        connection = connections[self.database]
        if connection.vendor == "sqlite" and connection.in_atomic_block:
            raise ConfigError(
                f"TASKS[{self.alias!r}] has ENQUEUE_ON_COMMIT = False, which writes the job on a second "
                "connection; on SQLite that would wait for the open transaction's write lock. "
                "Enqueue outside transaction.atomic(), or drop ENQUEUE_ON_COMMIT to enqueue in it."
            )
        engine = create_engine(database_url(self.database))
        try:
            with engine.begin() as conn:
                return enqueue_many([request], using=conn)
        finally:
            engine.dispose()

    # -- results -------------------------------------------------------------------------
    def get_result(self, result_id: str) -> TaskResult:
        """The task's state from its row; TaskResultDoesNotExist for an unknown id."""
        from django.db import connections

        try:
            row_id = int(str(result_id))
        except ValueError:
            raise TaskResultDoesNotExist(f"{result_id!r} is not a DelayedBackend result id") from None
        connection = connections[self.database]
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT * FROM {quote(get_config().table_name)} WHERE {quote('id')} = %s", [row_id]
            )
            found = cursor.fetchone()
            names = [column[0] for column in cursor.description]
        if found is None:
            raise TaskResultDoesNotExist(
                f"no job {result_id} (never enqueued, or finished successfully: pydelayed deletes "
                "a successful job's row)"
            )
        return row_to_result(dict(zip(names, found, strict=True)), self, str(row_id))

    def check(self, **kwargs: Any) -> list[Any]:
        """Warn when the jobs table's migration is not installed."""
        from django.conf import settings
        from django.core import checks

        if "delayed.contrib.django" in settings.INSTALLED_APPS:
            return []
        return [
            checks.Warning(
                "DelayedBackend is configured but 'delayed.contrib.django' is not in INSTALLED_APPS, "
                "so `manage.py migrate` does not create the jobs table",
                hint="Add 'delayed.contrib.django' to INSTALLED_APPS, or run `delayed migrate` yourself.",
                obj=f"TASKS[{self.alias!r}]",
                id="delayed.W001",
            )
        ]
