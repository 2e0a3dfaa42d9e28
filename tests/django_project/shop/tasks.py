"""The project's tasks; a worker finds them by importing every installed app's `tasks` module."""

from __future__ import annotations

import asyncio
import os
import time

from shop.models import Order, RunLog

try:
    from django.tasks import task
except ImportError:  # Django < 6: the backport
    from django_tasks import task


@task
def process_order(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)
    order.processed = True
    order.save(update_fields=["processed"])
    return order.number


@task(queue_name="mailers")
def note(label: str) -> None:
    RunLog.objects.create(label=label)


class PaymentError(Exception):
    pass


@task
def fail_when_released(path: str) -> None:
    """RUNNING until the file `path` exists (the test creates it), then fails."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    raise PaymentError(f"card declined after {path} appeared")


@task(takes_context=True)
def with_context(context, label: str) -> None:
    RunLog.objects.create(label=f"{label} id={context.task_result.id} attempt={context.attempt}")


@task
async def async_note(label: str) -> str:
    await asyncio.sleep(0.01)
    await RunLog.objects.acreate(label=label)
    return label


@task(backend="kept")
def add(a: int, b: int) -> dict[str, int]:
    """Its result is kept (the "kept" backend's KEEP_FINISHED): get_result says SUCCESSFUL."""
    return {"sum": a + b}
