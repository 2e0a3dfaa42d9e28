"""Django integration: a Django Tasks backend, the jobs-table migration, worker setup.

    INSTALLED_APPS = [..., "delayed.contrib.django"]
    TASKS = {"default": {"BACKEND": "delayed.contrib.django.DelayedBackend",
                         "QUEUES": ["default", "mailers"], "OPTIONS": {"DATABASE": "default"}}}

Then `python manage.py migrate` creates the jobs table and `DJANGO_SETTINGS_MODULE=... delayed
work` (or `delayed-supervisor`) runs the tasks. Works with Django 6's `django.tasks` and with
the `django-tasks` backport on Django 4.2-5.2; see README "Django".

Importing this package does not import Django: `delayed work` imports `setup` from here in
every process, Django project or not. The backend and helpers load on first attribute use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DelayedBackend", "database_url", "setup_if_configured"]


def __getattr__(name: str) -> Any:
    if name == "DelayedBackend":
        from .backend import DelayedBackend

        return DelayedBackend
    if name == "database_url":
        from .schema import database_url

        return database_url
    if name == "setup_if_configured":
        from .setup import setup_if_configured

        return setup_if_configured
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
