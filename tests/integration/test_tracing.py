"""OpenTelemetry tracing: publish and process spans, the trace carried through the handler.

In-process tests use the SDK's InMemorySpanExporter behind a SimpleSpanProcessor, with the
provider passed to `instrument()` (the global provider can be set once per process); the
worker runs with `work_off()`. Subprocess tests run `delayed work` (and the supervisor) with a
provider set up in the child that writes JSON lines to a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

import delayed
from delayed import enqueue, executor, tracing
from delayed.config import build_config, values_of
from delayed.errors import ConfigError
from tests.jobs import tracing_jobs
from tests.jobs.tracing_jobs import AlwaysFailsTwice, EnqueuesChild, FailsOnce, Traced, TracedAsync


class Spans:
    """The provider a test instruments with, and what its exporter received."""

    def __init__(self, provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
        self.provider = provider
        self.exporter = exporter

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("tests.caller")

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.all()]}"
        return found[0]


def make_spans(sampler: Any = None) -> Spans:
    provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Spans(provider, exporter)


@pytest.fixture
def spans() -> Iterator[Spans]:
    """An SDK provider for the test; instrumenting is up to the test (options vary)."""
    holder = make_spans()
    tracing_jobs.user_tracer_provider = holder.provider
    yield holder
    tracing.uninstrument()
    tracing_jobs.user_tracer_provider = None
    holder.provider.shutdown()


def work_all(rounds: int = 1) -> None:
    for _ in range(rounds):
        delayed.Worker(sleep_delay=0.1).work_off()


def handler_of(db: Any, row_id: int) -> dict[str, Any]:
    row = db.row(row_id)
    assert row is not None
    return json.loads(row["handler"])


def traceparent_of(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


# ----------------------------------------------------------------------------- enqueue + process
def test_publish_and_process_spans_with_their_attributes(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller") as caller:
        row_id = Traced.set(priority=5).perform_later("hello")
    handler = handler_of(db, row_id)
    publish = spans.one("traced publish")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == caller.get_span_context().span_id
    assert handler["trace"]["traceparent"] == traceparent_of(publish)
    attributes = dict(publish.attributes or {})
    assert attributes["messaging.system"] == "delayed"
    assert attributes["messaging.destination.name"] == "traced"
    assert attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.message.id"] == handler["job_id"]
    assert attributes["code.namespace"] == f"{Traced.__module__}.Traced"
    assert attributes["code.function"] == "perform"
    assert attributes["delayed.job.priority"] == 5
    assert attributes["delayed.job.id"] == row_id
    assert attributes["delayed.job.run_at"].startswith(db.row(row_id)["run_at"].isoformat()[:19])

    work_all()
    assert db.count() == 0
    process = spans.one("traced process")
    assert process.kind is SpanKind.CONSUMER
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "delayed"
    assert attributes["messaging.destination.name"] == "traced"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == handler["job_id"]
    assert attributes["code.namespace"] == f"{Traced.__module__}.Traced"
    assert attributes["code.function"] == "perform"
    assert attributes["delayed.job.id"] == row_id
    assert attributes["delayed.job.attempts"] == 1
    assert attributes["delayed.job.priority"] == 5
    assert process.status.status_code is StatusCode.UNSET


def test_span_naming_job_class(db, spans: Spans) -> None:
    tracing.instrument(span_naming="job_class", tracer_provider=spans.provider)
    Traced.perform_later("x")
    work_all()
    assert spans.one("tracing.traced publish").kind is SpanKind.PRODUCER
    assert spans.one("tracing.traced process").kind is SpanKind.CONSUMER


def test_a_batch_gets_one_publish_span_per_job(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    ids = delayed.enqueue_many([Traced.build("a"), Traced.build("b")])
    publishes = spans.named("traced publish")
    assert len(publishes) == 2
    by_row = {dict(s.attributes or {})["delayed.job.id"]: s for s in publishes}
    assert sorted(by_row) == sorted(ids)
    for row_id, span in by_row.items():
        assert handler_of(db, row_id)["trace"]["traceparent"] == traceparent_of(span)
        assert dict(span.attributes or {})["messaging.batch.message_count"] == 2


def test_a_failed_insert_marks_the_publish_span(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    with pytest.raises(TypeError):
        Traced.set(using=object()).perform_later("never stored")
    publish = spans.one("traced publish")
    assert publish.status.status_code is StatusCode.ERROR
    assert [e.name for e in publish.events] == ["exception"]
    assert db.count() == 0


# ----------------------------------------------------------------------------- propagation styles
def test_link_style_starts_a_new_trace_linked_to_the_publish_span(db, spans: Spans) -> None:
    tracing.instrument(propagation_style="link", tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller"):
        Traced.perform_later("linked")
    work_all()
    publish, process = spans.one("traced publish"), spans.one("traced process")
    assert process.parent is None
    assert process.context.trace_id != publish.context.trace_id
    assert [link.context.span_id for link in process.links] == [publish.context.span_id]
    assert process.links[0].context.trace_id == publish.context.trace_id


def test_child_style_continues_the_trace(db, spans: Spans) -> None:
    tracing.instrument(propagation_style="child", tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller"):
        Traced.perform_later("child")
    work_all()
    publish, process = spans.one("traced publish"), spans.one("traced process")
    assert process.context.trace_id == publish.context.trace_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.parent.is_remote
    assert list(process.links) == []


def test_a_job_enqueued_before_tracing_gets_a_root_span(db, spans: Spans) -> None:
    row_id = Traced.perform_later("older")
    assert "trace" not in handler_of(db, row_id)
    tracing.instrument(propagation_style="child", tracer_provider=spans.provider)
    work_all()
    process = spans.one("traced process")
    assert process.parent is None and list(process.links) == []
    assert dict(process.attributes or {})["delayed.job.id"] == row_id


def test_none_style_neither_links_nor_continues(db, spans: Spans) -> None:
    tracing.instrument(propagation_style="none", tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller"):
        Traced.perform_later("alone")
    work_all()
    publish, process = spans.one("traced publish"), spans.one("traced process")
    assert process.parent is None
    assert process.context.trace_id != publish.context.trace_id
    assert list(process.links) == []


def test_the_users_parent_based_sampler_decides_across_the_boundary(db) -> None:
    """A caller whose trace is sampled out: with "child" the job's span is dropped too."""
    holder = make_spans(sampler=ParentBased(ALWAYS_ON))
    unsampled = NonRecordingSpan(
        SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    )
    try:
        tracing.instrument(propagation_style="child", tracer_provider=holder.provider)
        with trace.use_span(unsampled):
            row_id = Traced.perform_later("sampled out")
        handler = handler_of(db, row_id)
        assert handler["trace"]["traceparent"].startswith(f"00-{0x1234:032x}-")
        assert handler["trace"]["traceparent"].endswith("-00")
        work_all()
        assert holder.all() == []  # neither publish nor process was recorded

        tracing.instrument(propagation_style="link", tracer_provider=holder.provider)
        with trace.use_span(unsampled):
            Traced.perform_later("sampled out, linked")
        work_all()
        process = holder.one("traced process")  # a new root: ParentBased's root sampler says yes
        assert process.parent is None and process.links[0].context.trace_id == 0x1234
    finally:
        tracing.uninstrument()
        holder.provider.shutdown()


