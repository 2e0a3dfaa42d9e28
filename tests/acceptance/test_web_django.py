"""The README's Django recipe (examples/django_asgi.py) run for real in its own process:
Django's sessions and users decide who gets into the dashboard mounted at /jobs/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import ROOT, subprocess_env

pytestmark = pytest.mark.slow


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
