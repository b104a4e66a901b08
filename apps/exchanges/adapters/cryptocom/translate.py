"""The one place Crypto.com values become K2's, and back: lookup tables plus small parsers.

Symbols (`BTC_USD` <-> `BTC-USD`), sides, order types, time in force, statuses, Decimal strings,
fees (K2's are a cost: positive paid, negative a rebate; see `order` and `fill` for the venue's two
signs), ms/ns -> aware UTC, and the venue's error codes (v1 and the legacy 1000x/2000x/3000x
ones) -> K2 errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    Balance,
    BookLevel,
    BookUpdate,
    Candle,
    Fill,
    Instrument,
    InstrumentStatus,
    InstrumentType,
    Liquidity,
    OrderBook,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)
from apps.exchanges.adapters.cryptocom import symbols
from apps.exchanges.adapters.cryptocom.schemas import (
    BookRow,
    CandleRow,
    InstrumentRow,
    OrderRow,
    PositionRow,
    PublicTradeRow,
    TickerRow,
    TradeRow,
    UserBalanceRow,
)

SIDE_TO_VENUE = {Side.BUY: "BUY", Side.SELL: "SELL"}
SIDE_FROM_VENUE = {v: k for k, v in SIDE_TO_VENUE.items()}
TYPE_TO_VENUE = {OrderType.LIMIT: "LIMIT", OrderType.MARKET: "MARKET"}
TYPE_FROM_VENUE = {v: k for k, v in TYPE_TO_VENUE.items()}
TIF_TO_VENUE = {
    TimeInForce.GTC: "GOOD_TILL_CANCEL",
    TimeInForce.IOC: "IMMEDIATE_OR_CANCEL",
    TimeInForce.FOK: "FILL_OR_KILL",
}
TIF_FROM_VENUE = {v: k for k, v in TIF_TO_VENUE.items()}
STATUS_FROM_VENUE = {
    "NEW": OrderStatus.NEW,
    "PENDING": OrderStatus.NEW,
    "ACTIVE": OrderStatus.OPEN,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
}
LIQUIDITY_FROM_VENUE = {"MAKER": Liquidity.MAKER, "TAKER": Liquidity.TAKER}
INSTRUMENT_TYPES = {"CCY_PAIR": InstrumentType.CRYPTO}
# K2 timeframe -> venue timeframe
TIMEFRAMES = {
    "1m": "1m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "2h": "2h",
    "4h": "4h",
    "12h": "12h",
    "1d": "1D",
    "7d": "7D",
    "14d": "14D",
    "1M": "1M",
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
    "D1": "1d",
    "D7": "7d",
    "D14": "14d",
}
TIMEFRAMES_FROM_VENUE = {v: k for k, v in TIMEFRAMES.items()} | LEGACY_TIMEFRAMES

# ---- errors -------------------------------------------------------------------------------

_ERROR_GROUPS: list[tuple[type[ex.ExchangeError], tuple[int, ...]]] = [
    (ex.AuthFailed, (40101, 10002, 10003)),
    (ex.PermissionDenied, (40103, 40104, 10005)),
    (ex.InvalidNonce, (40102, 10007)),
    (ex.RateLimited, (42901, 10006)),
    (ex.InsufficientBalance, (306, 20002)),
    (ex.DuplicateOrder, (204, 205, 20001)),
    (ex.InstrumentNotFound, (209, 30003)),
    (ex.MarketClosed, (208,)),
    (ex.OrderWouldTakeLiquidity, (43005,)),
    (ex.OrderNotFilled, (43003, 43004)),
    (ex.OrderNotFound, (40401, 212, 20005)),
    (ex.OrderNotOpen, (316,)),
    (ex.TooManyOpenOrders, (318,)),
    (
        ex.InvalidOrder,
        (
            213,
            218,
            219,
            220,
            221,
            229,
            308,
            314,
            315,
            325,
            415,
            1110,
            43012,
            *range(30004, 30010),
            *range(30011, 30018),
            30023,
            30024,
            30025,
        ),
    ),
    (ex.BadRequest, (40001, 40002, 40003, 40004, 40005, 40006, 40107, 10004, 10008, 10009, 30010)),
    (ex.ExchangeUnavailable, (50001, 10001, 40801)),
    (ex.ExchangeMaintenance, (9010001,)),
]
ERROR_CODES: dict[int, type[ex.ExchangeError]] = {code: cls for cls, group in _ERROR_GROUPS for code in group}


def error_for(
    code: int, message: str, *, http_status: int | None, result: Mapping[str, Any] | None
) -> ex.ExchangeError:
    """The K2 error for a non-zero venue code; unknown codes by HTTP class."""
    cls = ERROR_CODES.get(code)
    if cls is None:
        cls = ex.ExchangeUnavailable if (http_status or 0) >= 500 else ex.BadRequest
    return cls(
        message or f"venue error {code}",
        venue="cryptocom",
        venue_code=str(code),
        http_status=http_status,
        details=dict(result or {}),
    )


# ---- scalars -------------------------------------------------------------------------------


def dec(value: Any) -> Decimal | None:
    """A wire number (string, or int from lenient producers) as Decimal; never via float."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        value = repr(value)
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise ex.UnexpectedResponse(f"not a number: {value!r}", venue="cryptocom") from exc


