"""Engine state rendered as Crypto.com v1 payloads, field for field (spec sections 3 and 4)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from apps.exchanges.simulators.cryptocom import codes
from apps.exchanges.simulators.engine import (
    Account,
    Book,
    MatchingEngine,
    PublicTrade,
    Reject,
    SimFill,
    SimInstrument,
    SimOrder,
    SimSide,
)

TIF = {"gtc": "GOOD_TILL_CANCEL", "ioc": "IMMEDIATE_OR_CANCEL", "fok": "FILL_OR_KILL"}
TIF_IN = {v: k for k, v in TIF.items()}
STABLE = {"USD", "USDT", "USDC"}
_REASONS = {r.value for r in Reject}

TIMEFRAMES_MS: dict[str, int] = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "12h": 43_200_000,
    "1D": 86_400_000,
    "7D": 604_800_000,
    "14D": 1_209_600_000,
    "1M": 2_592_000_000,
}
LEGACY_TIMEFRAMES = {
    "M1": "1m",
    "M5": "5m",
    "M15": "15m",
    "M30": "30m",
    "H1": "1h",
    "H2": "2h",
    "H4": "4h",
    "H12": "12h",
    "D1": "1D",
    "D7": "7D",
    "D14": "14D",
}


def s(value: Decimal | None, step: Decimal | None = None) -> str:
    """A decimal as the venue writes it: a string, zero-padded to the instrument's step."""
    if value is None:
        return "0"
    if step is None:
        return format(value.normalize(), "f")
    return format(value.quantize(step), "f")  # never exponent form ("0E-8"): "0.00000000"


def ms(ns: int) -> int:
    return ns // 1_000_000


def decimals(step: Decimal) -> int:
    return max(0, -int(step.normalize().as_tuple().exponent))


def instrument(inst: SimInstrument) -> dict[str, Any]:
    return {
        "symbol": inst.symbol,
        "inst_type": "CCY_PAIR",
        "display_name": f"{inst.base}/{inst.quote}",
        "base_ccy": inst.base,
        "quote_ccy": inst.quote,
        "quote_decimals": decimals(inst.tick_size),
        "quantity_decimals": decimals(inst.qty_step),
        "price_tick_size": str(inst.tick_size),
        "qty_tick_size": str(inst.qty_step),
        "max_leverage": "1",
        "tradable": inst.tradable,
        "expiry_timestamp_ms": 0,
        "beta_product": False,
        "margin_buy_enabled": False,
        "margin_sell_enabled": False,
    }


def book_levels(levels: Iterable[tuple[Decimal, Decimal, int]], inst: SimInstrument) -> list[list[str]]:
    return [[s(p, inst.tick_size), s(q, inst.qty_step), str(n)] for p, q, n in levels]


def book(engine: MatchingEngine, inst: SimInstrument, depth: int) -> dict[str, Any]:
    b = engine.books[inst.symbol]
    return {
        "bids": book_levels(b.depth(SimSide.BUY, depth), inst),
        "asks": book_levels(b.depth(SimSide.SELL, depth), inst),
        "t": int(time.time() * 1000),
    }


def ticker(engine: MatchingEngine, inst: SimInstrument) -> dict[str, Any]:
    b: Book = engine.books[inst.symbol]
    now = time.time_ns()
    day = [t for t in engine.trades[inst.symbol] if t.time_ns >= now - 86_400_000_000_000]
    last = engine.last_price(inst.symbol)
    first = day[0].price if day else None
    bids, asks = b.depth(SimSide.BUY, 1), b.depth(SimSide.SELL, 1)
    volume = sum((t.quantity for t in day), Decimal(0))
    return {
        "i": inst.symbol,
        "h": s(max(t.price for t in day), inst.tick_size) if day else None,
        "l": s(min(t.price for t in day), inst.tick_size) if day else None,
        "a": s(last, inst.tick_size) if last is not None else None,
        "v": s(volume, inst.qty_step),
        "vv": s(sum((t.quantity * t.price for t in day), Decimal(0)), Decimal("0.01")),
        "oi": "0",
        "c": str(((last - first) / first).quantize(Decimal("0.0001"))) if last and first else "0",
        "b": s(bids[0][0], inst.tick_size) if bids else None,
        "bs": s(bids[0][1], inst.qty_step) if bids else None,
        "k": s(asks[0][0], inst.tick_size) if asks else None,
        "ks": s(asks[0][1], inst.qty_step) if asks else None,
        "t": ms(now),
    }


def public_trade(trade: PublicTrade, inst: SimInstrument) -> dict[str, Any]:
    return {
        "d": trade.trade_id,
        "t": ms(trade.time_ns),
        "tn": str(trade.time_ns),
        "p": s(trade.price, inst.tick_size),
        "q": s(trade.quantity, inst.qty_step),
        "s": trade.taker_side.value.upper(),
        "i": trade.instrument,
        "m": trade.trade_id,
    }


def candles(trades: Iterable[PublicTrade], inst: SimInstrument, frame_ms: int) -> list[dict[str, Any]]:
    """OHLCV buckets (by trade time) ascending; buckets without trades are omitted."""
    buckets: dict[int, list[PublicTrade]] = {}
    for trade in trades:
        start = ms(trade.time_ns) // frame_ms * frame_ms
        buckets.setdefault(start, []).append(trade)
    out = []
    for start in sorted(buckets):
        ts = buckets[start]
        out.append(
            {
                "o": s(ts[0].price, inst.tick_size),
                "h": s(max(t.price for t in ts), inst.tick_size),
                "l": s(min(t.price for t in ts), inst.tick_size),
                "c": s(ts[-1].price, inst.tick_size),
                "v": s(sum((t.quantity for t in ts), Decimal(0)), inst.qty_step),
                "t": start,
            }
        )
    return out


