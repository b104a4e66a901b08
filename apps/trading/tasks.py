"""Trading tasks: thin, idempotent (acks_late safe: each one re-reads the order and only moves it
forward), bounded in time."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True, time_limit=120, soft_time_limit=100)
def orders_reconcile_task() -> int:
    """Beat: fan out one reconciliation per order the venue may see differently."""
    from apps.trading.services import orders_reconcile_ids

    ids = orders_reconcile_ids()
    for order_id in ids:
        order_reconcile_task.delay(str(order_id))
    return len(ids)


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def order_reconcile_task(order_id: Any) -> str | None:
    from apps.trading.services import order_reconcile

    order = order_reconcile(order_id=order_id)
    return order.status if order is not None else None
