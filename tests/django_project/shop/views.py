"""View-like code: write a row and enqueue its task in one transaction."""

from __future__ import annotations

from django.db import transaction

from shop.models import Order
from shop.tasks import process_order


class PaymentDeclined(Exception):
    def __init__(self, message: str, result_id: str) -> None:
        super().__init__(message)
        self.result_id = result_id


def place_order(number: str, fail: bool = False, backend: str = "default") -> tuple[Order, object]:
    """Create an order and enqueue its processing; `fail` raises before the commit."""
    with transaction.atomic():
        order = Order.objects.create(number=number)
        result = process_order.using(backend=backend).enqueue(order.pk)
        if fail:
            raise PaymentDeclined(f"order {number}: payment declined", result.id)
    return order, result
