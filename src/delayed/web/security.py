"""Who may see the dashboard, and proof that an action POST came from its own pages.

- Authentication: HTTP Basic against `[web] username`/`password`, or an `auth(request)`
  callable (sync or async) for apps that bring their own login: a true value (or a user
  name) lets the request in, a false one answers 403, a Response is sent as is (a redirect
  to a login page, say). Without either, anyone who can reach the address may use it, which
  is why `delayed web` refuses a non-loopback address then.
- CSRF: a random cookie (HttpOnly, SameSite=Strict) and, in every form, an HMAC of it under
  the app's secret key. A POST whose token does not match its cookie is refused with 403:
  another site can make a browser send the cookie, but can neither read it nor compute the
  token. Basic auth alone does not stop CSRF, since browsers resend the credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import importlib
import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigError

CSRF_COOKIE = "delayed_csrf"
CSRF_FIELD = "csrf_token"

AuthCheck = Callable[[Request], Awaitable[Any]]


def basic_auth(username: str, password: str, realm: str = "delayed") -> AuthCheck:
    """A check accepting exactly these credentials (compared in constant time)."""
    want_user = username.encode()
    want_pass = password.encode()

    async def check(request: Request) -> Any:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic" and value:
            try:
                user, sep, given = base64.b64decode(value.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                user, sep, given = b"", b"", b""
            user_ok = hmac.compare_digest(user, want_user)
            pass_ok = hmac.compare_digest(given, want_pass)
            if sep and user_ok and pass_ok:
                return user.decode(errors="replace")
        return PlainTextResponse(
            "Authentication required.\n",
            status_code=401,
            headers={"WWW-Authenticate": f'Basic realm="{realm}", charset="UTF-8"'},
        )

    return check


def wrap_callable(auth: Callable[[Request], Any]) -> AuthCheck:
    """Accept a sync or async `auth(request)`; its result is interpreted by AuthGate.

    A plain function runs in the thread pool, so it may block (read a session from a
    database, call Django's ORM) without stalling the event loop.
    """
    method = type(auth).__call__ if not inspect.isfunction(auth) and not inspect.ismethod(auth) else None
    is_async = inspect.iscoroutinefunction(auth) or inspect.iscoroutinefunction(method)

    async def check(request: Request) -> Any:
        if is_async:
            return await auth(request)
        result = await run_in_threadpool(auth, request)
        if inspect.isawaitable(result):
            result = await result
        return result

    return check


def import_auth(path: str) -> Callable[[Request], Any]:
    """The callable named by `[web] auth = "module:function"`; ConfigError if it is not one."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"[web] auth: cannot import {module_name!r}: {exc}") from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise ConfigError(f"[web] auth: {module_name} has no callable named {attribute!r}")
    return found


class AuthGate:
    """ASGI middleware running the check before anything else (pages, actions, /metrics)."""

    def __init__(self, app: ASGIApp, check: AuthCheck | None) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.check is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        result = await self.check(request)
        if isinstance(result, Response):
            await result(scope, receive, send)
            return
        if not result:
            await PlainTextResponse("Forbidden.\n", status_code=403)(scope, receive, send)
            return
        scope.setdefault("state", {})["delayed_user"] = result if isinstance(result, str) else None
        await self.app(scope, receive, send)


class Csrf:
    """Issues and checks CSRF tokens bound to a per-browser cookie."""

    def __init__(self, secret_key: str | None) -> None:
        self.key = (secret_key or secrets.token_hex(32)).encode()

    def cookie_value(self, request: Request) -> str:
        """The browser's CSRF cookie, or a new one (the response must then set it)."""
        existing = request.cookies.get(CSRF_COOKIE)
        if existing and len(existing) == 64 and all(c in "0123456789abcdef" for c in existing):
            return existing
        fresh = getattr(request.state, "new_csrf_cookie", None)
        if fresh is None:
            fresh = secrets.token_hex(32)
            request.state.new_csrf_cookie = fresh
        return fresh

    def token(self, request: Request) -> str:
        return self._sign(self.cookie_value(request))

    def _sign(self, cookie: str) -> str:
        return hmac.new(self.key, cookie.encode(), hashlib.sha256).hexdigest()

    def valid(self, request: Request, token: str | None) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not token:
            return False
        return hmac.compare_digest(self._sign(cookie), token)

    def set_cookie(self, request: Request, response: Response) -> None:
        fresh = getattr(request.state, "new_csrf_cookie", None)
        if fresh is None:
            return
        path = request.scope.get("root_path") or "/"
        response.set_cookie(
            CSRF_COOKIE,
            fresh,
            path=path,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