# ----------------------------------------------------------------------------- inside perform
def test_a_users_span_nests_under_the_process_span(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    Traced.perform_later("nested")
    work_all()
    process, nested = spans.one("traced process"), spans.one("user.nested")
    assert nested.parent is not None and nested.parent.span_id == process.context.span_id
    assert nested.context.trace_id == process.context.trace_id
    assert dict(nested.attributes or {})["label"] == "nested"


def test_an_async_jobs_spans_are_those_of_a_sync_job(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller"):
        TracedAsync.perform_later("on the loop")
    TracedAsync.perform_later("second")
    assert delayed.Worker(sleep_delay=0.1, max_async_claims=5).work_off(2) == (2, 0)
    processes = spans.named("traced_async process")
    nested = spans.named("user.async_nested")
    assert len(processes) == 2 and len(nested) == 2
    for span in processes:
        assert span.kind is SpanKind.CONSUMER and span.status.status_code is StatusCode.UNSET
    parents = {span.parent.span_id for span in nested if span.parent is not None}
    assert parents == {span.context.span_id for span in processes}, "each nests under its own job's span"


def test_a_job_enqueued_inside_a_job_carries_the_trace_on(db, spans: Spans) -> None:
    tracing.instrument(propagation_style="child", tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller") as caller:
        EnqueuesChild.perform_later()
    work_all(rounds=2)  # the inner job may or may not be claimed by the first round
    assert db.count() == 0
    outer_process = spans.one("outer process")
    inner_publish = spans.one("traced publish")
    inner_process = spans.one("traced process")
    assert inner_publish.parent is not None
    assert inner_publish.parent.span_id == outer_process.context.span_id
    trace_id = caller.get_span_context().trace_id
    assert {outer_process.context.trace_id, inner_publish.context.trace_id} == {trace_id}
    assert inner_process.context.trace_id == trace_id
    assert inner_process.parent is not None and inner_process.parent.span_id == inner_publish.context.span_id


# ----------------------------------------------------------------------------- retries and errors
def test_a_retried_job_shows_its_attempts(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    FailsOnce.perform_later()
    work_all(rounds=2)
    assert db.count() == 0
    processes = sorted(spans.named("default process"), key=lambda s: s.start_time or 0)
    assert [dict(s.attributes or {})["delayed.job.attempts"] for s in processes] == [1, 2]
    first, second = processes
    assert first.status.status_code is StatusCode.ERROR
    assert dict(first.attributes or {})["delayed.job.final_failure"] is False
    assert second.status.status_code is StatusCode.UNSET
    assert (
        dict(first.attributes or {})["messaging.message.id"]
        == dict(second.attributes or {})["messaging.message.id"]
    )


def test_exceptions_are_recorded_and_the_final_failure_marked(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    row_id = AlwaysFailsTwice.perform_later("it broke")
    work_all(rounds=2)
    assert db.row(row_id)["failed_at"] is not None
    processes = sorted(spans.named("default process"), key=lambda s: s.start_time or 0)
    assert len(processes) == 2
    for span in processes:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "ValueError: it broke"
        exception = next(e for e in span.events if e.name == "exception")
        assert exception.attributes["exception.type"] == "ValueError"
        assert exception.attributes["exception.message"] == "it broke"
    first, last = processes
    assert dict(first.attributes or {})["delayed.job.final_failure"] is False
    assert "delayed.job.final_failure" not in [e.name for e in first.events]
    assert dict(last.attributes or {})["delayed.job.final_failure"] is True
    final = next(e for e in last.events if e.name == "delayed.job.final_failure")
    assert final.attributes["delayed.job.attempts"] == 2


# ----------------------------------------------------------------------------- off by default
def tracing_hooks() -> list[object]:
    """The hooks in enqueue.py's and executor.py's lists that belong to the tracing instrumentation."""
    hooks = [*enqueue.enqueue_wrappers, *enqueue.enqueue_extensions, *executor.perform_wrappers]
    return [h for h in hooks if isinstance(getattr(h, "__self__", None), tracing._Instrumentation)]


def test_not_instrumented_means_no_spans_and_no_hooks(db, spans: Spans) -> None:
    assert not tracing.is_instrumented()
    assert tracing_hooks() == []
    with spans.tracer.start_as_current_span("caller"):
        row_id = Traced.perform_later("untraced")
    assert "trace" not in handler_of(db, row_id)
    work_all()
    assert db.count() == 0
    names = sorted(s.name for s in spans.all())
    assert names == ["caller", "user.nested"]  # only the test's own and the job's own spans


def test_uninstrument_removes_every_hook(db, spans: Spans) -> None:
    tracing.instrument(tracer_provider=spans.provider)
    tracing.instrument(tracer_provider=spans.provider)  # again: replaces, never doubles
    assert len(tracing_hooks()) == 3  # one publish wrapper, one handler extension, one perform wrapper
    tracing.uninstrument()
    assert tracing_hooks() == []
    Traced.perform_later("after")
    work_all()
    assert [s.name for s in spans.all()] == ["user.nested"]


def test_disabled_in_config_instruments_nothing(db, spans: Spans) -> None:
    assert tracing.instrument_from_config(build_config(environ={})) is False
    assert not tracing.is_instrumented()


def test_config_checks_the_tracing_keys(tmp_path: Path) -> None:
    path = tmp_path / "delayed.toml"
    path.write_text('[tracing]\nenabled = true\npropagation_style = "sibling"\n')
    with pytest.raises(ConfigError, match=r"\[tracing\] propagation_style: expected one of 'link'"):
        build_config(path, environ={})
    path.write_text('[tracing]\nspan_naming = "class"\n')
    with pytest.raises(ConfigError, match=r"\[tracing\] span_naming: expected one of 'queue', 'job_class'"):
        build_config(path, environ={})
    path.write_text('[tracing]\nenabled = true\npropagation_style = "child"\nspan_naming = "job_class"\n')
    assert values_of(build_config(path, environ={}).tracing) == {
        "enabled": True,
        "propagation_style": "child",
        "span_naming": "job_class",
    }
    with pytest.raises(ConfigError, match="propagation_style"):
        tracing.instrument(propagation_style="sibling")


# ----------------------------------------------------------------------------- without the extra
# ----------------------------------------------------------------------------- real processes
