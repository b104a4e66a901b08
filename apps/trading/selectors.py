"""Trading reads: a user's orders, executions and trades; what reconciliation must look at;
the risk configuration in force; and the lock helpers the services use."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.trading.choices import LIVE_STATUSES, KillSwitchScope, OrderStatus
from apps.trading.exceptions import OrderNotFound
from apps.trading.models import KillSwitch, Order, OrderExecution, RiskLimit


def order_list(*, user: Any) -> QuerySet[Order]:
    return Order.objects.filter(user=user)


def order_get(*, user: Any, order_id: Any) -> Order:
    """One of the user's orders; another user's order is simply not found."""
    order = Order.objects.filter(user=user, pk=order_id).first()
    if order is None:
        raise OrderNotFound()
    return order


def order_get_by_client_id(*, user: Any, client_order_id: str) -> Order | None:
    return Order.objects.filter(user=user, client_order_id=client_order_id).first()


def order_find_for_venue(
    *, venue: str, venue_client_order_id: str | None, exchange_order_id: str | None
) -> Any:
    """The id of the K2 order a venue message is about (None for orders placed outside K2)."""
    if venue_client_order_id:
        found = (
            Order.objects.filter(venue_client_order_id=venue_client_order_id, exchange=venue)
            .values_list("pk", flat=True)
            .first()
        )
        if found is not None:
            return found
    if exchange_order_id:
        return (
            Order.objects.filter(exchange=venue, exchange_order_id=exchange_order_id)
            .values_list("pk", flat=True)
            .first()
        )
    return None


def execution_list(*, order: Order) -> QuerySet[OrderExecution]:
    return OrderExecution.objects.filter(order=order)


def trade_list(*, user: Any) -> QuerySet[OrderExecution]:
    return OrderExecution.objects.filter(user=user).select_related("order")


def execution_totals(*, order_id: Any) -> tuple[Decimal, Decimal | None, Decimal]:
    """(filled quantity, volume-weighted price, fees) over the recorded executions of an order."""
    rows = list(OrderExecution.objects.filter(order_id=order_id).values_list("quantity", "price", "fee"))
    quantity = sum((q for q, _, _ in rows), Decimal(0))
    value = sum((q * p for q, p, _ in rows), Decimal(0))
    fees = sum((f for _, _, f in rows), Decimal(0))
    return quantity, (value / quantity if quantity else None), fees


def order_ids_to_reconcile(*, limit: int) -> list[Any]:
    """Orders whose venue state may differ from ours, least recently reconciled first; plus
    `pending` orders older than the grace period (their placing request died)."""
    now = timezone.now()
    stale_pending = now - timedelta(seconds=settings.K2_TRADING_RECONCILE_GRACE_SECONDS)
    live = list(
        Order.objects.filter(
            Q(status__in=LIVE_STATUSES) | Q(status=OrderStatus.PENDING, created_at__lt=stale_pending)
        )
        .order_by("reconciled_at", "created_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Finished orders (last day) whose fills are not all recorded yet.
    missing_fills = list(
        Order.objects.filter(
            status__in=(OrderStatus.FILLED, OrderStatus.CANCELLED),
            filled_quantity__gt=0,
            closed_at__gte=now - timedelta(days=1),
        )
        .annotate(recorded=Coalesce(Sum("executions__quantity"), Decimal(0)))
        .filter(recorded__lt=F("filled_quantity"))
        .order_by("closed_at")
        .values_list("pk", flat=True)[: max(0, limit - len(live))]
    )
    return live + missing_fills


def order_ids_live_for_link(*, user_id: Any, venue: str) -> list[Any]:
    return list(
        Order.objects.filter(user_id=user_id, exchange=venue, status__in=LIVE_STATUSES).values_list(
            "pk", flat=True
        )
    )


def order_ids_open_for_user(*, user: Any, instrument: str | None, exchange: str | None) -> list[Any]:
    qs = Order.objects.filter(user=user, status__in=LIVE_STATUSES)
    if instrument:
        qs = qs.filter(instrument=instrument)
    if exchange:
        qs = qs.filter(exchange=exchange)
    return list(qs.order_by("created_at").values_list("pk", flat=True)[: settings.K2_TRADING_CANCEL_ALL_MAX])


# ---- risk configuration and history -----------------------------------------------------------


def kill_switches_active(*, user_id: Any, venue: str) -> list[KillSwitch]:
    """The active switches that cover this user at this venue (read fresh on every order)."""
    return list(
        KillSwitch.objects.filter(active=True).filter(
            Q(scope=KillSwitchScope.GLOBAL)
            | Q(scope=KillSwitchScope.VENUE, venue=venue)
            | Q(scope=KillSwitchScope.USER, user_id=user_id)
        )
    )


def risk_limit_rows(*, user_id: Any, instrument_type: str) -> list[RiskLimit]:
    """Matching rows, most specific first: user+type, user, type, everyone."""
    rows = list(
        RiskLimit.objects.filter(
            Q(user_id=user_id) | Q(user__isnull=True),
            Q(instrument_type=instrument_type) | Q(instrument_type=""),
        )
    )

    def rank(row: RiskLimit) -> int:
        return (0 if row.user_id else 2) + (0 if row.instrument_type else 1)

    return sorted(rows, key=rank)


@dataclass(frozen=True)
class RecentActivity:
    last_second: int
    last_minute: int
    daily_notional: Decimal


def recent_activity(
    *, user_id: Any, instrument_type: str, now: datetime, exclude_codes: frozenset[str], exclude_id: Any
) -> RecentActivity:
    """One query for the velocity and daily checks.

    Velocity counts the user's orders created in the window (other than this one), except those
    the risk engine itself refused. The daily notional sums today's (UTC) orders of this
    instrument type that passed the risk engine and were not refused or cancelled unfilled: what
    the user has committed to trade today."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    risk_refused = Q(status=OrderStatus.REJECTED, error_code__in=exclude_codes)
    committed = (
        Q(instrument_type=instrument_type, created_at__gte=today, submitted_at__isnull=False)
        & ~Q(status=OrderStatus.REJECTED)
        & ~Q(status=OrderStatus.CANCELLED, filled_quantity=0)
    )
    row = (
        Order.objects.filter(user_id=user_id, created_at__gte=min(today, now - timedelta(minutes=1)))
        .exclude(pk=exclude_id)
        .aggregate(
            second=Count("pk", filter=Q(created_at__gte=now - timedelta(seconds=1)) & ~risk_refused),
            minute=Count("pk", filter=Q(created_at__gte=now - timedelta(minutes=1)) & ~risk_refused),
            daily=Sum("notional", filter=committed),
        )
    )
    return RecentActivity(row["second"], row["minute"], row["daily"] or Decimal(0))


def recent_order_quantities(*, user_id: Any, instrument: str, limit: int) -> list[Decimal]:
    """Quantities of the user's latest orders on this instrument that reached the venue."""
    return list(
        Order.objects.filter(user_id=user_id, instrument=instrument, submitted_at__isnull=False)
        .exclude(status=OrderStatus.REJECTED)
        .order_by("-created_at")
        .values_list("quantity", flat=True)[:limit]
    )


# ---- locks --------------------------------------------------------------------------------------


def order_lock(*, order_id: Any) -> Order | None:
    """Lock one order row (inside a transaction)."""
    return Order.objects.select_for_update().filter(pk=order_id).first()


def user_trading_lock(*, user_id: Any) -> None:
    """Serialise one user's risk checks (transaction-scoped advisory lock), so two concurrent
    orders cannot both pass a daily or velocity limit that only one of them fits in."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"k2:trading:user:{user_id}"])
