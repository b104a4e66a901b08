"""The venue-neutral exchange interface: normalised types and the `ExchangeAdapter` contract.

Every venue (Crypto.com, Kalshi, ...) implements `ExchangeAdapter` and speaks only these types to
the rest of K2. Amounts are `Decimal`, times are aware UTC `datetime`s, instruments are canonical
(`BTC-USD`, or Kalshi market tickers as Kalshi writes them). Nothing here imports Django.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypedDict, TypeVar


class InstrumentType(enum.StrEnum):
    CRYPTO = "crypto"
    EVENT = "event"


class InstrumentStatus(enum.StrEnum):
    OPEN = "open"
    PAUSED = "paused"
    CLOSED = "closed"
    SETTLED = "settled"


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class Outcome(enum.StrEnum):
    """The contract side of an event order; crypto orders have none."""

    YES = "yes"
    NO = "no"


class OrderStatus(enum.StrEnum):
    """Normalised order lifecycle. `new` = accepted, not yet working; terminal: filled and after."""

    NEW = "new"
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class Liquidity(enum.StrEnum):
    MAKER = "maker"
    TAKER = "taker"


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable instrument. Event fields are set for `event` instruments only."""

    symbol: str
    venue_symbol: str
    instrument_type: InstrumentType
    base: str
    quote: str
    tick_size: Decimal
    quantity_step: Decimal
    min_quantity: Decimal
    status: InstrumentStatus
    event_ticker: str | None = None
    close_time: datetime | None = None
    settle_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Ticker:
    """Top of book and 24 h statistics. `last` is None before the first trade."""

    instrument: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    high_24h: Decimal | None
    low_24h: Decimal | None
    volume_24h: Decimal
    change_24h: Decimal | None
    time: datetime
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    quantity: Decimal
    orders: int = 0


@dataclass(frozen=True, slots=True)
class OrderBook:
    """A book snapshot: bids best (highest) first, asks best (lowest) first."""

    instrument: str
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    time: datetime
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade print. `taker_side` is the aggressor's side."""

    instrument: str
    trade_id: str
    price: Decimal
    quantity: Decimal
    taker_side: Side
    time: datetime


