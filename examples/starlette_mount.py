"""Recipe: the dashboard inside your own Starlette or FastAPI app, behind your own check.

    uvicorn starlette_mount:app            # the dashboard at /admin/jobs/

With FastAPI it is the same call: `api.mount("/admin/jobs", create_app(auth=...))`.
Tested by tests/integration/test_web_mounting.py.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

import delayed
from delayed.web import create_app


def ops_only(request: Request) -> str | bool:
    """Your own rule: here, a shared token in a header set by the reverse proxy."""
    return "ops" if request.headers.get("x-ops-token") == os.environ.get("OPS_TOKEN", "change-me") else False


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the rest of your app\n")


delayed.configure(database_url=os.environ.get("DELAYED_DATABASE_URL", "sqlite:///delayed.sqlite3"))
app = Starlette(
    routes=[
        Route("/", home),
        Mount("/admin/jobs", app=create_app(auth=ops_only, read_only=False)),
    ]
)
