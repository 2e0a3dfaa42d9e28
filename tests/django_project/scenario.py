"""One step of a test scenario, run as its own process: `python scenario.py STEP [ARGS]`.

Prints one JSON object. Each step is a fresh process with the project's settings, as a web
request or a management command would be; the test drives workers and steps and asserts.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djproject.settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop import tasks  # noqa: E402
from shop.models import Order, RunLog  # noqa: E402
from shop.views import PaymentDeclined, place_order  # noqa: E402

from delayed.contrib.django.compat import SOURCE, TaskResultDoesNotExist, task_backends  # noqa: E402


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def step_info() -> dict[str, Any]:
    return {"django": django.get_version(), "tasks_api": SOURCE, "vendor": connection.vendor}


def step_migrate() -> dict[str, Any]:
    call_command("migrate", verbosity=0)
    return {"tables": sorted(connection.introspection.table_names())}


def step_place(number: str, fail: str = "", backend: str = "default") -> dict[str, Any]:
    try:
        order, result = place_order(number, fail=bool(fail), backend=backend)
    except PaymentDeclined as exc:
        return {"rolled_back": True, "result_id": exc.result_id}
    return {"order_id": order.pk, "result_id": result.id, "status": str(result.status)}


def step_enqueue(
    name: str, args_json: str, priority: str = "", queue: str = "", delay: str = ""
) -> dict[str, Any]:
    task = getattr(tasks, name)
    changes: dict[str, Any] = {}
    if priority:
        changes["priority"] = int(priority)
    if queue:
        changes["queue_name"] = queue
    if delay:
        changes["run_after"] = timezone.now() + timedelta(seconds=float(delay))
    result = task.using(**changes).enqueue(*json.loads(args_json))
    return {"result_id": result.id, "status": str(result.status), "priority": result.task.priority}


def step_result(result_id: str, backend: str = "default") -> dict[str, Any]:
    try:
        result = task_backends[backend].get_result(result_id)
    except TaskResultDoesNotExist as exc:
        return {"does_not_exist": str(exc)}
    out = {
        "id": result.id,
        "status": str(result.status),
        "task": result.task.module_path,
        "priority": result.task.priority,
        "queue": result.task.queue_name,
        "run_after": _iso(result.task.run_after),
        "args": result.args,
        "kwargs": result.kwargs,
        "attempts": result.attempts,
        "worker_ids": result.worker_ids,
        "enqueued_at": _iso(result.enqueued_at),
        "started_at": _iso(result.started_at),
        "finished_at": _iso(result.finished_at),
        "last_attempted_at": _iso(result.last_attempted_at),
        "errors": [
            {
                "exception_class_path": e.exception_class_path,
                "exception_class": e.exception_class.__name__,
                "traceback": e.traceback,
            }
            for e in result.errors
        ],
    }
    if result.is_finished:
        try:
            out["return_value"] = result.return_value
        except ValueError as exc:
            out["return_value_error"] = str(exc)
    return out


def step_observed(number: str) -> dict[str, Any]:
    """place_order with pydelayed's enqueue event subscribed and, when the SDK is here, tracing on.

    Shows a Django enqueue takes pydelayed's own enqueue path: the `delayed.job.enqueue` event
    (StatsD counts from it), the PRODUCER span, and the trace context written into the handler.
    """
    from delayed import events

    seen: list[dict[str, Any]] = []
    events.subscribe("delayed.job.enqueue", lambda e: seen.append({"jobs": e.payload["jobs"], **e.payload}))
    spans: list[Any] = []
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        import delayed.tracing

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        delayed.tracing.instrument(tracer_provider=provider)
    except ImportError:
        exporter = None
    _order, result = place_order(number)
    if exporter is not None:
        spans = [{"name": s.name, "kind": s.kind.name} for s in exporter.get_finished_spans()]
    with connection.cursor() as cursor:
        cursor.execute("SELECT handler FROM delayed_jobs WHERE id = %s", [int(result.id)])
        handler = json.loads(cursor.fetchone()[0])
    return {
        "result_id": result.id,
        "events": [{"jobs": e["jobs"], "ids": [str(i) for i in e.get("ids", [])]} for e in seen],
        "spans": spans,
        "traced": exporter is not None,
        "handler_keys": sorted(handler),
    }


def step_orders() -> dict[str, Any]:
    return {"orders": {o.number: o.processed for o in Order.objects.order_by("pk")}}


def step_runlog() -> dict[str, Any]:
    return {"labels": list(RunLog.objects.order_by("pk").values_list("label", flat=True))}


if __name__ == "__main__":
    step, *arguments = sys.argv[1:]
    print(json.dumps(globals()[f"step_{step}"](*arguments)))