@dataclass(frozen=True, slots=True)
class Candle:
    instrument: str
    timeframe: str
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """An order to submit. `client_order_id` is the idempotency key and must always be set."""

    instrument: str
    side: Side
    order_type: OrderType
    quantity: Decimal
    client_order_id: str
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reduce_only: bool = False
    outcome: Outcome | None = None
    notional: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderState:
    """The venue's view of one order, normalised."""

    venue_order_id: str
    client_order_id: str | None
    instrument: str
    side: Side
    order_type: OrderType
    status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal
    price: Decimal | None
    avg_fill_price: Decimal | None
    fees: Decimal
    fee_currency: str | None
    created_at: datetime | None
    updated_at: datetime | None
    time_in_force: TimeInForce | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    # A refusal the venue explains, as K2's error code (the `errors` class's `code`), e.g.
    # POST_ONLY_WOULD_TAKE; None: unexplained (K2 says EXCHANGE_REJECTED).
    reject_code: str | None = None

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of our orders. `fee` is a cost: positive means paid."""

    venue_trade_id: str
    venue_order_id: str
    client_order_id: str | None
    instrument: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    liquidity: Liquidity | None
    time: datetime
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """One currency of the account: `total = available + on_hold`."""

    currency: str
    total: Decimal
    available: Decimal
    on_hold: Decimal


@dataclass(frozen=True, slots=True)
class Position:
    """A derivative or event position. Quantity is signed (negative = short / NO on Kalshi)."""

    instrument: str
    quantity: Decimal
    cost: Decimal | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal | None
    updated_at: datetime | None
    outcome: Outcome | None = None


# ---- streaming ------------------------------------------------------------------------------


class MarketChannel(enum.StrEnum):
    TICKER = "ticker"
    TRADES = "trades"
    BOOK = "book"
    CANDLES = "candles"


@dataclass(frozen=True, slots=True)
class MarketSubscription:
    channel: MarketChannel
    instrument: str
    depth: int | None = None
    timeframe: str | None = None


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """A book message: a snapshot (`is_snapshot`) or a delta in which quantity 0 deletes a level.

    The adapter has already checked the sequence; after a gap it resubscribes and the next event
    for that instrument is a fresh snapshot.
    """

    instrument: str
    is_snapshot: bool
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    time: datetime
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    balances: tuple[Balance, ...]
    time: datetime


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """Connection lifecycle on a stream: connected (after auth + subscribe), disconnected, resync."""

    state: Literal["connected", "disconnected", "resync"]
    attempt: int
    detail: str = ""


MarketEvent = Ticker | Trade | BookUpdate | Candle | StreamStatus
UserEvent = OrderState | Fill | BalanceUpdate | StreamStatus


T_co = TypeVar("T_co", covariant=True)


class EventStream(Protocol[T_co]):
    """An async iterator of events that owns a connection; use as `async with` then `async for`."""

    def __aiter__(self) -> AsyncIterator[T_co]: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def close(self) -> None: ...


class LocalOrderBook:
    """Applies `BookUpdate`s to keep a full book; venue-neutral helper for stream consumers."""

    def __init__(self, instrument: str) -> None:
        self.instrument = instrument
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.sequence: int | None = None

    def apply(self, update: BookUpdate) -> None:
        if update.is_snapshot:
            self.bids.clear()
            self.asks.clear()
        for levels, book in ((update.bids, self.bids), (update.asks, self.asks)):
            for level in levels:
                if level.quantity == 0:
                    book.pop(level.price, None)
                else:
                    book[level.price] = level.quantity
        self.sequence = update.sequence

    def snapshot(self, depth: int, time: datetime) -> OrderBook:
        bids = sorted(self.bids.items(), key=lambda kv: kv[0], reverse=True)[:depth]
        asks = sorted(self.asks.items(), key=lambda kv: kv[0])[:depth]
        return OrderBook(
            instrument=self.instrument,
            bids=tuple(BookLevel(p, q) for p, q in bids),
            asks=tuple(BookLevel(p, q) for p, q in asks),
            time=time,
            sequence=self.sequence,
        )


# ---- capabilities, hooks, the adapter -------------------------------------------------------


class Capabilities(TypedDict):
    """What a venue supports, declared as data (STYLE 6) so callers branch on facts, not names."""

    instrument_types: frozenset[InstrumentType]
    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    post_only: bool
    reduce_only: bool
    outcomes: bool
    market_buy_by_notional: bool
    cancel_by_client_order_id: bool
    get_order_by_client_order_id: bool
    positions: bool
    candle_timeframes: tuple[str, ...]
    book_depths: tuple[int, ...]
    max_client_order_id_length: int
    async_order_ack: bool


CallOutcome = Literal["ok", "error", "unknown"]


class OnCall(Protocol):
    """Audit hook, called once per venue request: no secrets are ever passed."""

    def __call__(
        self, venue: str, method: str, latency_ms: float, outcome: CallOutcome, error_code: str | None
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    """API credentials. `repr` masks the secret so it cannot leak into logs."""

    api_key: str
    api_secret: str = field(repr=False)

    @property
    def masked_key(self) -> str:
        return f"{self.api_key[:4]}…{self.api_key[-2:]}" if len(self.api_key) > 8 else "…"


class ExchangeAdapter(abc.ABC):
    """One venue behind one typed async interface.

    Errors are `apps.exchanges.adapters.errors.ExchangeError` subclasses. `place_order` raises
    `OrderOutcomeUnknown` when the venue may or may not have the order; callers then look it up
    with `get_order(client_order_id=...)` and never resubmit blindly.
    """

    venue: str
    capabilities: Capabilities

    # lifecycle
    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # market data
    @abc.abstractmethod
    async def get_instruments(self) -> list[Instrument]: ...

    @abc.abstractmethod
    async def get_ticker(self, instrument: str) -> Ticker: ...

    @abc.abstractmethod
    async def get_tickers(self, instruments: Sequence[str] | None = None) -> list[Ticker]: ...

    @abc.abstractmethod
    async def get_order_book(self, instrument: str, depth: int = 10) -> OrderBook: ...

    @abc.abstractmethod
    async def get_trades(self, instrument: str, limit: int = 25) -> list[Trade]: ...

    @abc.abstractmethod
    async def get_candles(
        self,
        instrument: str,
        timeframe: str = "1m",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 25,
    ) -> list[Candle]: ...

    # account
    @abc.abstractmethod
    async def get_balances(self) -> list[Balance]: ...

    @abc.abstractmethod
    async def get_positions(self) -> list[Position]: ...

    # orders
    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> OrderState: ...

    @abc.abstractmethod
    async def cancel_order(
        self, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> None: ...

    @abc.abstractmethod
    async def cancel_all_orders(self, instrument: str | None = None) -> None: ...

    @abc.abstractmethod
    async def get_order(
        self, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> OrderState: ...

    @abc.abstractmethod
    async def get_open_orders(self, instrument: str | None = None) -> list[OrderState]: ...

    @abc.abstractmethod
    async def get_order_history(
        self,
        instrument: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> list[OrderState]: ...

    @abc.abstractmethod
    async def get_fills(
        self,
        instrument: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> list[Fill]: ...

    # streams
    @abc.abstractmethod
    def market_stream(self, subscriptions: Sequence[MarketSubscription]) -> EventStream[MarketEvent]: ...

    @abc.abstractmethod
    def user_stream(self, instruments: Sequence[str] | None = None) -> EventStream[UserEvent]: ...


AdapterFactory = Callable[..., ExchangeAdapter]
JSON = dict[str, Any]
