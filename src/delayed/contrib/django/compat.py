"""One import point for Django's Tasks API: `django.tasks` (Django 6+) or the backport.

Django 6.0 ships the framework as `django.tasks`; on Django 4.2-5.2 the `django-tasks`
package (import name `django_tasks`, 0.10 or later) provides the same API. The names differ
only in two exceptions (`InvalidTask` / `InvalidTaskError`) and where `normalize_json`
lives. When both are installed, `django.tasks` wins: the `TASKS` setting is then read by
Django's own handler, which is the one that builds this backend.
"""

from __future__ import annotations

try:  # Django 6+
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    SOURCE = "django.tasks"
except ImportError:  # Django < 6: the django-tasks backport
    try:
        from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as exc:
        raise ImportError(
            "delayed.contrib.django needs Django's Tasks framework: Django 6 or later, or on "
            "Django 4.2-5.2 the backport (pip install 'pydelayed[django]' or 'django-tasks>=0.10'); "
            f"neither could be imported ({exc})"
        ) from exc

    SOURCE = "django_tasks"

__all__ = [
    "SOURCE",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
