"""OpenTelemetry spans for enqueue and execution, with the trace context carried in the handler.

What users of the Ruby `opentelemetry-instrumentation-active_job` gem expect, for pydelayed:

* Enqueue: a PRODUCER span `"<queue> publish"` (or `"<job name> publish"` with
  `span_naming="job_class"`) per job, covering the insert, with messaging attributes. Its W3C
  trace context (the global propagator's fields: `traceparent`, `tracestate`, `baggage`) is
  written into the job's handler under `"trace"`.
* Execution: a CONSUMER span `"<queue> process"` around `perform`, current while it runs (user
  spans nest under it; jobs enqueued inside carry the trace on). `propagation_style`:
  "link" (default: a new trace, linked to the publish span), "child" (the publish span is its
  parent, so one trace; a ParentBased sampler follows the caller's decision) or "none".
  Errors are recorded (exception event, status ERROR); the last attempt is marked with
  `delayed.job.final_failure = true` and a `delayed.job.final_failure` event.
* When the worker has drained and written its outcomes (`delayed.worker.exit`), the tracer
  provider is flushed so no span is lost on SIGTERM or in a supervisor child.

Only opentelemetry-api is used, and only once `instrument()` runs: without the `otel` extra
importing this module still works and `instrument()` says what to install. Not instrumented,
the enqueue and perform paths see empty hook lists and pay nothing more.

Span processors do not survive a fork: under the supervisor, set up the tracer provider in
the `on_worker_boot` hook (run in each child). With `tracer_provider=None` this module uses
the global provider through the API's proxy, so a provider installed later is picked up.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import enqueue, events, executor
from .config import Config, get_config
from .errors import ConfigError, DelayedError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .enqueue import EnqueueRequest
    from .job import Job
    from .record import JobRecord

log = logging.getLogger("delayed.tracing")

PROPAGATION_STYLES = ("link", "child", "none")
SPAN_NAMINGS = ("queue", "job_class")
INSTALL_HINT = "pip install pydelayed[otel]"
TRACE_KEY = "trace"  # the handler key holding the propagated context
MESSAGING_SYSTEM = "delayed"


class TracingUnavailableError(DelayedError, ImportError):
    """opentelemetry-api is not installed; the message says how to install it."""


@dataclass
class _Batch:
    """The publish spans of one `enqueue_many` call, in the batch's order."""

    spans: list[Span] = field(default_factory=list)
    by_job_id: dict[str, Span] = field(default_factory=dict)


# The batch being enqueued in this thread/task: the handler extension finds its span here.
_pending: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "delayed_tracing_batch", default=None
)
_active: _Instrumentation | None = None