def dec0(value: Any) -> Decimal:
    return dec(value) or Decimal(0)


def wire(value: Decimal) -> str:
    """A Decimal as the venue wants it: a plain string, no exponent."""
    return format(value, "f")


def ms_to_dt(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def ns_to_dt(value: Any) -> datetime:
    ns = int(value)
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).replace(microsecond=(ns // 1000) % 1_000_000)


def dt_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime; K2 times are aware UTC")
    return int(value.timestamp() * 1000)


def _time(row: Mapping[str, Any], ms_key: str, ns_key: str) -> datetime | None:
    if row.get(ns_key):
        return ns_to_dt(row[ns_key])
    if row.get(ms_key) is not None:
        return ms_to_dt(row[ms_key])
    return None


# ---- market data ----------------------------------------------------------------------------


def instrument(row: InstrumentRow) -> Instrument | None:
    """Spot pairs only (K2 trades spot on Crypto.com); other kinds return None."""
    kind = INSTRUMENT_TYPES.get(row.get("inst_type", ""))
    if kind is None:
        return None
    step = dec0(row["qty_tick_size"])
    return Instrument(
        symbol=symbols.from_venue(row["symbol"]),
        venue_symbol=row["symbol"],
        instrument_type=kind,
        base=row["base_ccy"],
        quote=row["quote_ccy"],
        tick_size=dec0(row["price_tick_size"]),
        quantity_step=step,
        min_quantity=step,  # v1 has no min-quantity field; the step is the documented minimum
        status=InstrumentStatus.OPEN if row.get("tradable", True) else InstrumentStatus.PAUSED,
    )


def ticker(row: TickerRow) -> Ticker:
    return Ticker(
        instrument=symbols.from_venue(row["i"]),
        bid=dec(row.get("b")),
        ask=dec(row.get("k")),
        last=dec(row.get("a")),
        high_24h=dec(row.get("h")),
        low_24h=dec(row.get("l")),
        volume_24h=dec0(row.get("v")),
        change_24h=dec(row.get("c")),
        time=ms_to_dt(row["t"]),
        bid_size=dec(row.get("bs")),
        ask_size=dec(row.get("ks")),
    )


def levels(rows: list[list[str]]) -> tuple[BookLevel, ...]:
    return tuple(BookLevel(dec0(r[0]), dec0(r[1]), int(r[2]) if len(r) > 2 and r[2] else 0) for r in rows)


def order_book(venue_symbol: str, row: BookRow) -> OrderBook:
    return OrderBook(
        instrument=symbols.from_venue(venue_symbol),
        bids=levels(row.get("bids", [])),
        asks=levels(row.get("asks", [])),
        time=ms_to_dt(row["t"]),
        sequence=row.get("u"),
    )


def book_update(venue_symbol: str, row: Mapping[str, Any], *, snapshot: bool) -> BookUpdate:
    sides = row if snapshot else row.get("update", {})
    return BookUpdate(
        instrument=symbols.from_venue(venue_symbol),
        is_snapshot=snapshot,
        bids=levels(sides.get("bids", [])),
        asks=levels(sides.get("asks", [])),
        time=ms_to_dt(row["t"]),
        sequence=row.get("u"),
    )


def public_trade(row: PublicTradeRow) -> Trade:
    return Trade(
        instrument=symbols.from_venue(row["i"]),
        trade_id=str(row["d"]),
        price=dec0(row["p"]),
        quantity=dec0(row["q"]),
        taker_side=SIDE_FROM_VENUE[str(row["s"]).upper()],
        time=_time(row, "t", "tn") or ms_to_dt(row["t"]),
    )


def candle(venue_symbol: str, timeframe: str, row: CandleRow) -> Candle:
    return Candle(
        instrument=symbols.from_venue(venue_symbol),
        timeframe=TIMEFRAMES_FROM_VENUE.get(timeframe, timeframe),
        start=ms_to_dt(row["t"]),
        open=dec0(row["o"]),
        high=dec0(row["h"]),
        low=dec0(row["l"]),
        close=dec0(row["c"]),
        volume=dec0(row["v"]),
    )


# ---- account and orders --------------------------------------------------------------------


def order_status(row: Mapping[str, Any]) -> OrderStatus:
    status = STATUS_FROM_VENUE.get(str(row.get("status", "")).upper())
    if status is None:
        raise ex.UnexpectedResponse(f"unknown order status {row.get('status')!r}", venue="cryptocom")
    if status is OrderStatus.OPEN and dec0(row.get("cumulative_quantity")) > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


# Reasons (the code, or its name) of a refusal K2 names with its own code.
REJECT_CODES = {"43005": ex.OrderWouldTakeLiquidity.code, "POST_ONLY_REJ": ex.OrderWouldTakeLiquidity.code}


def order(row: OrderRow) -> OrderState:
    filled = dec0(row.get("cumulative_quantity"))
    price = dec(row.get("limit_price"))
    avg = dec(row.get("avg_price"))
    status = order_status(row)
    reason = row.get("reason") or None
    return OrderState(
        venue_order_id=str(row["order_id"]),
        client_order_id=row.get("client_oid") or None,
        instrument=symbols.from_venue(row["instrument_name"]),
        side=SIDE_FROM_VENUE[row["side"].upper()],
        order_type=TYPE_FROM_VENUE.get(row.get("order_type", "").upper(), OrderType.LIMIT),
        status=status,
        quantity=dec0(row.get("quantity")),
        filled_quantity=filled,
        price=price if price else None,
        avg_fill_price=avg if avg and filled else None,
        # The order's `cumulative_fee` is already a cost (positive paid, e.g. "0.001501438200" on a
        # filled BTC_USD order), unlike a trade's `fees` (negative paid): kept as it is, so a
        # rebate stays negative, as the fills' sum of `fill().fee` is.
        fees=dec0(row.get("cumulative_fee")),
        fee_currency=row.get("fee_instrument_name") or None,
        created_at=_time(row, "create_time", "create_time_ns"),
        updated_at=_time(row, "update_time", "transaction_time_ns"),
        time_in_force=TIF_FROM_VENUE.get(row.get("time_in_force", "")),
        reason=reason,
        reject_code=REJECT_CODES.get(str(reason)) if status is OrderStatus.REJECTED else None,
    )


def fill(row: TradeRow) -> Fill:
    return Fill(
        venue_trade_id=str(row["trade_id"]),
        venue_order_id=str(row["order_id"]),
        client_order_id=row.get("client_oid") or None,
        instrument=symbols.from_venue(row["instrument_name"]),
        side=SIDE_FROM_VENUE[row["side"].upper()],
        quantity=dec0(row["traded_quantity"]),
        price=dec0(row["traded_price"]),
        fee=-dec0(row.get("fees")),  # net fee, negative for a deduction: a cost here; a rebate < 0
        fee_currency=row.get("fee_instrument_name") or None,
        liquidity=LIQUIDITY_FROM_VENUE.get(str(row.get("taker_side", "")).upper()),
        time=_time(row, "create_time", "create_time_ns") or ms_to_dt(row["create_time"]),
    )


def balances(row: UserBalanceRow) -> list[Balance]:
    out = []
    for pb in row.get("position_balances", []):
        total = dec0(pb.get("quantity"))
        hold = dec0(pb.get("reserved_qty"))
        out.append(Balance(currency=pb["instrument_name"], total=total, available=total - hold, on_hold=hold))
    return out


def position(row: PositionRow) -> Position:
    return Position(
        instrument=symbols.from_venue(row["instrument_name"]),
        quantity=dec0(row.get("quantity")),
        cost=dec(row.get("cost")),
        unrealized_pnl=dec(row.get("open_position_pnl")),
        realized_pnl=dec(row.get("session_pnl")),
        updated_at=ms_to_dt(row["update_timestamp_ms"]) if row.get("update_timestamp_ms") else None,
    )


def order_params(request: OrderRequest) -> dict[str, Any]:
    """`private/create-order` params for a K2 order request: every number a string."""
    if request.outcome is not None:
        raise ex.InvalidOrder("Crypto.com orders have no outcome", venue="cryptocom")
    params: dict[str, Any] = {
        "instrument_name": symbols.to_venue(request.instrument),
        "side": SIDE_TO_VENUE[request.side],
        "type": TYPE_TO_VENUE[request.order_type],
        "client_oid": request.client_order_id,
    }
    if request.order_type is OrderType.LIMIT:
        if request.price is None:
            raise ex.InvalidOrder("a limit order needs a price", venue="cryptocom")
        params["price"] = wire(request.price)
        params["time_in_force"] = TIF_TO_VENUE[request.time_in_force]
    if request.notional is not None and request.order_type is OrderType.MARKET and request.side is Side.BUY:
        params["notional"] = wire(request.notional)
    else:
        params["quantity"] = wire(request.quantity)
    exec_inst = []
    if request.post_only:
        exec_inst.append("POST_ONLY")
    if request.reduce_only:
        exec_inst.append("REDUCE_ONLY")
    if exec_inst:
        params["exec_inst"] = exec_inst
    return params
