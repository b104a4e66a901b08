"""Trading reads: a user's orders, executions and trades; what reconciliation must look at;
the risk configuration in force; and the lock helpers the services use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.exchanges.choices import LinkStatus
from apps.exchanges.models import ExchangeLink
from apps.marketdata.models import Instrument
from apps.trading.choices import IN_DOUBT_STATUSES, LIVE_STATUSES, KillSwitchScope, OrderStatus
from apps.trading.exceptions import OrderNotFound
from apps.trading.models import KillSwitch, Order, OrderExecution, RiskLimit
from apps.trading.state import NOT_FOUND_AT_VENUE
from k2.core.queries import row_get, rows_where, rows_where_later


def order_list(*, user: Any) -> QuerySet[Order]:
    return Order.objects.filter(user=user)


def order_get(*, user: Any, order_id: Any) -> Order:
    """One of the user's orders; another user's order is simply not found. Read without the ORM's
    query compile (`row_get`): clients poll this, and the compile was over a third of its CPU."""
    order = row_get(Order, pk=order_id, user_id=user.pk)
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


@dataclass(frozen=True)
class ExecutionTotals:
    """What an order's recorded executions add up to. `fees` is the net fee (a cost positive, a
    rebate negative) in one currency, `fee_currency`: the order's own when it has one, otherwise
    the first execution's that names one. Fees in any other currency are never added in: they are
    in `other_fees` (currency -> net amount, zero totals left out), so `mixed_fee_currencies`
    says the order's executions were charged in more than one currency (a blank currency, not
    known to be the same, counts as another)."""

    quantity: Decimal
    vwap: Decimal | None
    fees: Decimal
    fee_currency: str
    other_fees: tuple[tuple[str, Decimal], ...] = ()

    @property
    def mixed_fee_currencies(self) -> bool:
        return bool(self.other_fees)


def execution_totals(*, order_id: Any) -> ExecutionTotals:
    """`ExecutionTotals` over the recorded executions of an order, in one query."""
    rows = list(
        OrderExecution.objects.filter(order_id=order_id)
        .order_by("executed_at", "id")
        .values_list("quantity", "price", "fee", "fee_currency", "order__fee_currency")
    )
    quantity = sum((row[0] for row in rows), Decimal(0))
    value = sum((row[0] * row[1] for row in rows), Decimal(0))
    by_currency: dict[str, Decimal] = {}
    for _, _, fee, fee_currency, _ in rows:
        by_currency[fee_currency] = by_currency.get(fee_currency, Decimal(0)) + fee
    order_currency = rows[0][4] if rows else ""
    currency = order_currency or next((row[3] for row in rows if row[3]), "")
    return ExecutionTotals(
        quantity=quantity,
        vwap=value / quantity if quantity else None,
        fees=by_currency.get(currency, Decimal(0)),
        fee_currency=currency,
        other_fees=tuple((c, amount) for c, amount in by_currency.items() if c != currency and amount),
    )


def order_ids_to_reconcile(*, limit: int) -> list[Any]:
    """Orders whose venue state may differ from ours, plus `pending` orders older than the grace
    period (their placing request died). Those in doubt (pending, submitted, unknown) first,
    then the least recently reconciled (never first): every attempt, even one that could not
    ask the venue, sends an order to the back, so no order holds the others up. Orders at a
    venue the user has no active link to are left out (K2 cannot ask about them) until it is
    linked again."""
    now = timezone.now()
    stale_pending = now - timedelta(seconds=settings.K2_TRADING_RECONCILE_GRACE_SECONDS)
    in_doubt = Case(When(status__in=IN_DOUBT_STATUSES, then=Value(0)), default=Value(1))
    linked = Exists(
        ExchangeLink.objects.filter(
            user_id=OuterRef("user_id"), exchange=OuterRef("exchange"), status=LinkStatus.ACTIVE
        )
    )
    live = list(
        Order.objects.alias(linked=linked)
        .filter(
            Q(status__in=LIVE_STATUSES, linked=True)
            | Q(status=OrderStatus.PENDING, created_at__lt=stale_pending)
        )
        .order_by(in_doubt, F("reconciled_at").asc(nulls_first=True), "created_at")
        .values_list("pk", flat=True)[:limit]
    )
    # Finished orders (last day) that may still change: fills not all recorded yet, or rejected
    # only because the venue did not show them (if it ever does, the order follows it).
    finished = list(
        Order.objects.alias(linked=linked)
        .filter(linked=True, closed_at__gte=now - timedelta(days=1))
        .annotate(recorded=Coalesce(Sum("executions__quantity"), Decimal(0)))
        .filter(
            Q(
                status__in=(OrderStatus.FILLED, OrderStatus.CANCELLED),
                filled_quantity__gt=0,
                recorded__lt=F("filled_quantity"),
            )
            | Q(status=OrderStatus.REJECTED, error_code=NOT_FOUND_AT_VENUE)
        )
        .order_by(F("reconciled_at").asc(nulls_first=True), "closed_at")
        .values_list("pk", flat=True)[: max(0, limit - len(live))]
    )
    return live + finished


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


def instrument_with_link(*, symbol: str, user_id: Any) -> tuple[Instrument | None, ExchangeLink | None]:
    """An instrument by symbol and the user's active link to its venue, in one statement (an
    order's first read)."""
    instruments, links = rows_where(
        (Instrument, "symbol = %s", [symbol]),
        (
            ExchangeLink,
            f"user_id = %s AND status = %s AND exchange = (SELECT venue FROM {Instrument._meta.db_table} "  # noqa: S608 (a model's table)
            "WHERE symbol = %s)",
            [user_id, LinkStatus.ACTIVE, symbol],
        ),
    )
    return (instruments[0] if instruments else None), (links[0] if links else None)


