"""Settings of the test project; the database comes from DJANGO_DATABASE_URL."""

from __future__ import annotations

import os

from sqlalchemy.engine import make_url

SECRET_KEY = "pydelayed-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _database(url_text: str) -> dict[str, object]:
    url = make_url(url_text)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": url.database}
    if backend == "postgresql":
        engine = "django.db.backends.postgresql"
    elif backend in ("mysql", "mariadb"):
        # Django's MySQL backend imports MySQLdb (mysqlclient, a C extension built against
        # libmariadb headers, with no Linux wheels). PyMySQL is pure Python, already a
        # dependency of pydelayed, and is what pydelayed's own worker uses: it stands in.
        import pymysql

        pymysql.install_as_MySQLdb()
        engine = "django.db.backends.mysql"
    else:
        raise ValueError(f"DJANGO_DATABASE_URL: unsupported database {backend!r}")
    return {
        "ENGINE": engine,
        "NAME": url.database,
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.host or "",
        "PORT": str(url.port or ""),
    }


DATABASES = {"default": _database(os.environ["DJANGO_DATABASE_URL"])}

INSTALLED_APPS = ["delayed.contrib.django", "shop"]
try:
    import django.tasks  # noqa: F401  (Django 6+)
except ImportError:
    INSTALLED_APPS.append("django_tasks")  # the backport on Django < 6

TASKS = {
    "default": {
        "BACKEND": "delayed.contrib.django.DelayedBackend",
        "QUEUES": ["default", "mailers"],
        "OPTIONS": {"MAX_ATTEMPTS": 1},
    },
    # The legacy ENQUEUE_ON_COMMIT = False: enqueue on a connection of its own, outside the caller's
    # transaction.
    "outside": {
        "BACKEND": "delayed.contrib.django.DelayedBackend",
        "ENQUEUE_ON_COMMIT": False,
        "OPTIONS": {"MAX_ATTEMPTS": 1},
    },
    # Kept results (issue 15 item 3): a successful task's row and return value stay a day.
    "kept": {
        "BACKEND": "delayed.contrib.django.DelayedBackend",
        "OPTIONS": {"MAX_ATTEMPTS": 1, "KEEP_FINISHED": "1d"},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.tasks": {"handlers": ["stderr"], "level": "INFO"}},
}
