"""The order path's combined reads return exactly what their separate ORM queries would."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.exchanges.models import ExchangeLink
from apps.marketdata.models import Instrument
from apps.trading.models import Order
from apps.trading.selectors import _RECENT_ACTIVITY_SQL, ActivityScope, instrument_with_link, recent_activity

pytestmark = pytest.mark.django_db


def test_instrument_with_the_users_active_link_to_its_venue(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("links@example.com", "x" * 16)
    other = django_user_model.objects.create_user("other@example.com", "x" * 16)
    Instrument.objects.create(
        symbol="BTC-USD", venue="cryptocom", venue_symbol="BTC_USD", instrument_type="crypto",
        base="BTC", quote="USD", tick_size=Decimal("0.01"), quantity_step=Decimal("0.0001"),
        min_quantity=Decimal("0.0001"),
    )  # fmt: skip

    def link(owner: Any, venue: str, status: str) -> ExchangeLink:
        return ExchangeLink.objects.create(
            user=owner, exchange=venue, status=status, access_token="key", access_secret="secret",
            linked_at=timezone.now(),
        )  # fmt: skip

    assert instrument_with_link(symbol="NOPE-USD", user_id=user.pk) == (None, None)
    link(user, "kalshi", "active")
    link(other, "cryptocom", "active")
    revoked = link(user, "cryptocom", "revoked")
    instrument, found = instrument_with_link(symbol="BTC-USD", user_id=user.pk)
    assert instrument == Instrument.objects.get(symbol="BTC-USD")
    assert found is None  # another venue's link, another user's, a revoked one: not linked

    ExchangeLink.objects.filter(pk=revoked.pk).update(status="active")
    active = ExchangeLink.objects.get(pk=revoked.pk)
    instrument, found = instrument_with_link(symbol="BTC-USD", user_id=user.pk)
    assert instrument is not None
    assert instrument.tick_size == Decimal("0.01")
    assert found == active
    assert found is not None
    assert (found.access_token.reveal(), found.access_secret.reveal()) == ("key", "secret")


def _scope_of(order: Order, *, history: int) -> ActivityScope:
    """What the risk check reads for `order`, as of now."""
    return ActivityScope(
        user_id=order.user_id, order_id=order.pk, instrument=order.instrument,
        instrument_type=order.instrument_type, venue=order.exchange, side=order.side,
        outcome=order.outcome, now=timezone.now(), risk_codes=frozenset(), history=history,
        holds_since=timezone.now(),
    )  # fmt: skip


def _plan_of(scope: ActivityScope) -> str:
    """The activity statement's plan, on fresh statistics, sequential scans ruled out (the test's
    table is small enough for one to win over any index)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ANALYZE orders")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + _RECENT_ACTIVITY_SQL, scope.params())
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_daily_notional_counts_what_the_user_committed_today_read_on_its_partial_index(
    django_user_model: Any,
) -> None:
    """Today's orders of the type that passed their checks count: in full while live or filled, a
    cancelled one for what filled; refused, pending, cancelled unfilled, yesterday's, another
    type's and another user's do not. The sum is read on `orders_user_daily_notional`, so the
    orders that cannot count (most of an active trader's) are not read at all."""
    user = django_user_model.objects.create_user("daily@example.com", "x" * 16)
    other = django_user_model.objects.create_user("daily-other@example.com", "x" * 16)
    now = timezone.now()
    made = iter(range(1_000))

    def order(
        status: str, notional: str, *, filled: str = "0", submitted: bool = True, **extra: Any
    ) -> Order:
        fields: dict[str, Any] = {
            "user": user, "client_order_id": f"daily-{next(made)}", "exchange": "cryptocom",
            "instrument": "BTC-USD", "instrument_type": "crypto", "side": "buy", "order_type": "limit",
            "quantity": Decimal("2"), "price": Decimal("1"), "notional": Decimal(notional),
            "status": status, "filled_quantity": Decimal(filled),
            "submitted_at": now if submitted else None,
        } | extra  # fmt: skip
        return Order.objects.create(**fields)

    order("open", "100")
    order("filled", "200", filled="2")
    order("partial", "40", filled="1")
    order("cancelled", "80", filled="1")  # half filled: 40
    order("submitted", "10")
    order("unknown", "5")
    order("cancelled", "1000")  # unfilled
    order("rejected", "1000", error_code="EXCHANGE_REJECTED")
    order("pending", "1000", submitted=False)
    order("filled", "1000", filled="2", instrument="FED-26DEC-T3.75", instrument_type="event", outcome="yes")
    order("filled", "1000", filled="2", user=other)
    yesterday = order("filled", "1000", filled="2")
    Order.objects.filter(pk=yesterday.pk).update(
        created_at=now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(seconds=1)
    )
    for _ in range(50):
        order("cancelled", "1000")
    this = order("pending", "1000", submitted=False)
    scope = _scope_of(this, history=20)

    assert recent_activity(scope).daily_notional == Decimal("395")

    plan = _plan_of(scope)
    assert "orders_user_daily_notional" in plan, plan


def test_the_usual_sizes_are_the_users_latest_submitted_orders_on_the_instrument_read_on_its_index(
    django_user_model: Any,
) -> None:
    """The fat-finger size check compares an order with the user's latest `history` orders on the
    instrument that passed their checks (refused and never submitted ones aside), newest first.
    They are read on `orders_user_instrument_sizes`: a user's many orders on other instruments
    (a first order on a new instrument, after a month of trading another) are not read at all."""
    user = django_user_model.objects.create_user("sizes@example.com", "x" * 16)
    other = django_user_model.objects.create_user("sizes-other@example.com", "x" * 16)
    now = timezone.now()
    made = iter(range(1_000))

    def order(quantity: str, status: str = "cancelled", *, submitted: bool = True, **extra: Any) -> Order:
        n = next(made)
        fields: dict[str, Any] = {
            "user": user, "client_order_id": f"sizes-{n}", "exchange": "cryptocom",
            "instrument": "ETH-USD", "instrument_type": "crypto", "side": "buy", "order_type": "limit",
            "quantity": Decimal(quantity), "price": Decimal("1"), "notional": Decimal(quantity),
            "status": status, "submitted_at": now if submitted else None,
        } | extra  # fmt: skip
        created = Order.objects.create(**fields)
        # One second apart, in the order made: "latest" is unambiguous.
        Order.objects.filter(pk=created.pk).update(created_at=now - timedelta(seconds=1_000 - n))
        return created

    order("1", "filled", filled_quantity=Decimal("1"))
    order("2")  # cancelled unfilled: still an order of that size
    order("3", "open")
    order("900", "rejected", error_code="RISK_FAT_FINGER_QUANTITY")
    order("800", "pending", submitted=False)
    order("700", user=other)
    order("4", "filled", filled_quantity=Decimal("4"))
    for _ in range(300):  # since then, only another instrument
        order("5", instrument="BTC-USD")
    this = order("6", "pending", submitted=False)
    scope = _scope_of(this, history=3)

    assert recent_activity(scope).quantities == [Decimal("4"), Decimal("3"), Decimal("2")]

    plan = _plan_of(scope)
    assert "orders_user_instrument_sizes" in plan, plan
