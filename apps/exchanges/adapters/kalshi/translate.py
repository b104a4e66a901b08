"""The one place Kalshi values become K2's, and back.

- Prices: K2 shows a contract's price in dollars (0.01-0.99) of the contract it names (`outcome`
  yes/no); Kalshi's V2 order book speaks one YES price with `bid`/`ask`. One table does it:
  buy YES p -> bid p, buy NO q -> ask 1-q, sell YES p -> ask p, sell NO q -> bid 1-q.
- Fixed-point first (`*_dollars` 4 dp, `*_fp` 2 dp), era-A integers (cents, whole contracts) as
  the fallback; balances and settlement revenue are integer cents. Everything `Decimal`.
- Market status words, order statuses, time in force, error codes (snake_case bodies) -> K2.
- Object times are RFC3339 strings; `ts` fields seconds; `ts_ms` milliseconds: all -> aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    Balance,
    BookLevel,
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
    Outcome,
    Position,
    Side,
    Ticker,
    TimeInForce,
    Trade,
)
from apps.exchanges.adapters.kalshi.schemas import (
    BalanceRow,
    CandleRow,
    CreateOrderV2Response,
    EventRow,
    FillRow,
    LifecycleRow,
    MarketPositionRow,
    MarketRow,
    OrderRow,
    SeriesRow,
    SettlementRow,
    TradeRow,
)
from apps.exchanges.adapters.kalshi.types import (
    KalshiEvent,
    KalshiMarket,
    KalshiSeries,
    MarketLifecycle,
    Settlement,
)

VENUE = "kalshi"
ONE = Decimal(1)
ZERO = Decimal(0)
CENT = Decimal("0.01")
MIN_PRICE, MAX_PRICE = Decimal("0.01"), Decimal("0.99")
POST_ONLY_CROSS = "PostOnlyCrossCancel"  # the cancellation reason of a post-only order that would cross
PRICE_Q = Decimal("0.0001")  # `*_dollars` wire precision
COUNT_Q = Decimal("0.01")  # `*_fp` wire precision

# K2 (side, outcome) -> (V2 book side, does the YES price mirror the K2 price?)
BOOK_SIDE: dict[tuple[Side, Outcome], tuple[str, bool]] = {
    (Side.BUY, Outcome.YES): ("bid", False),
    (Side.BUY, Outcome.NO): ("ask", True),
    (Side.SELL, Outcome.YES): ("ask", False),
    (Side.SELL, Outcome.NO): ("bid", True),
}
# (outcome side, book side) -> K2 side, for rows without the legacy `action`
SIDE_FROM_BOOK: dict[tuple[str, str], Side] = {
    ("yes", "bid"): Side.BUY,
    ("yes", "ask"): Side.SELL,
    ("no", "ask"): Side.BUY,
    ("no", "bid"): Side.SELL,
}
TIF_TO_VENUE = {
    TimeInForce.GTC: "good_till_canceled",
    TimeInForce.IOC: "immediate_or_cancel",
    TimeInForce.FOK: "fill_or_kill",
}
TIF_FROM_VENUE = {v: k for k, v in TIF_TO_VENUE.items()}
ORDER_STATUS = {
    "resting": OrderStatus.OPEN,
    "executed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELLED,
    "cancelled": OrderStatus.CANCELLED,
    "pending": OrderStatus.NEW,
}
# market `status` (response vocabulary, both 2025 and 2026 words) -> K2
MARKET_STATUS = {
    "initialized": InstrumentStatus.PAUSED,
    "unopened": InstrumentStatus.PAUSED,
    "active": InstrumentStatus.OPEN,
    "open": InstrumentStatus.OPEN,
    "inactive": InstrumentStatus.PAUSED,
    "paused": InstrumentStatus.PAUSED,
    "closed": InstrumentStatus.CLOSED,
    "determined": InstrumentStatus.CLOSED,
    "disputed": InstrumentStatus.CLOSED,
    "amended": InstrumentStatus.CLOSED,
    "finalized": InstrumentStatus.SETTLED,
    "settled": InstrumentStatus.SETTLED,
}
# K2 status filter -> the `GET /markets?status=` filter vocabulary
MARKET_STATUS_FILTER = {
    InstrumentStatus.OPEN: "open",
    InstrumentStatus.PAUSED: "paused",
    InstrumentStatus.CLOSED: "closed",
    InstrumentStatus.SETTLED: "settled",
}
CANDLE_PERIODS = {"1m": 1, "1h": 60, "1d": 1440}

# ---- numbers and times ----------------------------------------------------------------------


def dec(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def dec0(value: Any) -> Decimal:
    return dec(value) or ZERO


def price_wire(value: Decimal) -> str:
    return str(value.quantize(PRICE_Q, rounding=ROUND_HALF_UP))


def count_wire(value: Decimal) -> str:
    return str(value.quantize(COUNT_Q, rounding=ROUND_HALF_UP))


def dollars(row: Mapping[str, Any], name: str, *, dollars_key: str | None = None) -> Decimal | None:
    """`<name>_dollars` (fixed-point) first, then the era-A integer cents `<name>`."""
    value = dec(row.get(dollars_key or f"{name}_dollars"))
    if value is not None:
        return value
    cents = dec(row.get(name))
    return cents / 100 if cents is not None else None


def count(row: Mapping[str, Any], name: str) -> Decimal | None:
    """`<name>_fp` (fixed-point contracts) first, then the era-A integer `<name>`."""
    value = dec(row.get(f"{name}_fp"))
    return value if value is not None else dec(row.get(name))


def cents_to_dollars(value: Any) -> Decimal:
    return dec0(value) / 100


def parse_time(value: Any) -> datetime | None:
    """RFC3339 string, or a Unix time in s / ms (by magnitude)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.lstrip("-").isdigit()):
        number = int(value)
        return datetime.fromtimestamp(number / 1000 if number >= 10**11 else number, tz=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def row_time(row: Mapping[str, Any], *keys: str) -> datetime | None:
    for key in keys:
        if (value := parse_time(row.get(key))) is not None:
            return value
    return None


def dt_to_s(value: datetime) -> int:
    return int(value.timestamp())


def now() -> datetime:
    return datetime.now(UTC)


def outcome_of(value: Any) -> Outcome | None:
    text = str(value or "").lower()
    return Outcome(text) if text in ("yes", "no") else None


# ---- prices: K2 (side, outcome, price) <-> V2 (book side, YES price) ---------------------------


def to_book(side: Side, outcome: Outcome, price: Decimal) -> tuple[str, Decimal]:
    """K2 order -> V2 `side` (bid/ask) and the YES price."""
    book_side, mirrored = BOOK_SIDE[(side, outcome)]
    return book_side, (ONE - price) if mirrored else price


def outcome_price(yes_price: Decimal | None, outcome: Outcome) -> Decimal | None:
    if yes_price is None:
        return None
    return yes_price if outcome is Outcome.YES else ONE - yes_price


def check_price(price: Decimal) -> None:
    if not MIN_PRICE <= price <= MAX_PRICE:
        raise ex.InvalidOrder(f"price {price} is outside 0.01-0.99 dollars", venue=VENUE)


def order_body(request: OrderRequest, *, quantity_step: Decimal = ONE) -> dict[str, Any]:
    """`POST /portfolio/events/orders` body. Market orders become marketable IOC limits (Kalshi
    has no market type since 2026-02): at the request's price if it has one (a protection
    price: the worst the order may fill at), else at the contract's bound (0.99 to buy, 0.01 to
    sell)."""
    if request.outcome is None:
        raise ex.InvalidOrder("a Kalshi order needs an outcome (yes or no)", venue=VENUE)
    if request.quantity <= 0 or request.quantity % quantity_step != 0:
        raise ex.InvalidOrder(f"count {request.quantity} is not a multiple of {quantity_step}", venue=VENUE)
    if request.notional is not None:
        raise ex.InvalidOrder("Kalshi orders are sized in contracts, not notional", venue=VENUE)
    tif = request.time_in_force
    if request.order_type is OrderType.MARKET:
        price = (
            request.price
            if request.price is not None
            else MAX_PRICE
            if request.side is Side.BUY
            else MIN_PRICE
        )
        tif = TimeInForce.IOC if tif is TimeInForce.GTC else tif
    else:
        if request.price is None:
            raise ex.InvalidOrder("a limit order needs a price", venue=VENUE)
        price = request.price
    check_price(price)
    if price % CENT != 0:
        raise ex.InvalidOrder(f"price {price} is not on the 0.01 grid", venue=VENUE)
    if request.post_only and tif is not TimeInForce.GTC:
        raise ex.InvalidOrder("post-only orders must be good-till-cancelled", venue=VENUE)
    book_side, yes_price = to_book(request.side, request.outcome, price)
    body: dict[str, Any] = {
        "ticker": request.instrument,
        "side": book_side,
        "count": count_wire(request.quantity),
        "price": price_wire(yes_price),
        "time_in_force": TIF_TO_VENUE[tif],
        "self_trade_prevention_type": "taker_at_cross",
        "client_order_id": request.client_order_id,
    }
    if request.post_only:
        body["post_only"] = True
    if request.reduce_only:
        body["reduce_only"] = True
    return body


def order_from_ack(request: OrderRequest, ack: CreateOrderV2Response) -> OrderState:
    """The V2 create answer (counts, average fill price in YES terms) as an `OrderState`."""
    assert request.outcome is not None
    filled = dec0(ack.get("fill_count"))
    remaining = dec(ack.get("remaining_count"))
    remaining = request.quantity - filled if remaining is None else remaining
    avg_yes = dec(ack.get("average_fill_price"))
    _, mirrored = BOOK_SIDE[(request.side, request.outcome)]
    avg = None if avg_yes is None or not filled else ((ONE - avg_yes) if mirrored else avg_yes)
    fee_each = dec0(ack.get("average_fee_paid"))
    reason = None
    if remaining > 0:
        status = OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.OPEN
    elif filled >= request.quantity:
        status = OrderStatus.FILLED
    elif request.post_only and not filled:
        status, reason = OrderStatus.REJECTED, POST_ONLY_CROSS
    else:
        status = OrderStatus.CANCELLED
        reason = "not filled in full; the rest was cancelled" if filled or tif_kills(request) else None
    ts = parse_time(ack.get("ts_ms"))
    return OrderState(
        venue_order_id=str(ack.get("order_id", "")),
        client_order_id=str(ack.get("client_order_id") or request.client_order_id),
        instrument=request.instrument,
        side=request.side,
        order_type=request.order_type,
        status=status,
        quantity=request.quantity,
        filled_quantity=filled,
        price=request.price,
        avg_fill_price=avg,
        fees=(fee_each * filled).quantize(PRICE_Q) if filled else ZERO,
        fee_currency="USD",
        created_at=ts,
        updated_at=ts,
        time_in_force=request.time_in_force,
        outcome=request.outcome,
        reason=reason,
        reject_code=_reject_code(status, reason),
    )


def _reject_code(status: OrderStatus, reason: str | None) -> str | None:
    """K2's code for a refusal the venue explains (`OrderState.reject_code`)."""
    if status is OrderStatus.REJECTED and reason == POST_ONLY_CROSS:
        return ex.OrderWouldTakeLiquidity.code
    return None


def tif_kills(request: OrderRequest) -> bool:
    return request.order_type is OrderType.MARKET or request.time_in_force is not TimeInForce.GTC


def _side_and_outcome(row: Mapping[str, Any]) -> tuple[Side, Outcome]:
    legacy_side, action = str(row.get("side", "")).lower(), str(row.get("action", "")).lower()
    if legacy_side in ("yes", "no") and action in ("buy", "sell"):
        return Side(action), Outcome(legacy_side)
    outcome = str(row.get("outcome_side", "") or row.get("purchased_side", "")).lower()
    book_side = str(row.get("book_side", "") or legacy_side).lower()
    if outcome not in ("yes", "no"):
        outcome = "yes" if book_side == "bid" else "no"
    side = SIDE_FROM_BOOK.get((outcome, book_side))
    if side is None:
        raise ex.UnexpectedResponse(f"order without a side: {dict(row)}", venue=VENUE)
    return side, Outcome(outcome)


def _row_price(row: Mapping[str, Any], outcome: Outcome) -> Decimal | None:
    if outcome is Outcome.YES:
        price = dollars(row, "yes_price")
        if price is None:
            price = dec(row.get("yes_price_fixed"))
        return price
    price = dollars(row, "no_price")
    if price is None:
        price = dec(row.get("no_price_fixed"))
    if price is None:
        return outcome_price(dollars(row, "yes_price") or dec(row.get("yes_price_fixed")), outcome)
    return price


def order(row: OrderRow | Mapping[str, Any]) -> OrderState:
    side, outcome = _side_and_outcome(row)
    filled = count(row, "fill_count") or ZERO
    remaining = count(row, "remaining_count") or ZERO
    initial = count(row, "initial_count")
    quantity = initial if initial is not None else filled + remaining
    venue_status = str(row.get("status", "")).lower()
    status = ORDER_STATUS.get(venue_status)
    if status is None:
        raise ex.UnexpectedResponse(f"unknown order status {venue_status!r}", venue=VENUE)
    if status is OrderStatus.OPEN and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    reason = str(row.get("cancellation_reason") or "") or None
    if status is OrderStatus.CANCELLED and reason == POST_ONLY_CROSS and not filled:
        status = OrderStatus.REJECTED  # it never rested: refused, as the create answer says
    cost = dec0(dollars(row, "taker_fill_cost")) + dec0(dollars(row, "maker_fill_cost"))
    fees = dec0(dollars(row, "taker_fees")) + dec0(dollars(row, "maker_fees"))
    return OrderState(
        venue_order_id=str(row.get("order_id", "")),
        client_order_id=str(row.get("client_order_id") or "") or None,
        instrument=str(row.get("ticker") or row.get("market_ticker") or ""),
        side=side,
        order_type=OrderType.LIMIT,
        status=status,
        quantity=quantity,
        filled_quantity=filled,
        price=_row_price(row, outcome),
        avg_fill_price=(cost / filled).quantize(PRICE_Q) if filled and cost else None,
        fees=fees,
        fee_currency="USD",
        created_at=row_time(row, "created_time", "created_ts_ms"),
        updated_at=row_time(row, "last_update_time", "last_updated_ts_ms", "created_time"),
        time_in_force=None,
        outcome=outcome,
        reason=reason,
        reject_code=_reject_code(status, reason),
    )


def fill(row: FillRow | Mapping[str, Any]) -> Fill:
    side, outcome = _side_and_outcome(row)
    price = _row_price(row, outcome)
    if price is None:
        raise ex.UnexpectedResponse("fill without a price", venue=VENUE)
    taker = row.get("is_taker")
    return Fill(
        venue_trade_id=str(row.get("fill_id") or row.get("trade_id") or ""),
        venue_order_id=str(row.get("order_id", "")),
        client_order_id=str(row.get("client_order_id") or "") or None,
        instrument=str(row.get("ticker") or row.get("market_ticker") or ""),
        side=side,
        quantity=count(row, "count") or ZERO,
        price=price,
        fee=dec0(row.get("fee_cost")),
        fee_currency="USD",
        liquidity=None if taker is None else (Liquidity.TAKER if taker else Liquidity.MAKER),
        time=row_time(row, "created_time", "ts_ms", "ts") or now(),
        outcome=outcome,
    )


# ---- markets --------------------------------------------------------------------------------


def tick_size(row: MarketRow | Mapping[str, Any]) -> Decimal:
    steps = [dec(r.get("step")) for r in row.get("price_ranges") or []]
    known = [s for s in steps if s]
    if known:
        return max(known)  # whole cents are valid everywhere; K2 trades on the coarsest grid
    ticks = dec(row.get("tick_size"))
    return ticks / 100 if ticks else CENT


def market_status(row: Mapping[str, Any]) -> InstrumentStatus:
    return MARKET_STATUS.get(str(row.get("status", "")).lower(), InstrumentStatus.CLOSED)


def instrument(row: MarketRow | Mapping[str, Any]) -> Instrument:
    step = COUNT_Q if row.get("fractional_trading_enabled") else ONE
    return Instrument(
        symbol=str(row["ticker"]),
        venue_symbol=str(row["ticker"]),
        instrument_type=InstrumentType.EVENT,
        base=str(row["ticker"]),
        quote="USD",
        tick_size=tick_size(row),
        quantity_step=step,
        min_quantity=step,
        status=market_status(row),
        event_ticker=str(row.get("event_ticker") or "") or None,
        close_time=row_time(row, "close_time"),
        settle_time=row_time(row, "settlement_ts", "expected_expiration_time", "latest_expiration_time"),
    )


def market(row: MarketRow | Mapping[str, Any]) -> KalshiMarket:
    result = outcome_of(row.get("result"))
    return KalshiMarket(
        ticker=str(row["ticker"]),
        event_ticker=str(row.get("event_ticker", "")),
        title=str(row.get("title", "")),
        yes_sub_title=str(row.get("yes_sub_title", "")),
        venue_status=str(row.get("status", "")),
        status=market_status(row),
        open_time=row_time(row, "open_time"),
        close_time=row_time(row, "close_time"),
        settle_time=row_time(row, "settlement_ts", "expected_expiration_time", "latest_expiration_time"),
        result=result,
        yes_bid=_nonzero(dollars(row, "yes_bid")),
        yes_ask=_ask(dollars(row, "yes_ask")),
        last_price=_nonzero(dollars(row, "last_price")),
        volume=count(row, "volume") or ZERO,
        open_interest=count(row, "open_interest") or ZERO,
        tick_size=tick_size(row),
    )


def event(row: EventRow | Mapping[str, Any], markets: list[Any] | None = None) -> KalshiEvent:
    nested = markets if markets is not None else row.get("markets") or []
    return KalshiEvent(
        event_ticker=str(row.get("event_ticker", "")),
        series_ticker=str(row.get("series_ticker", "")),
        title=str(row.get("title", "")),
        sub_title=str(row.get("sub_title", "")),
        mutually_exclusive=bool(row.get("mutually_exclusive", False)),
        markets=tuple(market(m) for m in nested),
    )


def series(row: SeriesRow | Mapping[str, Any]) -> KalshiSeries:
    return KalshiSeries(
        ticker=str(row.get("ticker", "")),
        title=str(row.get("title", "")),
        category=str(row.get("category", "")),
        frequency=str(row.get("frequency", "")),
        fee_type=str(row.get("fee_type", "")),
        fee_multiplier=dec(row.get("fee_multiplier")) or ONE,
    )


def _nonzero(value: Decimal | None) -> Decimal | None:
    return value if value else None


def _ask(value: Decimal | None) -> Decimal | None:
    """An empty YES ask side reads as 1.00 (or 0 in some eras): no ask."""
    return value if value and value < ONE else None


def ticker(row: MarketRow | Mapping[str, Any]) -> Ticker:
    last = _nonzero(dollars(row, "last_price"))
    previous = _nonzero(dollars(row, "previous_price"))
    return Ticker(
        instrument=str(row.get("ticker") or row.get("market_ticker") or ""),
        bid=_nonzero(dollars(row, "yes_bid")),
        ask=_ask(dollars(row, "yes_ask")),
        last=last,
        high_24h=None,
        low_24h=None,
        volume_24h=count(row, "volume_24h") or count(row, "volume") or ZERO,
        change_24h=(last - previous) if last is not None and previous is not None else None,
        time=row_time(row, "updated_time", "ts_ms", "ts") or now(),
        bid_size=count(row, "yes_bid_size"),
        ask_size=count(row, "yes_ask_size"),
    )


def ws_ticker(msg: Mapping[str, Any]) -> Ticker:
    """WS `ticker`: `price_dollars` is the last trade price."""
    last = _nonzero(dec(msg.get("price_dollars")) or (dec(msg.get("price")) or ZERO) / 100)
    return Ticker(
        instrument=str(msg.get("market_ticker", "")),
        bid=_nonzero(dollars(msg, "yes_bid")),
        ask=_ask(dollars(msg, "yes_ask")),
        last=last,
        high_24h=None,
        low_24h=None,
        volume_24h=count(msg, "volume") or ZERO,
        change_24h=None,
        time=row_time(msg, "ts_ms", "ts") or now(),
        bid_size=count(msg, "yes_bid_size"),
        ask_size=count(msg, "yes_ask_size"),
    )


def book_side_levels(rows: Any) -> dict[Decimal, Decimal]:
    """`[[price, size], ...]` (strings in era C, cents/ints in era A) -> {price: size}."""
    out: dict[Decimal, Decimal] = {}
    for row in rows or []:
        price, size = dec(row[0]), dec(row[1])
        if price is None or size is None:
            continue
        if price >= 1 and price == price.to_integral_value():  # era-A cents
            price = price / 100
        out[price] = size
    return out


def orderbook_sides(payload: Mapping[str, Any]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """YES bids and NO bids of a REST `orderbook_fp` / `orderbook` or a WS snapshot."""
    for yes_key, no_key in (
        ("yes_dollars_fp", "no_dollars_fp"),
        ("yes_dollars", "no_dollars"),
        ("yes", "no"),
    ):
        if yes_key in payload or no_key in payload:
            return book_side_levels(payload.get(yes_key)), book_side_levels(payload.get(no_key))
    return {}, {}


def yes_book(
    instrument_name: str,
    yes_bids: Mapping[Decimal, Decimal],
    no_bids: Mapping[Decimal, Decimal],
    *,
    depth: int | None = None,
    time: datetime | None = None,
    sequence: int | None = None,
) -> OrderBook:
    """K2 books are in YES terms: bids = YES bids, asks = NO bids at 1 - price."""
    bids = sorted(((p, q) for p, q in yes_bids.items() if q > 0), reverse=True)
    asks = sorted((ONE - p, q) for p, q in no_bids.items() if q > 0)
    if depth:
        bids, asks = bids[:depth], asks[:depth]
    return OrderBook(
        instrument=instrument_name,
        bids=tuple(BookLevel(p, q) for p, q in bids),
        asks=tuple(BookLevel(p, q) for p, q in asks),
        time=time or now(),
        sequence=sequence,
    )


def trade(row: TradeRow | Mapping[str, Any]) -> Trade:
    taker_book = str(row.get("taker_book_side", "")).lower()
    taker_side = str(row.get("taker_side", "") or row.get("taker_outcome_side", "")).lower()
    side = Side.BUY if taker_book == "bid" or (not taker_book and taker_side == "yes") else Side.SELL
    price = dollars(row, "yes_price")
    return Trade(
        instrument=str(row.get("ticker") or row.get("market_ticker") or ""),
        trade_id=str(row.get("trade_id", "")),
        price=price if price is not None else ZERO,
        quantity=count(row, "count") or ZERO,
        taker_side=side,
        time=row_time(row, "created_time", "ts_ms", "ts") or now(),
    )


def candle(
    instrument_name: str, timeframe: str, minutes: int, row: CandleRow | Mapping[str, Any]
) -> Candle | None:
    price = row.get("price") or {}
    values = [dec(price.get(f"{k}_dollars", price.get(k))) for k in ("open", "high", "low", "close")]
    if any(v is None for v in values):
        return None  # no trades in the period
    end = parse_time(row.get("end_period_ts")) or now()
    start = datetime.fromtimestamp(end.timestamp() - minutes * 60, tz=UTC)
    o, h, low, c = (v or ZERO for v in values)
    return Candle(instrument_name, timeframe, start, o, h, low, c, count(row, "volume") or ZERO)


# ---- account --------------------------------------------------------------------------------


def balance(row: BalanceRow | Mapping[str, Any], resting_cents: Any = 0) -> Balance:
    available = dec(row.get("balance_dollars"))
    if available is None:
        available = cents_to_dollars(row.get("balance"))
    on_hold = cents_to_dollars(resting_cents)
    return Balance(currency="USD", total=available + on_hold, available=available, on_hold=on_hold)


def position(row: MarketPositionRow | Mapping[str, Any]) -> Position:
    signed = count(row, "position") or ZERO
    exposure = dollars(row, "market_exposure")
    if exposure is None:
        exposure = dollars(row, "position_cost")
    return Position(
        instrument=str(row.get("ticker") or row.get("market_ticker") or ""),
        quantity=signed,
        cost=exposure,
        unrealized_pnl=None,
        realized_pnl=dollars(row, "realized_pnl"),
        updated_at=row_time(row, "last_updated_ts", "ts_ms"),
        outcome=None if not signed else (Outcome.YES if signed > 0 else Outcome.NO),
    )


def ws_position(msg: Mapping[str, Any]) -> Position:
    """WS `market_position`: era-A integers there are centi-cents (1/10,000 $)."""
    signed = count(msg, "position") or ZERO
    cost = dec(msg.get("position_cost_dollars"))
    if cost is None and msg.get("position_cost") is not None:
        cost = dec0(msg.get("position_cost")) / 10_000
    realized = dec(msg.get("realized_pnl_dollars"))
    if realized is None and msg.get("realized_pnl") is not None:
        realized = dec0(msg.get("realized_pnl")) / 10_000
    return Position(
        instrument=str(msg.get("market_ticker", "")),
        quantity=signed,
        cost=cost,
        unrealized_pnl=None,
        realized_pnl=realized,
        updated_at=row_time(msg, "ts_ms", "ts") or now(),
        outcome=None if not signed else (Outcome.YES if signed > 0 else Outcome.NO),
    )


def settlement(row: SettlementRow | Mapping[str, Any]) -> Settlement:
    return Settlement(
        instrument=str(row.get("ticker", "")),
        event_ticker=str(row.get("event_ticker", "")),
        result=outcome_of(row.get("market_result")),
        yes_count=count(row, "yes_count") or ZERO,
        no_count=count(row, "no_count") or ZERO,
        revenue=cents_to_dollars(row.get("revenue")),
        fee=dec0(row.get("fee_cost")),
        time=row_time(row, "settled_time"),
    )


def lifecycle(msg: LifecycleRow | Mapping[str, Any]) -> MarketLifecycle:
    return MarketLifecycle(
        instrument=str(msg.get("market_ticker", "")),
        event_type=str(msg.get("event_type", "")),
        result=outcome_of(msg.get("result")),
        close_time=parse_time(msg.get("close_ts")),
        settled_time=parse_time(msg.get("settled_ts")),
        settlement_value=dec(msg.get("settlement_value")),
        time=row_time(msg, "settled_ts", "determination_ts", "close_ts", "open_ts") or now(),
    )


# ---- errors ---------------------------------------------------------------------------------

ERROR_CODES: dict[str, type[ex.ExchangeError]] = {
    "authentication_error": ex.AuthFailed,
    "unauthorized": ex.AuthFailed,
    "invalid_api_key": ex.AuthFailed,
    "forbidden": ex.PermissionDenied,
    "insufficient_balance": ex.InsufficientBalance,
    "insufficient_funds": ex.InsufficientBalance,
    "market_closed": ex.MarketClosed,
    "market_inactive": ex.MarketClosed,
    "market_not_open": ex.MarketClosed,
    "trading_is_paused": ex.MarketClosed,
    "exchange_paused": ex.ExchangeMaintenance,
    "exchange_closed": ex.ExchangeMaintenance,
    "invalid_order": ex.InvalidOrder,
    "invalid_price": ex.InvalidOrder,
    "invalid_count": ex.InvalidOrder,
    "post_only_cross": ex.OrderWouldTakeLiquidity,
    "reduce_only_no_position": ex.InvalidOrder,
    "order_already_exists": ex.DuplicateOrder,
    "duplicate_client_order_id": ex.DuplicateOrder,
    "order_not_found": ex.OrderNotFound,
    "not_found": ex.OrderNotFound,
    "order_not_resting": ex.OrderNotOpen,
    "market_not_found": ex.InstrumentNotFound,
    "invalid_parameters": ex.BadRequest,
    "missing_parameters": ex.BadRequest,
    "bad_request": ex.BadRequest,
    "too_many_open_orders": ex.TooManyOpenOrders,
    "internal_server_error": ex.ExchangeUnavailable,
    "service_unavailable": ex.ExchangeUnavailable,
}


def error_for(status: int, body: Any) -> ex.ExchangeError:
    """A non-2xx answer -> a K2 error. Bodies: `{"error": {code, message, details}}`, or the bare
    429 `{"error": "too many requests"}`."""
    err = body.get("error") if isinstance(body, Mapping) else None
    code, message = "", ""
    details: dict[str, Any] = {}
    if isinstance(err, Mapping):
        code = str(err.get("code", "")).lower()
        message = str(err.get("message", ""))
        if err.get("details"):
            details["details"] = err.get("details")
    elif isinstance(err, str):
        message = err
    if status == 429:
        return ex.RateLimited(
            message or "too many requests", venue=VENUE, venue_code=code or "429", http_status=429
        )
    cls = ERROR_CODES.get(code)
    if cls is None:
        if status in (401,):
            cls = ex.AuthFailed
        elif status == 403:
            cls = ex.PermissionDenied
        elif status == 404:
            cls = ex.OrderNotFound
        elif status == 408:  # a proxy's or gateway's wait ran out: may work on a retry
            cls = ex.ExchangeTimeout
        elif status >= 500:
            cls = ex.ExchangeUnavailable
        else:
            cls = ex.BadRequest
    return cls(
        message or code or f"HTTP {status}",
        venue=VENUE,
        venue_code=code or str(status),
        http_status=status,
        details=details,
    )
