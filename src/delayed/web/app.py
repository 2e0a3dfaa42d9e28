"""The dashboard's ASGI app: pages, actions and /metrics on Starlette and Jinja2.

    app = delayed.web.create_app(config="delayed.toml")            # [web] settings
    app = delayed.web.create_app(auth=my_check, read_only=True)    # bring your own login

Pages (GET): overview, jobs (by state, filtered, keyset-paginated), one job. Actions
(POST, CSRF-checked, refused when read-only): retry / discard / unlock one job, a
selection, or every job matching a filter (bulk actions go through a confirmation page).

Adding a page (workers, cron) is a method on Dashboard, a template, and one `PageSpec` in
`Dashboard.pages()`; the navigation is built from that list.

Database access is synchronous SQLAlchemy, so the handlers are plain functions that
Starlette runs in its thread pool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlencode

import jinja2
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .. import prometheus
from ..config import Config, build_config, get_config
from ..db import describe_error, engine_for, redact
from ..errors import DelayedError, HandlerError
from ..job import JobRecord
from ..timeutil import utcnow
from . import formatting
from .ops import admin
from .security import CSRF_FIELD, AuthGate, Csrf, basic_auth, import_auth, wrap_callable
from .settings import WebSettings, web_settings
from .snapshot import Sampler, SnapshotSource

log = logging.getLogger("delayed.web")

HERE = os.path.dirname(os.path.abspath(__file__))
ACTIONS = ("retry", "discard", "unlock")
FLASH_COOKIE = "delayed_flash"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class PageSpec:
    """One page: its URL, route name, title in the navigation, and handler method."""

    path: str
    name: str
    title: str
    handler: str
    nav: bool = True


class ActionRefused(Exception):
    """An action POST that must not run: read-only mode (403) or a bad CSRF token (403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Dashboard:
    """Everything one dashboard app holds: settings, database, templates, counts, metrics."""

    def __init__(
        self,
        config: Config,
        settings: WebSettings,
        engine: sa.Engine | Callable[[], sa.Engine],
        read_only: bool,
    ) -> None:
        self.config = config
        self.settings = settings
        self._engine = engine
        self.read_only = read_only
        self.csrf = Csrf(settings.secret_key)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
            autoescape=True,  # every value is escaped unless a template says otherwise
            undefined=jinja2.StrictUndefined,
        )
        env.filters.update(
            duration=formatting.duration,
            relative=formatting.relative,
            timestamp=formatting.timestamp,
            first_line=formatting.first_line,
        )
        self.templates = Jinja2Templates(env=env)
        worker_totals = self._worker_totals_reader()
        if settings.sample_interval > 0:
            max_age = settings.sample_interval * 2
        else:
            max_age = float(config.section("prometheus").cache)
        self.source = SnapshotSource(
            config,
            engine,
            max_age=max_age,
            history_seconds=settings.history,
            sample_every=settings.sample_interval,
            worker_totals=worker_totals,
        )
        self.sampler = Sampler(self.source, settings.sample_interval)
        self.registry = self._metrics_registry() if settings.metrics else None

    # -- plumbing --------------------------------------------------------------------------
    @property
    def engine(self) -> sa.Engine:
        return self._engine if isinstance(self._engine, sa.Engine) else self._engine()

    def _worker_totals_reader(self) -> Callable[[], dict[str, float] | None] | None:
        directory = self.config.section("prometheus").multiproc_dir
        if not directory:
            return None
        try:
            prometheus._require_client()
        except ImportError:
            return None
        return lambda: prometheus.worker_totals(directory)

    def _metrics_registry(self) -> Any:
        try:
            return prometheus.build_registry(self.source, self.config)
        except ImportError as exc:
            log.warning("/metrics is off: %s", exc)
            return None

    def pages(self) -> list[PageSpec]:
        """The pages, in navigation order; add workers and cron here when their tables exist."""
        return [
            PageSpec("/", "overview", "Overview", "overview"),
            PageSpec("/jobs", "jobs", "Jobs", "jobs"),
            PageSpec("/jobs/{job_id:int}", "job", "Job", "job", nav=False),
        ]

    def routes(self) -> list[Any]:
        routes: list[Any] = [
            Route(page.path, getattr(self, page.handler), name=page.name, methods=["GET"])
            for page in self.pages()
        ]
        routes += [
            Route("/jobs/{job_id:int}/{action}", self.job_action, name="job_action", methods=["POST"]),
            Route("/actions/confirm", self.confirm, name="confirm", methods=["POST"]),
            Route("/actions/{action}", self.bulk_action, name="bulk_action", methods=["POST"]),
            Mount("/static", app=StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
        ]
        if self.registry is not None:
            routes.append(Route("/metrics", self.metrics, name="metrics", methods=["GET"]))
        return routes

    def path_for(self, request: Request, name: str, **params: Any) -> str:
        """A root-relative path (the app may be mounted under a prefix)."""
        root = request.scope.get("root_path", "").rstrip("/")
        return root + str(request.app.router.url_path_for(name, **params))

    def render(self, request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        flash = request.cookies.get(FLASH_COOKIE)
        base = {
            "nav": [(p.name, p.title) for p in self.pages() if p.nav],
            "path": lambda name, **params: self.path_for(request, name, **params),
            "read_only": self.read_only,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.csrf.token(request),
            "refresh": int(self.settings.refresh),
            "user": request.scope.get("state", {}).get("delayed_user"),
            "flash": unquote(flash) if flash else None,
            "database": redact(self.config.database_url),
            "table": self.config.table_name,
            "now": utcnow(),
            "current": request.url.path,
        }
        base.update(context)
        response = self.templates.TemplateResponse(request, template, base, status_code=status)
        self._finish(request, response)
        if flash:
            response.delete_cookie(FLASH_COOKIE, path=self._cookie_path(request))
        return response

    def _finish(self, request: Request, response: Response) -> None:
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        self.csrf.set_cookie(request, response)

    @staticmethod
    def _cookie_path(request: Request) -> str:
        return request.scope.get("root_path") or "/"

    def error_page(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.render(request, "error.html", {"title": title, "message": message}, status=status)

    def redirect(self, request: Request, target: str, flash: str | None = None) -> Response:
        response = RedirectResponse(target, status_code=303)
        if flash:
            response.set_cookie(
                FLASH_COOKIE,
                quote(flash[:500]),
                path=self._cookie_path(request),
                max_age=60,
                httponly=True,
                samesite="strict",
            )
        self._finish(request, response)
        return response

    def safe_next(self, request: Request, value: str | None, default: str) -> str:
        """Only a path inside this app; anything else (another site, //host) goes to default."""
        root = request.scope.get("root_path", "").rstrip("/")
        if (
            not value
            or not value.startswith((root + "/") if root else "/")
            or value.startswith("//")
            or "\\" in value
            or any(ord(c) < 32 for c in value)
        ):
            return default
        return value

    def _database_error(self, request: Request, exc: Exception) -> Response:
        message = f"the database ({redact(self.config.database_url)}) failed: {describe_error(exc)}"
        log.error("dashboard: %s", message)
        return self.error_page(request, 503, "Database unavailable", message)

    # -- pages -----------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        self.sampler.ensure_started()
        try:
            snapshot = self.source.get()
        except sa.exc.SQLAlchemyError as exc:
            return self._database_error(request, exc)
        history = list(self.source.history)
        charts = self._charts(history)
        return self.render(
            request,
            "overview.html",
            {
                "snapshot": snapshot,
                "totals": snapshot.totals(),
                "groups": snapshot.visible_groups(),
                "stale_error": self.source.last_error,
                "charts": charts,
                "sample_interval": self.settings.sample_interval,
                "history_seconds": (history[-1].at - history[0].at) if len(history) > 1 else 0,
                "worker_metrics": self.source.worker_totals is not None,
            },
        )

    def _charts(self, history: list[Any]) -> list[dict[str, Any]]:
        """Depth lines from the table samples; throughput from the workers' counters if any."""
        charts = []
        for state in ("ready", "scheduled", "running", "failed"):
            values = [float(sample.totals.get(state, 0)) for sample in history]
            charts.append(
                {
                    "title": f"{state} jobs",
                    "points": formatting.sparkline(values),
                    "last": int(values[-1]) if values else 0,
                    "peak": int(max(values)) if values else 0,
                    "unit": "",
                }
            )
        worker = [s for s in history if s.workers is not None]
        if len(worker) > 1:
            rates = []
            for before, after in itertools.pairwise(worker):
                elapsed = max(after.at - before.at, 1e-6)
                done = after.workers.get("performed", 0.0) - before.workers.get("performed", 0.0)
                rates.append(max(done, 0.0) / elapsed * 60.0)  # a counter reset is not negative work
            charts.append(
                {
                    "title": "jobs performed per minute",
                    "points": formatting.sparkline(rates),
                    "last": round(rates[-1], 1),
                    "peak": round(max(rates), 1),
                    "unit": "/min",
                }
            )
        return charts

    def _filter_from(self, params: Any) -> tuple[Any, dict[str, str]]:
        """A JobFilter from query or form fields, and the fields as given (for links)."""
        raw = {
            key: (params.get(key) or "").strip() for key in ("state", "queue", "name", "priority", "error")
        }
        raw["state"] = raw["state"] or "all"
        up_to = (params.get("up_to_id") or "").strip()
        flt = admin.JobFilter(
            state=raw["state"],
            queue=raw["queue"] or None,
            name=raw["name"] or None,
            priority=raw["priority"] or None,
            error=raw["error"] or None,
            up_to_id=int(up_to) if up_to.isdigit() else None,
        )
        if raw["priority"]:
            admin.priority_range(raw["priority"], self.config)  # an unknown name fails here
        return flt, raw

    def jobs(self, request: Request) -> Response:
        self.sampler.ensure_started()
        params = request.query_params
        snapshot = self.source.cached()
        context: dict[str, Any] = {
            "states": admin.STATES,
            "queues": [q for q in (snapshot.queues() if snapshot else []) if q is not None],
            "priority_names": list(self.config.priority_names),
            "totals": snapshot.totals() if snapshot else None,
            "page": None,
            "problem": None,
        }
        try:
            flt, raw = self._filter_from(params)
        except (ValueError, DelayedError) as exc:
            raw = {key: params.get(key, "") for key in ("state", "queue", "name", "priority", "error")}
            raw["state"] = raw["state"] if raw["state"] in admin.STATES else "all"
            context.update(filters=raw, problem=str(exc), query=urlencode(raw))
            return self.render(request, "jobs.html", context, status=400)
        context.update(filters=raw, query=urlencode({k: v for k, v in raw.items() if v}))
        try:
            page = admin.page_jobs(
                flt,
                params.get("after") or None,
                self.settings.page_size,
                bind=self.engine,
                config=self.config,
            )
        except admin.BadCursorError as exc:
            context["problem"] = str(exc)
            return self.render(request, "jobs.html", context, status=400)
        except sa.exc.SQLAlchemyError as exc:
            return self._database_error(request, exc)
        context.update(
            page=page,
            rows=[self._row(record) for record in page.jobs],
            first_page=not params.get("after"),
            next_query=urlencode({**{k: v for k, v in raw.items() if v}, "after": page.next_cursor})
            if page.next_cursor
            else None,
            actions=self._actions_for(raw["state"]),
        )
        return self.render(request, "jobs.html", context)

    @staticmethod
    def _actions_for(state: str) -> list[str]:
        """Actions that make sense for a state's rows (unlock only where locks can be)."""
        if state in ("failed", "scheduled"):
            return ["retry", "discard"]
        if state == "ready":
            return ["discard"]
        return list(ACTIONS)

    def state_of(self, record: JobRecord, now: datetime | None = None) -> str:
        """The row's state with the monitor's meanings (see delayed.admin.JobFilter)."""
        now = now or utcnow()
        if record.failed_at is not None:
            return "failed"
        if record.run_at > now:
            return "scheduled"
        stale = now - timedelta(seconds=self.config.lock_timeout)
        if record.locked_at is not None and record.locked_at >= stale:
            return "running"
        return "ready"

    def _row(self, record: JobRecord) -> dict[str, Any]:
        return {
            "record": record,
            "state": self.state_of(record),
            "priority": admin.priority_label(record.priority, self.config),
        }

    def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            record = admin.get(job_id, bind=self.engine, config=self.config)
        except admin.JobNotFoundError as exc:
            return self.error_page(request, 404, "No such job", str(exc))
        except sa.exc.SQLAlchemyError as exc:
            return self._database_error(request, exc)
        try:
            payload: dict[str, Any] | None = record.payload
            payload_error = None
        except HandlerError as exc:
            payload, payload_error = None, str(exc)
        state = self.state_of(record)
        return self.render(
            request,
            "job.html",
            {
                "record": record,
                "state": state,
                "priority": admin.priority_label(record.priority, self.config),
                "payload": payload,
                "payload_error": payload_error,
                "arguments": formatting.pretty_json(
                    {"args": payload.get("args", []), "kwargs": payload.get("kwargs", {})}
                )
                if payload is not None
                else None,
                "extra": formatting.pretty_json(
                    {k: v for k, v in payload.items() if k not in ("args", "kwargs")}
                )
                if payload is not None
                else None,
                "max_attempts": self.config.max_attempts,
                "lock_timeout": self.config.lock_timeout,
                "actions": self._actions_for(state) if state != "running" else ["unlock"],
            },
        )

    def metrics(self, request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.sampler.ensure_started()
        body = generate_latest(self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    # -- actions ---------------------------------------------------------------------------
    def _checked_form(self, request: Request, form: FormData) -> None:
        if self.read_only:
            raise ActionRefused(403, "This dashboard is read-only: actions are turned off ([web] read_only).")
        token = form.get(CSRF_FIELD)
        if not self.csrf.valid(request, token if isinstance(token, str) else None):
            raise ActionRefused(
                403,
                "The form's security token is missing or does not match (CSRF check). Reload the page "
                "and try again; if it keeps failing, allow cookies for this site.",
            )

    async def _form(self, request: Request) -> FormData:
        return await request.form(max_files=0, max_fields=5000)

    def _refused(self, request: Request, exc: ActionRefused) -> Response:
        log.warning("dashboard: refused %s %s: %s", request.method, request.url.path, exc.message)
        return self.error_page(request, exc.status, "Action refused", exc.message)

    async def job_action(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await self._form(request)
        try:
            self._checked_form(request, form)
        except ActionRefused as exc:
            return self._refused(request, exc)
        action = request.path_params["action"]
        job_id = request.path_params["job_id"]
        if action not in ACTIONS:
            return self.error_page(request, 404, "No such action", f"unknown action {action!r}")
        try:
            result = await run_in_threadpool(self._act_on_ids, action, [job_id])
        except sa.exc.SQLAlchemyError as exc:
            return self._database_error(request, exc)
        message = _describe(result)
        if action == "discard" and result.ids:
            target = self.path_for(request, "jobs")
        else:
            target = self.path_for(request, "job", job_id=job_id)
        return self.redirect(request, self.safe_next(request, _text(form.get("next")), target), message)

    def _act_on_ids(self, action: str, ids: list[int]) -> Any:
        function = {"retry": admin.retry, "discard": admin.discard, "unlock": admin.unlock}[action]
        try:
            return function(ids, bind=self.engine, config=self.config)
        finally:
            self.source.invalidate()  # the overview shows the result, not counts from before

    def _act_on_matching(self, action: str, flt: Any) -> Any:
        try:
            return admin.act_on_matching(action, flt, bind=self.engine, config=self.config)
        finally:
            self.source.invalidate()

    def _selection(self, form: FormData) -> list[int]:
        ids = []
        for value in form.getlist("ids"):
            text = _text(value).strip()
            if not text.isdigit():
                raise ValueError(f"a job id is a whole number, got {text[:40]!r}")
            ids.append(int(text))
        return ids

    async def confirm(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await self._form(request)
        try:
            self._checked_form(request, form)
        except ActionRefused as exc:
            return self._refused(request, exc)
        action, _, scope = _text(form.get("action")).partition("/")  # "retry/selected"
        scope = scope or "selected"
        back = self.safe_next(request, _text(form.get("next")), self.path_for(request, "jobs"))
        if action not in ACTIONS or scope not in ("selected", "matching"):
            return self.error_page(
                request, 400, "Bad request", f"unknown action {action!r} or scope {scope!r}"
            )
        try:
            ids = self._selection(form) if scope == "selected" else []
            flt, raw = self._filter_from(form)
        except (ValueError, DelayedError) as exc:
            return self.error_page(request, 400, "Bad request", str(exc))
        if scope == "selected" and not ids:
            return self.redirect(request, back, "Select at least one job first.")
        try:
            if scope == "matching":
                up_to = await run_in_threadpool(admin.max_id, bind=self.engine, config=self.config)
                flt = dataclasses.replace(flt, up_to_id=up_to)
                count = await run_in_threadpool(admin.count_jobs, flt, bind=self.engine, config=self.config)
            else:
                up_to, count = None, len(ids)
        except sa.exc.SQLAlchemyError as exc:
            return self._database_error(request, exc)
        return self.render(
            request,
            "confirm.html",
            {
                "action": action,
                "scope": scope,
                "ids": ids,
                "count": count,
                "filters": raw,
                "up_to_id": up_to,
                "back": back,
            },
        )

    async def bulk_action(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        form = await self._form(request)
        try:
            self._checked_form(request, form)
        except ActionRefused as exc:
            return self._refused(request, exc)
        action = request.path_params["action"]
        scope = _text(form.get("scope"))
        back = self.safe_next(request, _text(form.get("next")), self.path_for(request, "jobs"))
        if action not in ACTIONS or scope not in ("selected", "matching"):
            return self.error_page(
                request, 400, "Bad request", f"unknown action {action!r} or scope {scope!r}"
            )
        try:
            if scope == "selected":
                ids = self._selection(form)
                result = await run_in_threadpool(self._act_on_ids, action, ids)
            else:
                flt, _raw = self._filter_from(form)
                if flt.up_to_id is None:
                    raise ValueError("an action on every matching job needs the confirmation page's up_to_id")
                result = await run_in_threadpool(self._act_on_matching, action, flt)
        except (ValueError, DelayedError) as exc:
            return self.error_page(request, 400, "Bad request", str(exc))
        except sa.exc.SQLAlchemyError as exc:
            return self._database_error(request, exc)
        return self.redirect(request, back, _describe(result))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


_PAST = {"retry": "Retried", "discard": "Discarded", "unlock": "Unlocked"}


def _describe(result: Any) -> str:
    """'Retried 3 jobs (ids 1, 2, 3); skipped 1 a worker is running (4)'."""

    def ids(values: list[int]) -> str:
        shown = ", ".join(str(i) for i in values[:20])
        return shown + (f" and {len(values) - 20} more" if len(values) > 20 else "")

    count = len(result.ids)
    parts = [
        f"{_PAST[result.action]} {count} job{'s' if count != 1 else ''}"
        + (f" ({ids(result.ids)})" if count else "")
    ]
    if result.busy:
        parts.append(f"skipped {len(result.busy)} a worker is running ({ids(result.busy)})")
    if result.unknown:
        parts.append(f"{len(result.unknown)} no longer exist ({ids(result.unknown)})")
    not_locked = getattr(result, "not_locked", [])
    if not_locked:
        parts.append(f"{len(not_locked)} had no lock ({ids(not_locked)})")
    return "; ".join(parts) + "."


def _resolve_config(config: Config | str | os.PathLike[str] | None) -> Config:
    if config is None:
        return get_config()
    if isinstance(config, Config):
        return config
    return build_config(config)


def create_app(
    config: Config | str | os.PathLike[str] | None = None,
    *,
    auth: Callable[[Request], Any] | None = None,
    read_only: bool | None = None,
    engine: sa.Engine | None = None,
    **settings: Any,
) -> Starlette:
    """The dashboard as an ASGI app.

    config: a Config, a TOML path, or None for the process's configuration.
    auth: `auth(request)` (sync or async) deciding who gets in; see delayed.web.security.
      Without it, `[web] username`/`password` (or DELAYED_WEB_USERNAME/PASSWORD) turn on HTTP
      Basic, and `[web] auth = "module:function"` names a callable; with none of them the
      app has no authentication (fine on 127.0.0.1, or behind your own app's login).
    read_only: True hides every action and refuses action POSTs; None means `[web] read_only`.
    engine: a SQLAlchemy Engine to use; default: this process's engine for the config's
      database (delayed.db.engine_for, shared with the rest of the process).
    settings: other `[web]` keys to override (refresh=5, page_size=100, ...).
    """
    cfg = _resolve_config(config)
    web = web_settings(cfg, **settings)
    if engine is not None:
        chosen: sa.Engine | Callable[[], sa.Engine] = engine
    else:
        url = cfg.database_url
        chosen = lambda: engine_for(url)  # noqa: E731 - this process's engine for the URL, remade after a fork
    if auth is not None:
        check = wrap_callable(auth)
    elif web.auth:
        check = wrap_callable(import_auth(web.auth))
    elif web.basic_auth:
        check = basic_auth(web.username or "", web.password or "")
    else:
        check = None
    dashboard = Dashboard(cfg, web, chosen, web.read_only if read_only is None else bool(read_only))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        dashboard.sampler.ensure_started()
        yield
        dashboard.sampler.stop()

    app = Starlette(
        routes=dashboard.routes(),
        middleware=[Middleware(AuthGate, check=check)],
        lifespan=lifespan,
        exception_handlers={404: _not_found},
    )
    app.state.dashboard = dashboard
    app.state.authenticated = check is not None
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Not found.\n", status_code=404)