# ----------------------------------------------------------------------------- public API
def instrument(
    propagation_style: str | None = None,
    span_naming: str | None = None,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Trace enqueue and execution. Options left at None come from `[tracing]` in the config.

    Calling it again replaces the previous instrumentation (options and provider).
    `tracer_provider=None` means the global provider (`opentelemetry.trace.set_tracer_provider`),
    looked up when spans start, so it may be installed after this call.
    """
    global _active
    _require_api()
    section = get_config().tracing
    style = _check("propagation_style", propagation_style or section.propagation_style, PROPAGATION_STYLES)
    naming = _check("span_naming", span_naming or section.span_naming, SPAN_NAMINGS)
    uninstrument()
    instrumentation = _Instrumentation(style, naming, tracer_provider)
    instrumentation.install()
    _active = instrumentation
    log.debug("tracing on: propagation_style=%s span_naming=%s", style, naming)


def uninstrument() -> None:
    """Stop tracing: remove every hook and subscription `instrument()` added."""
    global _active
    if _active is not None:
        _active.remove()
        _active = None


def is_instrumented() -> bool:
    return _active is not None


def instrument_from_config(config: Config | None = None) -> bool:
    """Instrument when `[tracing] enabled = true` (what `delayed work` and supervisor children do)."""
    section = (config or get_config()).tracing
    if not section.enabled:
        return False
    instrument(section.propagation_style, section.span_naming)
    return True


def check_available() -> None:
    """Raise TracingUnavailableError unless opentelemetry-api is importable.

    For a supervisor master with `[tracing] enabled = true`: check once before forking, so a
    missing extra is one clear error (exit 2) instead of children failing at boot.
    """
    _require_api()


def force_flush() -> bool | None:
    """Flush the tracer provider in use: True when done, False on timeout, None when it cannot."""
    return _active.flush() if _active is not None else None


# ----------------------------------------------------------------------------- helpers
def _require_api() -> None:
    try:
        import opentelemetry.propagate
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise TracingUnavailableError(
            f"tracing needs the OpenTelemetry API, which is not installed ({exc}); "
            f"run `{INSTALL_HINT}` (and install an SDK and exporter to see the spans), "
            "or set [tracing] enabled = false"
        ) from None


def _check(key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"tracing: {key} must be one of {choices}, got {value!r}")
    return value


def _iso(moment: datetime | None) -> str | None:
    """A naive-UTC column value as ISO 8601 with its offset."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _class_path(job_class: type[Any]) -> str:
    return f"{job_class.__module__}.{job_class.__qualname__}"


def _max_attempts(job: Job) -> int:
    return type(job).max_attempts or get_config().max_attempts


# ----------------------------------------------------------------------------- the hooks
class _Instrumentation:
    """The hooks of one `instrument()` call; `remove()` takes every one of them out again."""

    def __init__(self, propagation_style: str, span_naming: str, tracer_provider: TracerProvider | None):
        from opentelemetry import trace

        self.propagation_style = propagation_style
        self.span_naming = span_naming
        self.provider = tracer_provider
        self.tracer: Tracer = trace.get_tracer("delayed", _version(), tracer_provider=tracer_provider)
        self._unsubscribe: list[Any] = []

    # -- (un)installing ----------------------------------------------------------------------
    def install(self) -> None:
        enqueue.enqueue_wrappers.append(self.publish_spans)
        enqueue.enqueue_extensions.append(self.inject)
        executor.perform_wrappers.append(self.process_span)
        self._unsubscribe.append(events.subscribe("delayed.job.enqueue", self.on_enqueued))
        self._unsubscribe.append(events.subscribe("delayed.worker.exit", self.on_worker_exit))

    def remove(self) -> None:
        for hooks, hook in (
            (enqueue.enqueue_wrappers, self.publish_spans),
            (enqueue.enqueue_extensions, self.inject),
            (executor.perform_wrappers, self.process_span),
        ):
            while hook in hooks:
                hooks.remove(hook)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    # -- naming and attributes ---------------------------------------------------------------
    def span_name(self, queue: str | None, job_name: str, operation: str) -> str:
        prefix = job_name if self.span_naming == "job_class" or not queue else queue
        return f"{prefix} {operation}"

    @staticmethod
    def attributes(
        job_class: type[Job], queue: str | None, job_id: str | None, priority: int, run_at: datetime | None
    ) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.destination.name": queue,
            "messaging.message.id": job_id,
            "code.namespace": _class_path(job_class),
            "code.function": "perform",
            "delayed.job.name": job_class.job_name,
            "delayed.job.priority": priority,
            "delayed.job.run_at": _iso(run_at),
        }
        return {key: value for key, value in attributes.items() if value is not None}

    # -- enqueue -----------------------------------------------------------------------------
    @contextmanager
    def publish_spans(self, batch: list[EnqueueRequest]) -> Iterator[None]:
        """PRODUCER spans around building and inserting a batch; the only one current for one job."""
        from opentelemetry import context, trace

        try:
            spans = _Batch()
            for request in batch:
                span = self.start_publish_span(request, len(batch))
                spans.spans.append(span)
                spans.by_job_id[request.job_id] = span
            token = _pending.set(spans)
            attached = context.attach(trace.set_span_in_context(spans.spans[0])) if len(batch) == 1 else None
        except Exception:
            log.exception("tracing: could not start the publish spans; enqueueing without them")
            yield
            return
        try:
            yield
        except BaseException as exc:
            for span in spans.spans:
                _record_error(span, exc)
            raise
        finally:
            if attached is not None:
                context.detach(attached)
            _pending.reset(token)
            for span in spans.spans:
                span.end()

    def start_publish_span(self, request: EnqueueRequest, batch_size: int) -> Span:
        from opentelemetry.trace import SpanKind

        attributes = self.attributes(
            request.job_class, request.queue, request.job_id, request.priority, request.run_at
        )
        attributes["messaging.operation.type"] = "send"
        attributes["messaging.operation.name"] = "publish"
        if batch_size > 1:
            attributes["messaging.batch.message_count"] = batch_size
        name = self.span_name(request.queue, request.job_class.job_name, "publish")
        return self.tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attributes)

    def inject(self, handler: dict[str, Any], request: EnqueueRequest) -> None:
        """Write the publish span's context into the handler (enqueue_extensions hook)."""
        from opentelemetry import propagate, trace

        try:
            batch = _pending.get()
            span = batch.by_job_id.get(request.job_id) if batch is not None else None
            if span is None:  # a row built outside enqueue_many: a span for building it
                span = self.start_publish_span(request, 1)
                span.end()
            carrier: dict[str, str] = {}
            propagate.inject(carrier, context=trace.set_span_in_context(span))
            if carrier:
                handler[TRACE_KEY] = carrier
        except Exception:
            log.exception("tracing: could not write the trace context into job %s", request.job_id)

    def on_enqueued(self, event: events.Event) -> None:
        """Name each publish span's row once the insert returned the ids."""
        batch = _pending.get()
        ids = event.payload.get("ids")
        if batch is None or not ids or len(ids) != len(batch.spans):
            return
        for span, row_id in zip(batch.spans, ids, strict=True):
            span.set_attribute("delayed.job.id", row_id)

    # -- execution ---------------------------------------------------------------------------
    @contextmanager
    def process_span(self, record: JobRecord, job: Job) -> Iterator[Span | None]:
        """A CONSUMER span, current while `perform` runs (perform_wrappers hook)."""
        from opentelemetry import context

        try:
            span, parent = self.start_process_span(record, job)
            token = context.attach(_with_span(span, parent))
        except Exception:
            log.exception("tracing: could not start the span of job %s; running it without", record.id)
            yield None
            return
        try:
            yield span
        except BaseException as exc:
            _record_error(span, exc)
            self.mark_final_failure(span, record, job)
            raise
        finally:
            context.detach(token)
            span.end()

    def start_process_span(self, record: JobRecord, job: Job) -> tuple[Span, Any]:
        """The span and the context it starts in, per propagation_style."""
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Link, SpanKind

        payload = record.payload
        carrier = payload.get(TRACE_KEY)
        extracted = propagate.extract(carrier if isinstance(carrier, dict) else {})
        links = None
        if self.propagation_style == "child":
            parent = extracted
        else:  # a new trace; baggage still comes along, as in the Ruby gem
            producer = trace.get_current_span(extracted).get_span_context()
            parent = trace.set_span_in_context(trace.INVALID_SPAN, extracted)
            if self.propagation_style == "link" and producer.is_valid:
                links = [Link(producer)]
        attributes = self.attributes(type(job), record.queue, record.job_id, record.priority, record.run_at)
        attributes["messaging.operation.type"] = "process"
        attributes["messaging.operation.name"] = "process"
        attributes["messaging.operation"] = "process"  # the older name the Ruby gem sets
        attributes["delayed.job.id"] = record.id
        attributes["delayed.job.attempts"] = record.attempts + 1
        name = self.span_name(record.queue, type(job).job_name, "process")
        span = self.tracer.start_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        return span, parent

    @staticmethod
    def mark_final_failure(span: Span, record: JobRecord, job: Job) -> None:
        try:
            attempt, max_attempts = record.attempts + 1, _max_attempts(job)
            final = attempt >= max_attempts
            span.set_attribute("delayed.job.final_failure", final)
            if final:
                span.add_event(
                    "delayed.job.final_failure",
                    {"delayed.job.attempts": attempt, "delayed.job.max_attempts": max_attempts},
                )
        except Exception:
            log.exception("tracing: could not mark the failure of job %s", record.id)

    # -- flushing ----------------------------------------------------------------------------
    def flush(self) -> bool | None:
        """Flush the provider: True when done, False when it timed out, None when it cannot flush."""
        from opentelemetry import trace

        provider = self.provider if self.provider is not None else trace.get_tracer_provider()
        flush = getattr(provider, "force_flush", None)
        if flush is None:  # the API's no-op/proxy provider: no SDK installed, nothing to flush
            return None
        return bool(flush())

    def on_worker_exit(self, _event: events.Event) -> None:
        if self.flush() is False:
            log.warning("tracing: the tracer provider did not flush every span before exit")


def _with_span(span: Span, parent: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span, parent)


def _record_error(span: Span, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    try:
        span.record_exception(exc, escaped=True)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
    except Exception:
        log.exception("tracing: could not record an exception on a span")


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pydelayed")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return None
