"""The dashboard mounted in someone else's app: under a Starlette prefix (links, cookies,
redirects and actions stay under it), and the README's Django recipe (examples/django_asgi.py)
run for real with Django's sessions and users.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from delayed.web import create_app
from tests.helpers import ROOT
from tests.web_helpers import client, csrf_token, fail_jobs, flash, serve


def test_mounted_under_a_prefix(db) -> None:
    (job_id,) = fail_jobs("mail", 1)

    async def home(request):  # the host app's own page
        return PlainTextResponse("host app")

    host = Starlette(routes=[Route("/", home), Mount("/ops/jobs", app=create_app(auth=lambda r: "ops"))])
    with serve(host) as base, client(base) as http:
        assert http.get("/").text == "host app"
        overview = http.get("/ops/jobs/")
        assert overview.status_code == 200
        assert (
            'href="/ops/jobs/jobs"' in overview.text and 'href="/ops/jobs/static/style.css"' in overview.text
        )
        assert http.get("/ops/jobs/static/dashboard.js").status_code == 200
        page = http.get(f"/ops/jobs/jobs/{job_id}")
        assert f'action="/ops/jobs/jobs/{job_id}/retry"' in page.text
        cookie = next(c for c in http.cookies.jar if c.name == "delayed_csrf")
        assert cookie.path == "/ops/jobs"
        done = http.post(f"/ops/jobs/jobs/{job_id}/retry", data={"csrf_token": csrf_token(page.text)})
        assert done.status_code == 303 and done.headers["location"] == f"/ops/jobs/jobs/{job_id}"
        assert flash(http.get(done.headers["location"]).text) == f"Retried 1 job ({job_id})."
        assert db.row(job_id)["failed_at"] is None
        # A `next` outside the mount is not followed.
        token = csrf_token(http.get("/ops/jobs/jobs").text)
        away = http.post(f"/ops/jobs/jobs/{job_id}/unlock", data={"csrf_token": token, "next": "/elsewhere"})
        assert away.headers["location"] == f"/ops/jobs/jobs/{job_id}"


def test_the_starlette_recipe_imports_and_guards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import delayed

    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setenv("DELAYED_DATABASE_URL", f"sqlite:///{tmp_path / 'recipe.sqlite3'}")
    monkeypatch.setenv("OPS_TOKEN", "t0k3n")
    module = importlib.import_module("starlette_mount")
    try:
        delayed.migrate()
        with serve(module.app) as base, client(base) as http:
            assert http.get("/").text == "the rest of your app\n"
            assert http.get("/admin/jobs/").status_code == 403
            assert http.get("/admin/jobs/", headers={"x-ops-token": "t0k3n"}).status_code == 200
    finally:
        sys.modules.pop("starlette_mount", None)
