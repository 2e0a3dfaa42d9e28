"""`delayed web`: serve the dashboard with uvicorn.

    delayed web --bind 127.0.0.1:8080 -c delayed.toml
    DELAYED_WEB_USERNAME=ops DELAYED_WEB_PASSWORD=... delayed web --bind 0.0.0.0:8080

A non-loopback address without authentication ([web] username/password or [web] auth) is
refused with exit status 2: the dashboard can discard jobs, so it is never open to a
network by accident. Behind your own login, mount `delayed.web.create_app(auth=...)`.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import click

from ..cli.options import config_options, fail, load_config
from ..db import redact
from ..errors import ConfigError
from . import create_app  # light: Starlette and Jinja2 are imported when it is called
from .settings import is_loopback, split_address, web_settings

log = logging.getLogger("delayed.web")


def check_bind(bind: str, authenticated: bool) -> tuple[str, int]:
    """(host, port) to listen on; ConfigError for a bad address or an open one without auth."""
    try:
        host, port = split_address(bind)
    except ValueError as exc:
        raise ConfigError(f"--bind / [web] bind: {exc}") from None
    if not authenticated and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the dashboard on {bind} without authentication: anyone who can "
            "reach it could retry and discard jobs. Set [web] username and password (or "
            "DELAYED_WEB_USERNAME / DELAYED_WEB_PASSWORD), or [web] auth, or bind to 127.0.0.1."
        )
    return host, port


def _after_shutdown(_signum: int, _frame: Any) -> None:
    """uvicorn has already shut down gracefully when it re-raises the signal."""


@click.command("web")
@config_options("web")
@click.option("--read-only", is_flag=True, default=False, help="Hide every action (also [web] read_only).")
def web(read_only: bool, **params: Any) -> None:
    """Serve the web dashboard (overview, jobs, actions, /metrics) until SIGTERM/SIGINT."""
    config = load_config("web", params)
    try:
        import uvicorn

        settings = web_settings(config)
        app = create_app(config, read_only=True if read_only else None)
        host, port = check_bind(settings.bind, app.state.authenticated)
    except ImportError as exc:
        fail(f"{exc}")
    except ConfigError as exc:
        fail(str(exc))
    log.info(
        "Dashboard for %s on http://%s/%s",
        redact(config.database_url),
        settings.bind,
        " (read-only)" if app.state.dashboard.read_only else "",
    )
    # uvicorn handles SIGTERM/SIGINT itself (a graceful shutdown), then raises the signal
    # again for the handler it replaced; a no-op handler lets the command end with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _after_shutdown)
    try:
        uvicorn.run(app, host=host, port=port, log_level=config.log_level.lower(), access_log=False)
    except OSError as exc:
        fail(f"cannot listen on {settings.bind}: {exc.strerror or exc}")
