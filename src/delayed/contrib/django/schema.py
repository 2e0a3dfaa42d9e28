"""The jobs table in a Django project: Django's migration runs pydelayed's own `migrate`.

There is one source of truth for the schema, `delayed.schema`: the app's Django migrations
call `delayed.schema.migrate` on the database behind the Django connection being migrated,
never a copy of the DDL, so they apply the same versioned steps as `delayed migrate` and
record them in the same version table. A release that adds steps adds one Django migration
calling `migrate_jobs_table` again (0002 brought in versioning).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ...config import get_config
from ...db import create_engine, redact
from ...errors import ConfigError
from ...schema import get_table, migrate

log = logging.getLogger("delayed.django")

BACKEND_PATH = "delayed.contrib.django.DelayedBackend"


def jobs_database_aliases() -> set[str]:
    """The Django database aliases that hold a jobs table: OPTIONS["DATABASE"] of each DelayedBackend."""
    from django.conf import settings
    from django.db import DEFAULT_DB_ALIAS

    aliases = set()
    for params in (getattr(settings, "TASKS", None) or {}).values():
        backend = params.get("BACKEND", "")
        if backend == BACKEND_PATH or backend.endswith(".backend.DelayedBackend"):
            aliases.add((params.get("OPTIONS") or {}).get("DATABASE", DEFAULT_DB_ALIAS))
    return aliases or {DEFAULT_DB_ALIAS}


def database_url(alias: str = "default", settings_dict: dict[str, Any] | None = None) -> str:
    """The SQLAlchemy URL of a Django database, for pydelayed (`DELAYED_DATABASE_URL`, migrate).

    It carries the password: pass it to pydelayed, never log it (log `delayed.db.redact(url)`).
    """
    if settings_dict is None:
        from django.db import connections

        settings_dict = connections[alias].settings_dict
    engine = settings_dict.get("ENGINE", "")
    name = str(settings_dict.get("NAME") or "")
    vendor = engine.rsplit(".", 1)[-1]
    if vendor == "sqlite3":
        if not name or name == ":memory:" or name.startswith("file:"):
            raise ConfigError(
                f"Django database {alias!r} is an in-memory SQLite database ({name!r}); pydelayed's "
                "workers run in other processes and need a database file"
            )
        return sa.URL.create("sqlite", database=name).render_as_string(hide_password=False)
    if vendor in ("postgresql", "postgis"):
        driver = "postgresql+psycopg"
        query = {k: str(v) for k, v in (settings_dict.get("OPTIONS") or {}).items() if isinstance(v, str)}
    elif vendor == "mysql":
        driver = "mysql+pymysql"
        charset = (settings_dict.get("OPTIONS") or {}).get("charset")
        query = {"charset": charset} if charset else {}
    else:
        raise ConfigError(
            f"Django database {alias!r} uses {engine!r}; pydelayed supports PostgreSQL, MySQL/MariaDB "
            "and SQLite"
        )
    port = settings_dict.get("PORT")
    url = sa.URL.create(
        driver,
        username=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        host=settings_dict.get("HOST") or None,
        port=int(port) if port else None,
        database=name or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


def migrate_jobs_table(apps: Any, schema_editor: Any) -> None:
    """RunPython body of the app's migrations: `delayed.schema.migrate` (the pending steps) on this database.

    Only databases that hold jobs (see `jobs_database_aliases`) get the table; Django's
    database routers were consulted by RunPython before this runs.
    """

    connection = schema_editor.connection
    if connection.alias not in jobs_database_aliases():
        return
    url = database_url(connection.alias, connection.settings_dict)
    engine = create_engine(url)
    try:
        created = migrate(engine, get_table(get_config().table_name))
    finally:
        engine.dispose()
    log.info("pydelayed migrate on %s: %s", redact(url), ", ".join(created) or "up to date")
