"""What the outside world hears about an order change, after commit only:

- the user's WebSockets get the architecture's `order_update` message (channel `orders`);
- a domain event (`order.filled` / `order.cancelled` / `order.rejected`) is written to the audit
  log in the same transaction as the change and sent as the `order_event` signal after commit,
  for the notifications app to pick up once it exists;
- an order that ended unfilled (cancelled, rejected) frees what it held for the risk engine's
  balance check (`risk.account_hold_release`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import django.dispatch
from django.db import transaction

from apps.trading import risk
from apps.trading.choices import OrderStatus
from apps.trading.models import Order
from k2.audit.services import record
from k2.observability.logging import get_logger

log = get_logger(__name__)

ORDERS_CHANNEL = "orders"
NOTIFIED_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})

# Sent after commit with `event` ("order.filled", ...), `order_id`, `user_id` and `payload`.
order_event = django.dispatch.Signal()


def _text(value: Any) -> str | None:
    return (
        None
        if value is None
        else format(value.normalize(), "f")
        if hasattr(value, "normalize")
        else str(value)
    )


def order_update_message(order: Order) -> dict[str, Any]:
    return {
        "type": "order_update",
        "order_id": str(order.pk),
        "client_order_id": order.client_order_id,
        "instrument": order.instrument,
        "exchange": order.exchange,
        "side": order.side,
        "outcome": order.outcome or None,
        "status": order.status,
        "quantity": _text(order.quantity),
        "filled_quantity": _text(order.filled_quantity),
        "avg_price": _text(order.avg_fill_price),
        "fees": _text(order.fees),
        "error_code": order.error_code or None,
        "updated_at": order.updated_at.isoformat() if order.updated_at else None,
    }


_batched: ContextVar[list[tuple[Any, dict[str, Any]]] | None] = ContextVar("k2_order_updates", default=None)


def _publish(user_id: Any, message: dict[str, Any]) -> None:
    batch = _batched.get()
    if batch is not None:
        batch.append((user_id, message))
    else:
        _publish_now([(user_id, message)])


def _publish_now(updates: list[tuple[Any, dict[str, Any]]]) -> None:
    try:
        from apps.marketdata.push import push_to_users

        push_to_users([(user_id, message, ORDERS_CHANNEL) for user_id, message in updates])
    except Exception as exc:  # best effort: clients re-read over REST; never fail the change
        order_ids = [message.get("order_id") for _, message in updates]
        log.warning("order_update_push_failed", error=repr(exc), order_ids=order_ids)


@contextmanager
def order_updates_batched() -> Iterator[Callable[[], None]]:
    """A block whose `order_update` pushes (announced changes, once committed) are held back and
    sent together, in one round trip, by the function it yields and at its end, whatever way it
    ends (what they announce is committed). Send before whatever lets another process announce
    the same orders (a venue call: the user stream), so that each socket gets them in order."""
    batch: list[tuple[Any, dict[str, Any]]] = []

    def send() -> None:
        if batch:
            updates = list(batch)
            batch.clear()
            _publish_now(updates)

    token = _batched.set(batch)
    try:
        yield send
    finally:
        _batched.reset(token)
        send()


DomainEvent = tuple[str, dict[str, Any]]


def order_domain_event(order: Order, *, status_changed_to: str | None) -> DomainEvent | None:
    """Record the change's domain event, if it has one (call where the change is written: in its
    transaction, or where its audit entries are held): (event, payload), or None."""
    if status_changed_to not in NOTIFIED_STATUSES:
        return None
    event = f"order.{status_changed_to}"
    message = order_update_message(order)
    names = ("client_order_id", "instrument", "side", "filled_quantity", "avg_price")
    payload = {name: message[name] for name in names}
    payload["error_code"] = order.error_code or None
    record(None, "trading.domain_event", order, {"event": event, "user_id": str(order.user_id), **payload})
    return event, payload


def order_announcement_of(order: Order, *, domain_event: DomainEvent | None) -> Callable[[], None]:
    """What announces the change (its `order_update` as the order is now, written: call after the
    write, which sets `updated_at`), to be called once it is committed."""
    message = order_update_message(order)
    if domain_event is None:
        return lambda: _publish(order.user_id, message)
    event, payload = domain_event

    def send() -> None:
        _publish(order.user_id, message)
        if event != f"order.{OrderStatus.FILLED}":
            risk.account_hold_release(order=order)
        order_event.send(sender=Order, event=event, order_id=order.pk, user_id=order.user_id, payload=payload)

    return send


def order_announcement(order: Order, *, status_changed_to: str | None) -> Callable[[], None]:
    """`order_domain_event` then `order_announcement_of`, for a change already written."""
    domain_event = order_domain_event(order, status_changed_to=status_changed_to)
    return order_announcement_of(order, domain_event=domain_event)


def order_announce(order: Order, *, status_changed_to: str | None) -> None:
    """Call inside the transaction that changed `order`: announced after it commits."""
    transaction.on_commit(order_announcement(order, status_changed_to=status_changed_to), robust=True)
