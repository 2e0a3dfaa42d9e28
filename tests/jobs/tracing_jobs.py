"""Job classes and an `on_worker_boot` hook for the tracing tests.

In-process tests point `user_tracer_provider` at their SDK provider, so the spans a job
starts itself land in the same in-memory exporter (the global provider can be set only once
per process). Worker subprocesses use the global provider, which `on_worker_boot` installs:
it writes every finished span as one JSON line to the file named by DELAYED_TEST_SPAN_FILE.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace

import delayed

# Set by in-process tests; None means the global provider (worker subprocesses).
user_tracer_provider: trace.TracerProvider | None = None


def user_tracer() -> trace.Tracer:
    """The tracer a user's job code would use."""
    return trace.get_tracer("tests.tracing_jobs", tracer_provider=user_tracer_provider)


class Traced(delayed.Job, name="tracing.traced"):
    """Does its work inside a span of its own, as a user's job would."""

    queue = "traced"

    def perform(self, label: str) -> None:
        with user_tracer().start_as_current_span("user.nested") as span:
            span.set_attribute("label", label)


class EnqueuesChild(delayed.Job, name="tracing.enqueues_child"):
    """Enqueues a Traced job from inside perform: the trace must carry on."""

    queue = "outer"

    def perform(self) -> None:
        Traced.perform_later("from inside")


class FailsOnce(delayed.Job, name="tracing.fails_once"):
    """Fails its first attempt, succeeds on the second (retried at once)."""

    max_attempts = 3

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now - timedelta(seconds=1)

    def perform(self) -> None:
        assert self.record is not None
        if self.record.attempts == 0:
            raise RuntimeError("first attempt fails")


class AlwaysFailsTwice(delayed.Job, name="tracing.always_fails_twice"):
    """Raises every time; two attempts, retried at once: the second is the final failure."""

    max_attempts = 2

    def reschedule_at(self, now: datetime, attempts: int) -> datetime:
        return now - timedelta(seconds=1)

    def perform(self, message: str) -> None:
        raise ValueError(message)


# ----------------------------------------------------------------------------- subprocess side
def _span_record(span: Any) -> dict[str, Any]:
    """The parts of a finished span the tests read, with ids as 32/16 hex digits."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "parent_trace_id": f"{parent.trace_id:032x}" if parent is not None else None,
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "events": [event.name for event in span.events],
        "status": span.status.status_code.name,
        "pid": os.getpid(),
    }


class JsonLinesExporter:
    """A SpanExporter writing one JSON object per finished span, appended to a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(json.dumps(_span_record(span)) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def on_worker_boot(*_args: Any, **_kwargs: Any) -> None:
    """Install the global tracer provider in this (child) process.

    A BatchSpanProcessor that would wait ten minutes, and no flush at interpreter exit: spans
    reach the file only because the worker flushes the provider when it has drained.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    path = os.environ["DELAYED_TEST_SPAN_FILE"]
    resource = Resource.create({"service.name": "pydelayed-test-worker", "process.pid": os.getpid()})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(JsonLinesExporter(path), schedule_delay_millis=600_000, max_export_batch_size=512)
    )
    trace.set_tracer_provider(provider)


# `delayed work --require tracing_jobs` has no boot hook: set the provider up at import.
if os.environ.get("DELAYED_TEST_SPAN_SETUP") == "import":
    on_worker_boot()


class TracedAsync(delayed.Job, name="tracing.traced_async"):
    """An async job: its user span must nest under its process span across awaits."""

    queue = "traced_async"

    async def perform(self, label: str) -> None:
        await asyncio.sleep(0.01)
        with user_tracer().start_as_current_span("user.async_nested") as span:
            await asyncio.sleep(0.01)
            span.set_attribute("label", label)
