"""The Django app: `INSTALLED_APPS += ["delayed.contrib.django"]` brings the jobs-table migration."""

from __future__ import annotations

from django.apps import AppConfig


class DelayedConfig(AppConfig):
    name = "delayed.contrib.django"
    label = "delayed"
    verbose_name = "pydelayed"
