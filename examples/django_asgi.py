"""Recipe: the pydelayed dashboard inside a Django project, behind Django's own login.

In your project's asgi.py (copy this file next to it, or import it):

    import os
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django_asgi import build_application
    application = build_application("/jobs")     # the dashboard at /jobs/, Django elsewhere

and serve it with any ASGI server (`uvicorn mysite.asgi:application`). pydelayed reads its
own settings as usual: `delayed.configure(...)` in settings.py, DELAYED_DATABASE_URL, or a
delayed.toml given to `delayed.configure(path)`. Only active staff users get in; anyone
else is sent to the admin's login page. Tested by tests/integration/test_web_mounting.py.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount

from delayed.web import create_app


def staff_only(request: Request) -> Any:
    """Django's session cookie -> Django's user; a plain function, so it runs in a thread."""
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.db import close_old_connections
    from django.http import HttpRequest

    django_request = HttpRequest()
    engine = import_module(settings.SESSION_ENGINE)
    django_request.session = engine.SessionStore(request.cookies.get(settings.SESSION_COOKIE_NAME))
    try:
        user = get_user(django_request)  # also checks the session's password hash
        if not user.is_authenticated:
            return RedirectResponse(f"/admin/login/?next={request.url.path}", status_code=302)
        return user.get_username() if user.is_active and user.is_staff else False
    finally:
        close_old_connections()  # this thread is not a Django request: tidy its connection


def build_application(prefix: str = "/jobs", **dashboard: Any) -> Starlette:
    """Django's ASGI app with the dashboard mounted at `prefix` (Starlette routes the two)."""
    from django.core.asgi import get_asgi_application

    django_app = get_asgi_application()  # sets Django up before anything touches the ORM
    jobs_dashboard = create_app(auth=staff_only, **dashboard)
    return Starlette(routes=[Mount(prefix, app=jobs_dashboard), Mount("/", app=django_app)])