def order(o: SimOrder, inst: SimInstrument, *, with_transaction_time: bool = False) -> dict[str, Any]:
    exec_inst = ["POST_ONLY"] if o.post_only else []
    row: dict[str, Any] = {
        "account_id": o.account_id,
        "order_id": o.order_id,
        "client_oid": o.client_oid,
        "order_type": o.order_type.upper(),
        "time_in_force": TIF[o.time_in_force],
        "side": o.side.value.upper(),
        "exec_inst": exec_inst,
        "quantity": s(o.quantity, inst.qty_step),
        "limit_price": s(o.price, inst.tick_size) if o.price is not None else "0",
        "order_value": s(
            o.price * o.quantity if o.price else o.notional or o.cum_value, Decimal("0.00000001")
        ),
        "maker_fee_rate": str(inst.maker_fee_rate),
        "taker_fee_rate": str(inst.taker_fee_rate),
        "avg_price": s(o.avg_price, Decimal("0.00000001")) if o.avg_price is not None else "0",
        "cumulative_quantity": s(o.filled, inst.qty_step),
        "cumulative_value": s(o.cum_value, Decimal("0.00000001")),
        "cumulative_fee": s(o.cum_fee, Decimal("0.00000001")),
        "status": o.status.value,
        "update_user_id": o.account_id,
        "order_date": datetime.fromtimestamp(o.created_ns / 1e9, UTC).strftime("%Y-%m-%d"),
        "instrument_name": o.instrument,
        "fee_instrument_name": o.fee_currency or inst.quote,
        "create_time": ms(o.created_ns),
        "create_time_ns": str(o.created_ns),
        "update_time": ms(o.updated_ns),
    }
    if o.reason:
        reason_code = codes.REJECT_CODES.get(Reject(o.reason)) if o.reason in _REASONS else None
        row["reason"] = str(reason_code) if reason_code else o.reason
    if o.notional is not None:
        row["notional"] = s(o.notional, Decimal("0.00000001"))
    if with_transaction_time:
        row["transaction_time"] = ms(o.updated_ns)
        row["transaction_time_ns"] = str(o.updated_ns)
    return row


def fill(f: SimFill, inst: SimInstrument, *, ws: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "account_id": f.account_id,
        "event_date": datetime.fromtimestamp(f.time_ns / 1e9, UTC).strftime("%Y-%m-%d"),
        "journal_type": "TRADING",
        "side": f.side.value.upper(),
        "instrument_name": f.instrument,
        "fees": s(-f.fee, Decimal("0.00000001")),
        "trade_id": f.trade_id,
        "trade_match_id": f.match_id,
        "create_time": ms(f.time_ns),
        "create_time_ns": str(f.time_ns),
        "traded_price": s(f.price, inst.tick_size),
        "traded_quantity": s(f.quantity, inst.qty_step),
        "fee_instrument_name": f.fee_currency,
        "client_oid": f.client_oid,
        "taker_side": "MAKER" if f.is_maker else "TAKER",
        "order_id": f.order_id,
    }
    row["transaction_time" if ws else "transact_time_ns"] = str(f.time_ns)
    return row


def usd_value(engine: MatchingEngine, currency: str, amount: Decimal) -> Decimal:
    if currency in STABLE:
        return amount
    symbol = f"{currency}_USD"
    if symbol in engine.instruments:
        price = engine.last_price(symbol) or engine.instruments[symbol].start_price
        return amount * price
    return Decimal(0)


def balance(engine: MatchingEngine, account: Account) -> dict[str, Any]:
    positions = []
    total_value = Decimal(0)
    available_value = Decimal(0)
    for currency, total in sorted(account.totals.items()):
        value = usd_value(engine, currency, total)
        total_value += value
        available_value += usd_value(engine, currency, account.available(currency))
        positions.append(
            {
                "instrument_name": currency,
                "quantity": format(total.normalize(), "f"),
                "market_value": s(value, Decimal("0.01")),
                "collateral_eligible": "true",
                "haircut": "0",
                "collateral_amount": s(value, Decimal("0.01")),
                "max_withdrawal_balance": format(account.available(currency).normalize(), "f"),
                "reserved_qty": format(account.holds.get(currency, Decimal(0)).normalize(), "f"),
            }
        )
    cash, avail = s(total_value, Decimal("0.01")), s(available_value, Decimal("0.01"))
    return {
        "total_available_balance": avail,
        "total_margin_balance": cash,
        "total_initial_margin": s(total_value - available_value, Decimal("0.01")),
        "total_position_im": "0",
        "total_haircut": "0",
        "total_maintenance_margin": "0",
        "total_position_cost": "0",
        "total_cash_balance": cash,
        "total_collateral_value": cash,
        "total_session_unrealized_pnl": "0",
        "instrument_name": "USD",
        "total_session_realized_pnl": "0",
        "is_liquidating": False,
        "total_effective_leverage": "0",
        "position_limit": "3000000",
        "used_position_limit": "0",
        "total_isolated_cash_balance": "0",
        "isolated_positions": [],
        "position_balances": positions,
    }
