"""The dashboard mounted in someone else's app: under a Starlette prefix (links, cookies,
redirects and actions stay under it), and the README's Django recipe (examples/django_asgi.py)
run for real with Django's sessions and users.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from delayed.web import create_app

from ..helpers import ROOT, subprocess_env
from ..web_helpers import client, csrf_token, fail_jobs, flash, serve


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


DJANGO_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])  # examples/
    workdir = sys.argv[2]

    import django
    from django.conf import settings
    from django.urls import path
    from django.contrib import admin

    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-key-" + "x" * 40,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[
            "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
            "django.contrib.sessions", "django.contrib.messages",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
            "OPTIONS": {"context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]},
        }],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": workdir + "/django.sqlite3"}},
        USE_TZ=True,
    )
    import delayed
    delayed.configure(database_url="sqlite:///" + workdir + "/jobs.sqlite3")
    delayed.migrate()

    from django_asgi import build_application
    application = build_application("/jobs", refresh=0)  # sets Django up
    urlpatterns = [path("admin/", admin.site.urls)]

    from django.core.management import call_command
    from django.contrib.auth.models import User
    from django.test import Client as DjangoClient

    call_command("migrate", verbosity=0)
    staff = User.objects.create_user("carol", password="pw-1", is_staff=True)
    plain = User.objects.create_user("dave", password="pw-2")

    def session_of(user):
        c = DjangoClient()
        c.force_login(user)
        return c.cookies[settings.SESSION_COOKIE_NAME].value

    from starlette.testclient import TestClient
    out = {}
    with TestClient(application, follow_redirects=False) as http:
        anonymous = http.get("/jobs/")
        out["anonymous"] = [anonymous.status_code, anonymous.headers.get("location")]
        http.cookies.set(settings.SESSION_COOKIE_NAME, session_of(plain))
        out["not_staff"] = http.get("/jobs/").status_code
        http.cookies.set(settings.SESSION_COOKIE_NAME, session_of(staff))
        page = http.get("/jobs/")
        out["staff"] = [page.status_code, '<span class="user">carol</span>' in page.text]
        out["links"] = 'href="/jobs/jobs"' in page.text
        http.cookies.clear()
        out["django_still_served"] = http.get("/admin/login/").status_code
    print("RESULT " + json.dumps(out))
    """
)


def test_the_django_recipe(tmp_path: Path) -> None:
    pytest.importorskip("django")
    script = tmp_path / "django_check.py"
    script.write_text(DJANGO_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(ROOT / "examples"), str(tmp_path)],
        env=subprocess_env(None),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(tmp_path),
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    out = json.loads(lines[0].removeprefix("RESULT "))
    assert out["anonymous"] == [302, "/admin/login/?next=/jobs/"]
    assert out["not_staff"] == 403
    assert out["staff"] == [200, True]
    assert out["links"] is True
    assert out["django_still_served"] == 200


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
