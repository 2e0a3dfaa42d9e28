"""OpenTelemetry tracing: publish and process spans, the trace carried through the handler.

In-process tests use the SDK's InMemorySpanExporter behind a SimpleSpanProcessor, with the
provider passed to `instrument()` (the global provider can be set once per process); the
worker runs with `work_off()`. Subprocess tests run `delayed work` (and the supervisor) with a
provider set up in the child that writes JSON lines to a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from delayed import tracing
from tests.helpers import ROOT, TESTS, start_delayed, subprocess_env, wait_for
from tests.jobs import tracing_jobs
from tests.jobs.tracing_jobs import Traced


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


# ----------------------------------------------------------------------------- enqueue + process
# ----------------------------------------------------------------------------- propagation styles
# ----------------------------------------------------------------------------- inside perform
# ----------------------------------------------------------------------------- retries and errors
# ----------------------------------------------------------------------------- off by default
# ----------------------------------------------------------------------------- without the extra
def _blocked_otel(tmp_path: Path) -> Path:
    """A directory that, first on sys.path, makes `import opentelemetry` fail as if absent."""
    blocked = tmp_path / "no_otel" / "opentelemetry"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ImportError('No module named opentelemetry (test)')\n")
    return blocked.parent


def test_without_the_extra_instrument_says_what_to_install(tmp_path: Path) -> None:
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(_blocked_otel(tmp_path)), str(ROOT / "src")])
    code = (
        "import delayed.tracing as t\n"
        "try:\n    t.instrument()\nexcept t.TracingUnavailableError as e:\n    print(e)\n"
        "else:\n    raise SystemExit('instrument() worked without opentelemetry')\n"
        "try:\n    t.check_available()\nexcept ImportError as e:\n    print('check_available:', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install pydelayed[otel]" in result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[1].startswith("check_available: tracing needs the OpenTelemetry API")
    assert all("pip install pydelayed[otel]" in line for line in lines)


def test_delayed_work_with_tracing_enabled_but_no_extra_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "delayed.toml"
    config.write_text(
        f'[delayed]\ndatabase_url = "sqlite:///{tmp_path / "x.sqlite3"}"\n[tracing]\nenabled = true\n'
    )
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(_blocked_otel(tmp_path)), str(ROOT / "src")])
    result = subprocess.run(
        [sys.executable, "-m", "delayed.cli", "work", "-c", str(config), "--exit-on-complete"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install pydelayed[otel]" in result.stderr


# ----------------------------------------------------------------------------- real processes
def read_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def worker_config(tmp_path: Path, url: str, style: str, extra: str = "") -> Path:
    config = tmp_path / "delayed.toml"
    config.write_text(
        f'[delayed]\ndatabase_url = "{url}"\nrequire = ["tracing_jobs"]\nsleep_delay = 0.2\n'
        f'[tracing]\nenabled = true\npropagation_style = "{style}"\n{extra}'
    )
    return config


def assert_one_trace(caller: Any, publish: ReadableSpan, child_spans: list[dict[str, Any]]) -> None:
    """caller -> publish -> process (child) -> user.nested, the last two from the worker."""
    process = next(s for s in child_spans if s["name"] == "traced process")
    nested = next(s for s in child_spans if s["name"] == "user.nested")
    trace_id = f"{caller.get_span_context().trace_id:032x}"
    assert publish.parent is not None and publish.parent.span_id == caller.get_span_context().span_id
    assert process["kind"] == "CONSUMER"
    assert process["trace_id"] == trace_id
    assert process["parent_span_id"] == f"{publish.context.span_id:016x}"
    assert nested["trace_id"] == trace_id and nested["parent_span_id"] == process["span_id"]
    assert process["attributes"]["delayed.job.attempts"] == 1
    assert process["pid"] != os.getpid()


@pytest.mark.slow
def test_delayed_work_flushes_the_childs_spans_on_sigterm(pg, spans: Spans, tmp_path: Path) -> None:
    """`[tracing] enabled = true` instruments `delayed work`; its spans are flushed at exit."""
    span_file = tmp_path / "spans.jsonl"
    tracing.instrument(propagation_style="child", tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller") as caller:
        Traced.perform_later("through delayed work")
    env = subprocess_env(
        DELAYED_TEST_SPAN_FILE=str(span_file), DELAYED_TEST_SPAN_SETUP="import", PYTHONUNBUFFERED="1"
    )
    process = start_delayed(
        "work", "-c", str(worker_config(tmp_path, pg.url, "child")), env=env, log=tmp_path / "worker.log"
    )
    try:
        wait_for(lambda: pg.count() == 0, timeout=120)
        assert read_spans(span_file) == []  # batched for ten minutes: nothing written yet
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_one_trace(caller, spans.one("traced publish"), read_spans(span_file))
    print_trace(caller, spans.one("traced publish"), read_spans(span_file))


def supervisor_command() -> list[str]:
    """`python -m delayed.supervisor` with this interpreter (and the PYTHONPATH the test sets)."""
    return [sys.executable, "-m", "delayed.supervisor"]


@pytest.mark.slow
def test_a_supervisor_childs_spans_reach_the_exporter_after_sigterm(pg, spans: Spans, tmp_path: Path) -> None:
    span_file = tmp_path / "spans.jsonl"
    config = worker_config(
        tmp_path,
        pg.url,
        "child",
        '[supervisor]\nworkers = 2\non_worker_boot = "tracing_jobs:on_worker_boot"\n',
    )
    tracing.instrument(propagation_style="child", tracer_provider=spans.provider)
    with spans.tracer.start_as_current_span("caller") as caller:
        Traced.perform_later("through the supervisor")
    env = subprocess_env(DELAYED_TEST_SPAN_FILE=str(span_file), PYTHONUNBUFFERED="1")
    command = supervisor_command()
    assert command is not None
    log = open(tmp_path / "supervisor.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*command, "-c", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(TESTS)
    )
    try:
        wait_for(lambda: pg.count() == 0, timeout=120)
        assert read_spans(span_file) == []  # batched for ten minutes: nothing written yet
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, (tmp_path / "supervisor.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    child_spans = read_spans(span_file)
    assert_one_trace(caller, spans.one("traced publish"), child_spans)
    assert {s["pid"] for s in child_spans} != {process.pid}  # written by a forked child, not the master
    print_trace(caller, spans.one("traced publish"), child_spans)


def print_trace(caller: Any, publish: ReadableSpan, child_spans: list[dict[str, Any]]) -> None:
    """The trace as a tree, for the report (shown with `pytest -s`)."""
    print(f"\ntrace {caller.get_span_context().trace_id:032x}")
    print(f"  caller  span={caller.get_span_context().span_id:016x} pid={os.getpid()}")
    print(f"    {publish.name} [PRODUCER]  span={publish.context.span_id:016x} pid={os.getpid()}")
    depth = {"traced process": 6, "user.nested": 8}
    for span in sorted(child_spans, key=lambda s: depth.get(s["name"], 6)):
        pad = " " * depth.get(span["name"], 6)
        ids = f"span={span['span_id']} parent={span['parent_span_id']} pid={span['pid']}"
        print(f"{pad}{span['name']} [{span['kind']}]  {ids}  links={len(span['links'])}")