# ---- risk configuration and history -----------------------------------------------------------


# The reads below run on every order, before and inside its risk check. They are written in SQL
# (no ORM compilation) because order placement is latency-critical; their tests are the risk
# engine's (tests/trading/test_risk.py).


_KILL_SWITCHES_WHERE = (
    "active AND (scope = %s OR (scope = %s AND venue = %s) OR (scope = %s AND user_id = %s))"
)
_RISK_LIMITS_WHERE = "(user_id = %s OR user_id IS NULL) AND (instrument_type = %s OR instrument_type = '')"


def _kill_switches_params(*, venue: str, user_id: Any) -> list[Any]:
    """`_KILL_SWITCHES_WHERE`'s parameters: the switches that cover this user at this venue."""
    return [KillSwitchScope.GLOBAL, KillSwitchScope.VENUE, venue, KillSwitchScope.USER, user_id]


def _limits_ranked(rows: list[RiskLimit]) -> list[RiskLimit]:
    """Most specific first: user+type, user, type, everyone."""

    def rank(row: RiskLimit) -> int:
        return (0 if row.user_id else 2) + (0 if row.instrument_type else 1)

    return sorted(rows, key=rank)


RiskConfig = tuple[list[KillSwitch], list[RiskLimit]]


def risk_config(*, user_id: Any, venue: str, instrument_type: str) -> RiskConfig:
    """In one statement, read fresh on every order: the active kill switches that cover this
    user at this venue, and the risk limit rows that match, most specific first."""
    return risk_config_later(user_id=user_id, venue=venue, instrument_type=instrument_type)()


def risk_config_later(*, user_id: Any, venue: str, instrument_type: str) -> Callable[[], RiskConfig]:
    """`risk_config`, its statement sent now and read by the function it returns (inside
    `k2.core.queries.pipelined`: with the block's other statements, in their round trip)."""
    read = rows_where_later(
        (
            KillSwitch,
            _KILL_SWITCHES_WHERE,
            _kill_switches_params(venue=venue, user_id=user_id),
        ),
        (RiskLimit, _RISK_LIMITS_WHERE, [user_id, instrument_type]),
    )

    def config() -> RiskConfig:
        switches, limits = read()
        return switches, _limits_ranked(limits)

    return config


def risk_limit_rows(*, user_id: Any, instrument_type: str) -> list[RiskLimit]:
    """The risk limit rows that match, most specific first."""
    (rows,) = rows_where((RiskLimit, _RISK_LIMITS_WHERE, [user_id, instrument_type]))
    return _limits_ranked(rows)


