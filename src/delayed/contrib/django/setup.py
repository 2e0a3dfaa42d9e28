"""Set Django up in a worker process: `delayed work` and each `delayed-supervisor` child.

Called before the worker imports `require` modules or runs a job, only when
DJANGO_SETTINGS_MODULE is set; otherwise it does nothing and Django is never imported.
"""

from __future__ import annotations

import logging
import os
import sys

from ...errors import ConfigError

log = logging.getLogger("delayed.django")


def setup_if_configured() -> bool:
    """`django.setup()` and import every installed app's `tasks` module; False without Django.

    WHY each step:
    - Tasks use the app's settings, models and connections, so the app registry must be ready
      before any task module is imported (an import of models before `django.setup()` fails).
    - A Django task becomes a runnable pydelayed job only when its module is imported (the
      backend registers it then); importing `<app>.tasks` of every installed app finds the
      tasks of a conventional project without listing them in `require`. Nothing named in
      the table is ever imported.
    - Connections a parent process opened must not be used here: after a fork they share
      the parent's sockets. Closing them would close the parent's session too, so they are
      forgotten instead; this process opens its own on first use (per thread, as Django does).
    """
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return False
    try:
        import django
        from django.utils.module_loading import autodiscover_modules
    except ImportError as exc:
        raise ConfigError(
            f"DJANGO_SETTINGS_MODULE is set ({os.environ['DJANGO_SETTINGS_MODULE']!r}) but Django "
            f"cannot be imported ({exc}); install Django or unset DJANGO_SETTINGS_MODULE"
        ) from None
    cwd = os.getcwd()  # the project directory is importable, as `require` modules are (loader.py)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    _forget_inherited_connections()
    try:
        django.setup()
    except Exception as exc:
        raise ConfigError(
            f"django.setup() failed for DJANGO_SETTINGS_MODULE={os.environ['DJANGO_SETTINGS_MODULE']!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    autodiscover_modules("tasks")
    from django.db import connections

    connections.close_all()  # ours (a tasks module that queried at import): job threads open their own
    log.info("Django set up from %s (%s)", os.environ["DJANGO_SETTINGS_MODULE"], django.get_version())
    return True


# Driver connections inherited through a fork, kept referenced for the life of the process:
# if they were garbage-collected, the driver would say goodbye to the server on the socket
# the parent still uses (libpq's PQfinish sends a Terminate), ending the parent's session.
_inherited: list[object] = []


def _forget_inherited_connections() -> None:
    """Detach Django connections made before this point (by a parent) without closing them."""
    if "django.db" not in sys.modules:
        return
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited.append(conn.connection)
            conn.connection = None  # not close(): the socket may be the parent's too
