"""Kalshi JSON shapes (spec sections 3-5): era C (fixed-point strings) always, plus the era-A
integer twins (cents, whole contracts) when the simulator runs with `legacy_cents`, which is what
client libraries generated before the 2026 migration (e.g. `kalshi_python_sync` 3.2.0) require."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from apps.exchanges.simulators.engine import PublicTrade, SimFill, SimOrder, SimSide, SimStatus
from apps.exchanges.simulators.kalshi.accounting import EventPosition

ONE = Decimal(1)
ZERO = Decimal(0)


def d4(value: Decimal | None) -> str:
    return f"{(value or ZERO).quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"


def fp2(value: Decimal | None) -> str:
    return f"{(value or ZERO).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"


def cents(value: Decimal | None) -> int:
    return int(((value or ZERO) * 100).to_integral_value(rounding=ROUND_HALF_UP))


def whole(value: Decimal | None) -> int:
    return int((value or ZERO).to_integral_value(rounding=ROUND_HALF_UP))


def rfc3339(ns: int | float | datetime) -> str:
    when = ns if isinstance(ns, datetime) else datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ORDER_STATUS = {
    SimStatus.NEW: "resting",
    SimStatus.ACTIVE: "resting",
    SimStatus.FILLED: "executed",
    SimStatus.CANCELED: "canceled",
    SimStatus.REJECTED: "canceled",
    SimStatus.EXPIRED: "canceled",
}


def book_side(side: SimSide) -> str:
    return "bid" if side is SimSide.BUY else "ask"


def order(o: SimOrder, *, legacy: bool) -> dict[str, Any]:
    x = o.extra
    yes_price = o.price or ZERO
    open_ = o.is_open
    remaining = o.remaining if open_ else ZERO
    taker_cost, maker_cost = Decimal(str(x.get("taker_cost", 0))), Decimal(str(x.get("maker_cost", 0)))
    taker_fees, maker_fees = Decimal(str(x.get("taker_fees", 0))), Decimal(str(x.get("maker_fees", 0)))
    row: dict[str, Any] = {
        "order_id": o.order_id,
        "user_id": o.account_id,
        "client_order_id": o.client_oid,
        "ticker": o.instrument,
        "status": ORDER_STATUS[o.status],
        "outcome_side": x.get("outcome", "yes"),
        "book_side": book_side(o.side),
        "side": x.get("outcome", "yes"),
        "action": x.get("action", "buy"),
        "type": "limit",
        "yes_price_dollars": d4(yes_price),
        "no_price_dollars": d4(ONE - yes_price),
        "initial_count_fp": fp2(o.quantity),
        "fill_count_fp": fp2(o.filled),
        "remaining_count_fp": fp2(remaining),
        "taker_fill_cost_dollars": d4(taker_cost),
        "maker_fill_cost_dollars": d4(maker_cost),
        "taker_fees_dollars": d4(taker_fees),
        "maker_fees_dollars": d4(maker_fees),
        "expiration_time": None,
        "created_time": rfc3339(o.created_ns),
        "last_update_time": rfc3339(o.updated_ns),
        "self_trade_prevention_type": x.get("stp", "taker_at_cross"),
        "order_group_id": None,
        "cancel_order_on_pause": False,
        "subaccount_number": 0,
    }
    if o.reason:
        row["cancellation_reason"] = x.get("cancel_reason", o.reason)
    if legacy:
        row.update(
            yes_price=cents(yes_price),
            no_price=cents(ONE - yes_price),
            initial_count=whole(o.quantity),
            fill_count=whole(o.filled),
            remaining_count=whole(remaining),
            taker_fees=cents(taker_fees),
            maker_fees=cents(maker_fees),
            taker_fill_cost=cents(taker_cost),
            maker_fill_cost=cents(maker_cost),
            queue_position=0,
        )
    return row


def user_order(o: SimOrder) -> dict[str, Any]:
    """WS `user_order`: order-like with ms timestamps."""
    row = order(o, legacy=False)
    row["created_ts_ms"] = o.created_ns // 1_000_000
    row["last_updated_ts_ms"] = o.updated_ns // 1_000_000
    row["expiration_ts_ms"] = None
    return row


def fill(f: SimFill, o: SimOrder | None, *, legacy: bool) -> dict[str, Any]:
    x = o.extra if o is not None else {}
    outcome = str(x.get("outcome", "yes" if f.side is SimSide.BUY else "no"))
    row: dict[str, Any] = {
        "fill_id": f.trade_id,
        "trade_id": f.trade_id,
        "order_id": f.order_id,
        "ticker": f.instrument,
        "market_ticker": f.instrument,
        "outcome_side": outcome,
        "book_side": book_side(f.side),
        "side": outcome,
        "action": x.get("action", "buy"),
        "count_fp": fp2(f.quantity),
        "yes_price_dollars": d4(f.price),
        "no_price_dollars": d4(ONE - f.price),
        "is_taker": not f.is_maker,
        "fee_cost": d4(f.fee),
        "created_time": rfc3339(f.time_ns),
        "ts": f.time_ns // 1_000_000_000,
        "subaccount_number": 0,
    }
    if legacy:
        row.update(
            client_order_id=f.client_oid,
            count=whole(f.quantity),
            yes_price=cents(f.price),
            no_price=cents(ONE - f.price),
            price=cents(f.price),
            yes_price_fixed=d4(f.price),
            no_price_fixed=d4(ONE - f.price),
        )
    return row


def ws_fill(f: SimFill, o: SimOrder | None, post_position: Decimal) -> dict[str, Any]:
    row = fill(f, o, legacy=False)
    row.pop("fill_id")
    row.pop("ticker")
    row.update(
        purchased_side=row["outcome_side"],
        post_position_fp=fp2(post_position),
        client_order_id=f.client_oid,
        ts_ms=f.time_ns // 1_000_000,
        exchange_index=0,
    )
    return row


def position(ticker: str, p: EventPosition, resting: int, *, legacy: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ticker": ticker,
        "position_fp": fp2(p.position),
        "market_exposure_dollars": d4(p.cost),
        "total_traded_dollars": d4(p.total_traded),
        "realized_pnl_dollars": d4(p.realized_pnl),
        "fees_paid_dollars": d4(p.fees_paid),
        "last_updated_ts": rfc3339(p.updated_ns),
        "exchange_index": 0,
    }
    if legacy:
        row.update(
            position=whole(p.position),
            market_exposure=cents(p.cost),
            total_traded=cents(p.total_traded),
            realized_pnl=cents(p.realized_pnl),
            fees_paid=cents(p.fees_paid),
            resting_orders_count=resting,
        )
    return row


def event_position(event_ticker: str, rows: list[EventPosition], *, legacy: bool) -> dict[str, Any]:
    cost = sum((p.cost for p in rows), ZERO)
    shares = sum((p.volume for p in rows), ZERO)
    pnl = sum((p.realized_pnl for p in rows), ZERO)
    fees = sum((p.fees_paid for p in rows), ZERO)
    traded = sum((p.total_traded for p in rows), ZERO)
    row: dict[str, Any] = {
        "event_ticker": event_ticker,
        "total_cost_dollars": d4(traded),
        "total_cost_shares_fp": fp2(shares),
        "event_exposure_dollars": d4(cost),
        "realized_pnl_dollars": d4(pnl),
        "fees_paid_dollars": d4(fees),
    }
    if legacy:
        row.update(
            total_cost=cents(traded),
            total_cost_shares=whole(shares),
            event_exposure=cents(cost),
            realized_pnl=cents(pnl),
            fees_paid=cents(fees),
        )
    return row


def ws_position(account_id: str, ticker: str, p: EventPosition) -> dict[str, Any]:
    return {
        "user_id": account_id,
        "market_ticker": ticker,
        "position_fp": fp2(p.position),
        "position_cost_dollars": d4(p.cost),
        "realized_pnl_dollars": d4(p.realized_pnl),
        "fees_paid_dollars": d4(p.fees_paid),
        "position_fee_cost_dollars": d4(p.fees_paid),
        "volume_fp": fp2(p.volume),
        "ts_ms": p.updated_ns // 1_000_000,
    }


def public_trade(t: PublicTrade, *, legacy: bool) -> dict[str, Any]:
    taker_yes = t.taker_side is SimSide.BUY
    row: dict[str, Any] = {
        "trade_id": t.trade_id,
        "ticker": t.instrument,
        "count_fp": fp2(t.quantity),
        "yes_price_dollars": d4(t.price),
        "no_price_dollars": d4(ONE - t.price),
        "taker_outcome_side": "yes" if taker_yes else "no",
        "taker_book_side": book_side(t.taker_side),
        "taker_side": "yes" if taker_yes else "no",
        "is_block_trade": False,
        "created_time": rfc3339(t.time_ns),
    }
    if legacy:
        row.update(
            count=whole(t.quantity),
            yes_price=cents(t.price),
            no_price=cents(ONE - t.price),
            price=cents(t.price),
        )
    return row


def ws_trade(t: PublicTrade) -> dict[str, Any]:
    row = public_trade(t, legacy=False)
    row["market_ticker"] = row.pop("ticker")
    row["ts"] = t.time_ns // 1_000_000_000
    row["ts_ms"] = t.time_ns // 1_000_000
    return row


def levels(prices: dict[Decimal, Decimal]) -> list[list[str]]:
    """Ascending by price: the best bid is the last element."""
    return [[d4(p), fp2(q)] for p, q in sorted(prices.items())]


def levels_cents(prices: dict[Decimal, Decimal]) -> list[list[int]]:
    return [[cents(p), whole(q)] for p, q in sorted(prices.items())]