@dataclass(frozen=True)
class RecentActivity:
    last_second: int
    last_minute: int
    daily_notional: Decimal
    quantities: list[Decimal]  # of the latest orders on the instrument, newest first
    resting: Decimal  # unfilled quantity of the user's other live orders of this side (and outcome)
    submitted: list[Any]  # ids of the user's other orders at the venue submitted since `holds_since`


# Written into the statement, not bound: a prepared statement's generic plan can then use the
# partial index on these statuses (`orders_user_instrument_live`). Not `pending`: one user's
# checks run one at a time (the lock), and each order leaves `pending` before the next check
# reads; a pending order is one still waiting for its check (counting it would refuse this one
# for an order that may itself be refused) or one whose request died.
_LIVE_STATUSES_SQL = ", ".join(f"'{status}'" for status in sorted(LIVE_STATUSES))

# An order that passed its checks and was not refused by the venue, as the partial index
# `orders_user_instrument_sizes` says it (written into the statement for the same reason): the
# orders whose sizes are the user's usual ones.
_SUBMITTED_SQL = f"submitted_at IS NOT NULL AND status <> '{OrderStatus.REJECTED}'"

# What counts towards the daily notional, as the partial index `orders_user_daily_notional`
# says it: a submitted order, not cancelled before anything filled.
_COUNTS_TODAY_SQL = f"{_SUBMITTED_SQL} AND NOT (status = '{OrderStatus.CANCELLED}' AND filled_quantity = 0)"

_RECENT_ACTIVITY_SQL = f"""
SELECT
    count(*) FILTER (WHERE created_at >= %(second)s AND NOT risk_refused),
    count(*) FILTER (WHERE created_at >= %(minute)s AND NOT risk_refused),
    (
        SELECT coalesce(sum(
            CASE WHEN status = '{OrderStatus.CANCELLED}' THEN round(notional * filled_quantity / quantity, 8)
                 ELSE notional END
        ), 0) FROM orders
        WHERE user_id = %(user_id)s AND instrument_type = %(instrument_type)s AND created_at >= %(today)s
          AND id <> %(order_id)s AND {_COUNTS_TODAY_SQL}
    ),
    ARRAY(
        SELECT quantity FROM orders
        WHERE user_id = %(user_id)s AND instrument = %(instrument)s AND id <> %(order_id)s
          AND {_SUBMITTED_SQL}
        ORDER BY created_at DESC LIMIT %(history)s
    ),
    (
        SELECT coalesce(sum(quantity - filled_quantity), 0) FROM orders
        WHERE user_id = %(user_id)s AND instrument = %(instrument)s AND status IN ({_LIVE_STATUSES_SQL})
          AND side = %(side)s AND outcome = %(outcome)s AND id <> %(order_id)s
    ),
    coalesce(array_agg(id) FILTER (WHERE exchange = %(venue)s AND submitted_at >= %(holds_since)s), '{{}}')
FROM (
    SELECT created_at, submitted_at, exchange, id,
           (status = %(rejected)s AND error_code = ANY(%(risk_codes)s)) AS risk_refused
    FROM orders
    WHERE user_id = %(user_id)s AND created_at >= %(since)s AND id <> %(order_id)s
) AS recent
"""  # noqa: S608 (constants only)


@dataclass(frozen=True)
class ActivityScope:
    """Whose recent activity the risk checks read, for which order, as of when."""

    user_id: Any
    order_id: Any
    instrument: str
    instrument_type: str
    venue: str
    side: str
    outcome: str  # an event contract's ("" for others): resting orders count per outcome
    now: datetime
    risk_codes: frozenset[str]
    history: int
    holds_since: datetime  # orders submitted since then are listed (`RecentActivity.submitted`)

    def params(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "order_id": self.order_id,
            "instrument": self.instrument,
            "instrument_type": self.instrument_type,
            "side": self.side,
            "outcome": self.outcome,
            "second": self.now - timedelta(seconds=1),
            "minute": self.now - timedelta(minutes=1),
            "today": self.now.replace(hour=0, minute=0, second=0, microsecond=0),
            # The last minute's orders, for the velocity checks, and those submitted since
            # `holds_since`: created up to the reconcile grace before it (an order still pending
            # after that is taken as abandoned, and reconciliation settles it).
            "since": min(
                self.now - timedelta(minutes=1),
                self.holds_since - timedelta(seconds=settings.K2_TRADING_RECONCILE_GRACE_SECONDS),
            ),
            "holds_since": self.holds_since,
            "venue": self.venue,
            "rejected": OrderStatus.REJECTED,
            "risk_codes": sorted(self.risk_codes),
            "history": self.history,
        }


