"""The web dashboard: `delayed.web.create_app(...)` returns an ASGI app (Starlette).

    pip install 'pydelayed[web]'
    delayed web --bind 127.0.0.1:8080 -c delayed.toml

or mount it in your own ASGI app (see the README). Importing this package is cheap (it
declares `[web]` only); Starlette, Jinja2 and uvicorn are imported by `create_app`.
"""

from __future__ import annotations

from typing import Any

from . import settings as settings  # declares [web]

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """Build the dashboard's ASGI app; see `delayed.web.app.create_app` for the arguments."""
    try:
        from .app import create_app as build
    except ImportError as exc:  # starlette / jinja2 missing
        raise ImportError(f"the dashboard needs the web extra: pip install 'pydelayed[web]' ({exc})") from exc
    return build(*args, **kwargs)
