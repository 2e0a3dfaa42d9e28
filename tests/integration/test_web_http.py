"""The dashboard over real HTTP (uvicorn on 127.0.0.1): authentication, CSRF, read-only mode,
the refusal to serve an open address, escaping, the bulk-action confirmation, bad input.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from starlette.responses import RedirectResponse

import delayed
from delayed.config import build_config
from delayed.db import create_engine
from delayed.errors import ConfigError
from delayed.web import create_app
from tests.helpers import write_toml
from tests.web_helpers import Later, client, csrf_token, fail_jobs, flash, row_ids, serve

SECRET = "s3cr3t-Pw"


@pytest.fixture
def sqlite_config(tmp_path: Path):
    """A config of its own (not the process's): a migrated SQLite file, and a toml writer."""
    url = f"sqlite:///{tmp_path / 'web.sqlite3'}"
    engine = create_engine(url)
    delayed.schema.migrate(engine)
    engine.dispose()

    def make(**web: object) -> delayed.Config:
        sections: dict[str, object] = {"delayed": {"database_url": url}}
        if web:
            sections["web"] = web
        return build_config(write_toml(tmp_path / "delayed.toml", sections), environ={})

    return make


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# ----------------------------------------------------------------------------- authentication
def test_basic_auth_401_without_credentials(sqlite_config) -> None:
    app = create_app(sqlite_config(username="ops", password=SECRET))
    with serve(app) as base, client(base) as http:
        for path in ("/", "/jobs", "/jobs/1", "/metrics", "/static/style.css"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith('Basic realm="delayed"')
        assert http.get("/", headers=basic("ops", "wrong")).status_code == 401
        assert http.get("/", headers=basic("root", SECRET)).status_code == 401
        assert http.get("/", headers={"Authorization": "Basic !!!notbase64"}).status_code == 401
        assert http.post("/jobs/1/retry", data={}).status_code == 401
        page = http.get("/", headers=basic("ops", SECRET))
        assert page.status_code == 200 and "Overview" in page.text
        assert '<span class="user">ops</span>' in page.text
        assert SECRET not in page.text


def test_credentials_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.sqlite3'}"
    config = build_config(
        environ={"DELAYED_DATABASE_URL": url, "DELAYED_WEB_USERNAME": "env", "DELAYED_WEB_PASSWORD": SECRET}
    )
    delayed.schema.migrate(create_engine(url))
    with serve(create_app(config)) as base, client(base) as http:
        assert http.get("/").status_code == 401
        assert http.get("/", headers=basic("env", SECRET)).status_code == 200


def test_username_without_password_is_a_config_error(sqlite_config) -> None:
    with pytest.raises(ConfigError, match="username and password go together; password is not set"):
        create_app(sqlite_config(username="ops"))


def test_an_auth_callable_decides(sqlite_config) -> None:
    seen: list[str] = []

    def auth(request):
        seen.append(request.url.path)
        who = request.headers.get("x-user")
        if who == "guest":
            return RedirectResponse("/login", status_code=302)
        return who  # None (no header) answers 403; a name lets the request in

    async def async_auth(request):
        return request.headers.get("x-token") == "ok"

    with serve(create_app(sqlite_config(), auth=auth)) as base, client(base) as http:
        assert http.get("/").status_code == 403
        redirect = http.get("/", headers={"x-user": "guest"})
        assert redirect.status_code == 302 and redirect.headers["location"] == "/login"
        page = http.get("/jobs", headers={"x-user": "alice"})
        assert page.status_code == 200 and '<span class="user">alice</span>' in page.text
    assert "/jobs" in seen
    with serve(create_app(sqlite_config(), auth=async_auth)) as base, client(base) as http:
        assert http.get("/").status_code == 403
        assert http.get("/", headers={"x-token": "ok"}).status_code == 200


# ----------------------------------------------------------------------------- CSRF and actions
def test_post_without_a_valid_csrf_token_is_refused(db) -> None:
    (job_id,) = fail_jobs("mail", 1)
    with serve(create_app()) as base, client(base) as http:
        page = http.get(f"/jobs/{job_id}")
        token = csrf_token(page.text)
        assert "delayed_csrf" in http.cookies
        refused = [
            http.post(f"/jobs/{job_id}/retry", data={}),  # no token
            http.post(f"/jobs/{job_id}/retry", data={"csrf_token": "0" * 64}),  # a made-up one
        ]
        with client(base) as stranger:  # a token copied into another browser (other cookie)
            stranger.get("/jobs")
            refused.append(stranger.post(f"/jobs/{job_id}/retry", data={"csrf_token": token}))
        with client(base) as cookieless:
            refused.append(cookieless.post(f"/jobs/{job_id}/retry", data={"csrf_token": token}))
        for response in refused:
            assert response.status_code == 403
            assert "CSRF" in response.text
        assert db.row(job_id)["failed_at"] is not None  # nothing happened

        done = http.post(f"/jobs/{job_id}/retry", data={"csrf_token": token})
        assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
        assert db.row(job_id)["failed_at"] is None and db.row(job_id)["attempts"] == 0
        assert flash(http.get(done.headers["location"]).text) == f"Retried 1 job ({job_id})."


def test_read_only_hides_and_refuses_every_action(db) -> None:
    (job_id,) = fail_jobs("mail", 1)
    with serve(create_app(read_only=True)) as base, client(base) as http:
        for path in ("/", "/jobs?state=failed", f"/jobs/{job_id}"):
            text = http.get(path).text
            assert 'id="read-only"' in text
            assert "<button" not in text.replace('<button type="submit" id="apply">Filter</button>', "")
            assert 'method="post"' not in text and 'name="csrf_token"' not in text
        assert row_ids(http.get("/jobs?state=failed").text) == [job_id]
        # Even with a valid token from a writable dashboard on the same key, POSTs are refused.
        writable = create_app(secret_key="k" * 32)
        with serve(writable) as other, client(other) as http2:
            good = csrf_token(http2.get(f"/jobs/{job_id}").text)
            cookie = http2.cookies["delayed_csrf"]
        http.cookies.set("delayed_csrf", cookie)
        for path, data in (
            (f"/jobs/{job_id}/discard", {"csrf_token": good}),
            ("/actions/confirm", {"csrf_token": good, "action": "discard/selected", "ids": str(job_id)}),
            ("/actions/discard", {"csrf_token": good, "scope": "selected", "ids": str(job_id)}),
        ):
            response = http.post(path, data=data)
            assert response.status_code == 403 and "read-only" in response.text
        assert db.row(job_id) is not None


def test_bulk_actions_confirm_first_then_act(db) -> None:
    mail = fail_jobs("mail", 3)
    reports = fail_jobs("reports", 1)
    with serve(create_app()) as base, client(base) as http:
        listing = http.get("/jobs?state=failed&queue=mail")
        assert row_ids(listing.text) == sorted(mail, reverse=True)
        token = csrf_token(listing.text)
        form = {
            "csrf_token": token,
            "state": "failed",
            "queue": "mail",
            "next": "/jobs?state=failed&queue=mail",
        }
        # A selection: the confirmation page lists the ids and acts on nothing yet.
        confirm = http.post("/actions/confirm", data={**form, "action": "discard/selected", "ids": [mail[0]]})
        assert confirm.status_code == 200 and "Discard 1 job?" in confirm.text
        assert db.row(mail[0]) is not None
        done = http.post("/actions/discard", data={**form, "scope": "selected", "ids": [mail[0]]})
        assert done.status_code == 303 and done.headers["location"] == "/jobs?state=failed&queue=mail"
        assert db.row(mail[0]) is None
        # Every match: the page counts them and fixes the highest id it covers.
        confirm = http.post("/actions/confirm", data={**form, "action": "retry/matching"})
        assert "Retry 2 jobs?" in confirm.text
        up_to = int(re.search(r'name="up_to_id" value="(\d+)"', confirm.text).group(1))
        assert up_to >= max(mail + reports)
        late = fail_jobs("mail", 1)  # arrives after the confirmation: left alone
        done = http.post("/actions/retry", data={**form, "scope": "matching", "up_to_id": up_to})
        assert done.status_code == 303
        assert flash(http.get(done.headers["location"]).text) == f"Retried 2 jobs ({mail[1]}, {mail[2]})."
        assert [db.row(i)["failed_at"] for i in mail[1:]] == [None, None]
        assert db.row(late[0])["failed_at"] is not None and db.row(reports[0])["failed_at"] is not None
        # "every match" without a confirmed up_to_id is refused, not run unbounded.
        bad = http.post("/actions/discard", data={**form, "scope": "matching"})
        assert bad.status_code == 400 and "up_to_id" in bad.text
        assert db.row(late[0]) is not None
        # An empty selection goes back with a message.
        empty = http.post("/actions/confirm", data={**form, "action": "retry/selected"})
        assert empty.status_code == 303
        assert flash(http.get(empty.headers["location"]).text) == "Select at least one job first."


def test_next_never_leaves_the_dashboard(db) -> None:
    (job_id,) = fail_jobs("mail", 1)
    with serve(create_app()) as base, client(base) as http:
        token = csrf_token(http.get("/jobs").text)
        for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "jobs"):
            response = http.post(f"/jobs/{job_id}/unlock", data={"csrf_token": token, "next": evil})
            assert response.status_code == 303 and response.headers["location"] == f"/jobs/{job_id}"


def test_unlock_from_the_job_page(db) -> None:
    job_id = Later.set(queue="default").perform_later(1)
    db.update(job_id, locked_at=delayed.timeutil.utcnow(), locked_by="host:dead pid:9")
    with serve(create_app()) as base, client(base) as http:
        page = http.get(f"/jobs/{job_id}")
        assert 'id="state">running' in page.text and "host:dead pid:9" in page.text
        done = http.post(f"/jobs/{job_id}/unlock", data={"csrf_token": csrf_token(page.text)})
        assert flash(http.get(done.headers["location"]).text) == f"Unlocked 1 job ({job_id})."
        assert db.row(job_id)["locked_by"] is None


# ----------------------------------------------------------------------------- what pages show
def test_arguments_and_errors_are_escaped(db) -> None:
    job_id = Later.set(queue="<b>q</b>").perform_later({"html": "<script>alert(1)</script>", "amp": "a&b"})
    (failed,) = fail_jobs("mail", 1, note="<img src=x onerror=alert(2)>")
    with serve(create_app()) as base, client(base) as http:
        detail = http.get(f"/jobs/{job_id}").text
        assert "<script>alert(1)</script>" not in detail
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail and "a&amp;b" in detail
        assert "&lt;b&gt;q&lt;/b&gt;" in detail
        failed_page = http.get(f"/jobs/{failed}").text
        assert "<img src=x" not in failed_page and "&lt;img src=x onerror=alert(2)&gt;" in failed_page
        assert "SMTP refused user0@example.com &lt;script&gt;" in failed_page
        assert "Traceback (most recent call last)" in failed_page  # the whole last_error
        listing = http.get("/jobs?state=all").text
        assert "<script>alert" not in listing and "<b>q</b>" not in listing
        headers = http.get("/").headers
        assert "script-src 'self'" in headers["content-security-policy"]


def test_the_database_password_is_never_shown(pg) -> None:
    url = delayed.get_config().database_url.replace("postgres@", f"postgres:{SECRET}@")
    config = build_config(environ={}, overrides={"database_url": url})  # trust auth ignores it
    fail_jobs("mail", 1)
    with serve(create_app(config)) as base, client(base) as http:
        for path in ("/", "/jobs?state=failed", "/jobs/999999", "/metrics"):
            text = http.get(path).text
            assert SECRET not in text, path
        assert "postgres:***@" in http.get("/").text


def test_bad_input_gets_a_clear_answer(db) -> None:
    (job_id,) = fail_jobs("mail", 1)
    with serve(create_app()) as base, client(base) as http:
        bad_priority = http.get("/jobs?priority=urgent")
        assert (
            bad_priority.status_code == 400 and "unknown priority name &#39;urgent&#39;" in bad_priority.text
        )
        bad_state = http.get("/jobs?state=dead")
        assert bad_state.status_code == 400 and "unknown job state" in bad_state.text
        bad_cursor = http.get("/jobs?state=failed&after=garbage")
        assert bad_cursor.status_code == 400 and "not one this dashboard made" in bad_cursor.text
        missing = http.get("/jobs/999999")
        assert missing.status_code == 404 and "no job with id 999999" in missing.text
        token = csrf_token(http.get("/jobs").text)
        bad_ids = http.post(
            "/actions/confirm", data={"csrf_token": token, "action": "retry/selected", "ids": "x1"}
        )
        assert bad_ids.status_code == 400 and "a job id is a whole number" in bad_ids.text
        bad_action = http.post(f"/jobs/{job_id}/explode", data={"csrf_token": token})
        assert bad_action.status_code == 404
        assert db.row(job_id)["failed_at"] is not None


def test_web_settings_are_checked(sqlite_config) -> None:
    for key, value, message in (
        ("page_size", 0, "must be at least 1"),
        ("page_size", 501, "at most 500"),
        ("refresh", "0.5s", "0 (off) or at least 1 second"),
        ("bind", "8080", "expected 'host:port'"),
        ("bind", "::1:8080", "IPv6 address in brackets"),
        ("bind", "127.0.0.1:70000", "port must be 1-65535"),
        ("read_only", "maybe", "expected true or false"),
        ("auth", "not-a-path", "expected 'module:function'"),
        ("colour", "blue", "unknown key 'colour'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            sqlite_config(**{key: value})
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
        create_app(sqlite_config(auth="no_such_module_xyz:check"))