def _recent_activity_of(row: tuple[Any, ...]) -> RecentActivity:
    second, minute, daily, quantities, resting, submitted = row
    return RecentActivity(second, minute, daily, list(quantities), resting, list(submitted))


def recent_activity(scope: ActivityScope) -> RecentActivity:
    """One statement for the velocity, daily and order-size checks (other than this order).

    Velocity counts the user's orders created in the window, except those the risk engine itself
    refused (the last minute's orders are all it reads for them). The daily notional sums today's
    (UTC) orders of this instrument type that passed the risk engine and were not refused or
    cancelled unfilled: what the user has committed to trade today (of a cancelled order, only
    the part that filled). It is a subquery of its own, on a partial index without the orders
    that cannot count: an active trader's many orders cancelled unfilled are never read. The
    quantities are those of the user's latest orders on the instrument that reached the venue
    (not refused), read newest first on a partial index of their own: the user's orders on other
    instruments are never read. `resting` sums the unfilled quantity of the user's other live
    orders (past their checks) on the instrument, side and outcome, whenever placed: a subquery
    of its own (on a partial index), as they may be older than the window. `submitted` lists the
    user's other orders at the venue submitted since `holds_since` (`risk.account_holds_apply`)."""
    with connection.cursor() as cursor:
        cursor.execute(_RECENT_ACTIVITY_SQL, scope.params())
        return _recent_activity_of(cursor.fetchone())


# ---- locks --------------------------------------------------------------------------------------


def order_lock(*, order_id: Any) -> Order | None:
    """Lock one order row (inside a transaction)."""
    return row_get(Order, lock=True, pk=order_id)


_LOCK_FOR_RISK_SQL = f"""
SELECT status, pg_advisory_xact_lock(hashtext(%s)),
       ARRAY(SELECT id FROM {KillSwitch._meta.db_table} WHERE {_KILL_SWITCHES_WHERE})
FROM orders WHERE id = %s FOR UPDATE
"""  # noqa: S608 (constants only)


@dataclass(frozen=True)
class RiskLock:
    status: str | None  # the order's (None: no such order)
    activity: RecentActivity  # the user's, read under the lock
    switch_ids: frozenset[Any]  # the active kill switches that cover the order, as of the lock


def order_lock_for_risk(scope: ActivityScope) -> RiskLock:
    """Lock the scope's order row and its user's risk checks; return the order's status, the
    user's `recent_activity` read under that lock, and which kill switches are active now (a
    switch flipped while the order's checks gathered their inputs must still stop it). The user
    lock (advisory, transaction-scoped) serialises one user's risk checks, so two concurrent
    orders cannot both pass a daily or velocity limit that only one of them fits in.

    Two statements sent together: inside `k2.core.queries.pipelined`, one round trip. The
    database runs the second once the first holds its locks, so it sees every order the lock's
    previous holder committed."""
    user_lock = f"k2:trading:user:{scope.user_id}"
    switches = _kill_switches_params(venue=scope.venue, user_id=scope.user_id)
    with connection.cursor() as lock, connection.cursor() as counts:
        lock.execute(_LOCK_FOR_RISK_SQL, [user_lock, *switches, scope.order_id])
        counts.execute(_RECENT_ACTIVITY_SQL, scope.params())
        row = lock.fetchone()
        activity = _recent_activity_of(counts.fetchone())
    if row is None:
        return RiskLock(None, activity, frozenset())
    return RiskLock(row[0], activity, frozenset(row[2]))
