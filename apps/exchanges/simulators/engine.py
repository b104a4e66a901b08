"""The shared matching engine every venue simulator runs on.

Venue-neutral: price-time priority per instrument, limit and market orders, GTC/IOC/FOK,
post-only, partial fills, self-trade prevention (cancel the resting order), fees from a
pluggable `FeeModel`, balances with holds from a pluggable `Accounting` policy (spot here; an
event-contract policy for Kalshi plugs in the same way), cancel / cancel-all, and order, fill and
public-trade history. Listeners receive every change as an `EngineEvent` so a venue simulator
can push it over its own WebSocket format. Everything is in memory and single-threaded (one
asyncio loop), so no locking is needed.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Protocol

FEE_QUANTUM = Decimal("0.00000001")


class SimSide(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> SimSide:
        return SimSide.SELL if self is SimSide.BUY else SimSide.BUY


class SimStatus(enum.StrEnum):
    NEW = "NEW"
    ACTIVE = "ACTIVE"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class Reject(enum.StrEnum):
    """Why the engine refused or killed an order; each venue maps these to its own codes."""

    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    MARKET_CLOSED = "MARKET_CLOSED"
    BAD_QUANTITY = "BAD_QUANTITY"
    BAD_PRICE = "BAD_PRICE"
    BAD_TIF = "BAD_TIF"
    DUPLICATE_CLIENT_ID = "DUPLICATE_CLIENT_ID"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
    FOK_NOT_FILLED = "FOK_NOT_FILLED"
    IOC_NOT_FILLED = "IOC_NOT_FILLED"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    TOO_MANY_ORDERS = "TOO_MANY_ORDERS"
    SELF_TRADE = "SELF_TRADE"


class EngineReject(Exception):
    """The request was refused before anything changed (no order recorded)."""

    def __init__(self, reason: Reject, message: str = "") -> None:
        self.reason = reason
        super().__init__(message or reason.value)


def now_ns() -> int:
    return time.time_ns()


@dataclass
class SimInstrument:
    """One tradable book. `symbol` is the venue's own name (e.g. `BTC_USD`)."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    qty_step: Decimal
    min_qty: Decimal
    start_price: Decimal
    maker_fee_rate: Decimal = Decimal("0.00075")
    taker_fee_rate: Decimal = Decimal("0.0015")
    tradable: bool = True
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Account:
    """A simulated venue account with credentials and balances; holds are part of `total`."""

    account_id: str
    api_key: str
    api_secret: str
    totals: dict[str, Decimal] = field(default_factory=dict)
    holds: dict[str, Decimal] = field(default_factory=dict)
    is_system: bool = False

    def available(self, currency: str) -> Decimal:
        return self.totals.get(currency, Decimal(0)) - self.holds.get(currency, Decimal(0))

    def adjust(self, currency: str, delta: Decimal) -> None:
        self.totals[currency] = self.totals.get(currency, Decimal(0)) + delta

    def hold(self, currency: str, delta: Decimal) -> None:
        self.holds[currency] = self.holds.get(currency, Decimal(0)) + delta


@dataclass
class SimOrder:
    order_id: str
    client_oid: str
    account_id: str
    instrument: str
    side: SimSide
    order_type: str  # "limit" | "market"
    time_in_force: str  # "gtc" | "ioc" | "fok"
    quantity: Decimal
    price: Decimal | None
    post_only: bool = False
    notional: Decimal | None = None
    filled: Decimal = Decimal(0)
    cum_value: Decimal = Decimal(0)
    cum_fee: Decimal = Decimal(0)
    fee_currency: str = ""
    status: SimStatus = SimStatus.NEW
    reason: str = ""
    created_ns: int = field(default_factory=now_ns)
    updated_ns: int = field(default_factory=now_ns)
    hold_currency: str = ""
    hold_left: Decimal = Decimal(0)
    seq: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def avg_price(self) -> Decimal | None:
        return self.cum_value / self.filled if self.filled else None

    @property
    def is_open(self) -> bool:
        return self.status in (SimStatus.NEW, SimStatus.ACTIVE)


@dataclass(frozen=True)
class SimFill:
    """One side of a match, as the account that owns `order_id` sees it."""

    trade_id: str
    match_id: str
    order_id: str
    client_oid: str
    account_id: str
    instrument: str
    side: SimSide
    price: Decimal
    quantity: Decimal
    fee: Decimal
    fee_currency: str
    is_maker: bool
    time_ns: int


@dataclass(frozen=True)
class PublicTrade:
    trade_id: str
    instrument: str
    price: Decimal
    quantity: Decimal
    taker_side: SimSide
    time_ns: int


# ---- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderEvent:
    order: SimOrder


@dataclass(frozen=True)
class FillEvent:
    fill: SimFill


@dataclass(frozen=True)
class TradeEvent:
    trade: PublicTrade


@dataclass(frozen=True)
class BalanceEvent:
    account_id: str


@dataclass(frozen=True)
class BookEvent:
    instrument: str


EngineEvent = OrderEvent | FillEvent | TradeEvent | BalanceEvent | BookEvent
Listener = Callable[[EngineEvent], None]


# ---- venue policies -------------------------------------------------------------------------


class FeeModel(Protocol):
    def fee(
        self, instrument: SimInstrument, price: Decimal, quantity: Decimal, is_maker: bool
    ) -> Decimal: ...


class ProportionalFees:
    """Fee = notional x rate (maker or taker), rounded up to 1e-8: spot crypto venues."""

    def fee(self, instrument: SimInstrument, price: Decimal, quantity: Decimal, is_maker: bool) -> Decimal:
        rate = instrument.maker_fee_rate if is_maker else instrument.taker_fee_rate
        return (price * quantity * rate).quantize(FEE_QUANTUM, rounding=ROUND_UP)


class Accounting(Protocol):
    """How an order reserves funds and how a fill moves them; one implementation per asset model."""

    def hold_for(
        self, instrument: SimInstrument, order: SimOrder, est_cost: Decimal
    ) -> tuple[str, Decimal]: ...

    def settle_fill(
        self,
        account: Account,
        instrument: SimInstrument,
        order: SimOrder,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
    ) -> Decimal:
        """Move balances for one fill; returns how much of the order's hold it consumed."""
        ...


class SpotAccounting:
    """Spot: a buy holds quote (price x qty + taker fee), a sell holds base; fees in quote."""

    def hold_for(self, instrument: SimInstrument, order: SimOrder, est_cost: Decimal) -> tuple[str, Decimal]:
        if order.side is SimSide.SELL:
            return instrument.base, order.quantity
        if order.order_type == "market" and order.notional is not None:
            return instrument.quote, order.notional
        cost = est_cost if order.price is None else order.price * order.quantity
        return instrument.quote, (cost * (1 + instrument.taker_fee_rate)).quantize(
            FEE_QUANTUM, rounding=ROUND_UP
        )

    def settle_fill(
        self,
        account: Account,
        instrument: SimInstrument,
        order: SimOrder,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
    ) -> Decimal:
        value = price * qty
        if order.side is SimSide.BUY:
            account.adjust(instrument.base, qty)
            account.adjust(instrument.quote, -(value + fee))
            return value + fee
        account.adjust(instrument.base, -qty)
        account.adjust(instrument.quote, value - fee)
        return qty


# ---- the book -------------------------------------------------------------------------------


class Book:
    """Price levels of resting orders: FIFO per level, best price first on each side."""

    def __init__(self) -> None:
        self.levels: dict[SimSide, dict[Decimal, deque[SimOrder]]] = {SimSide.BUY: {}, SimSide.SELL: {}}
        self.prices: dict[SimSide, list[Decimal]] = {SimSide.BUY: [], SimSide.SELL: []}  # ascending

    def add(self, order: SimOrder) -> None:
        assert order.price is not None
        levels = self.levels[order.side]
        if order.price not in levels:
            levels[order.price] = deque()
            bisect.insort(self.prices[order.side], order.price)
        levels[order.price].append(order)

    def remove(self, order: SimOrder) -> None:
        assert order.price is not None
        level = self.levels[order.side].get(order.price)
        if level is None:
            return
        try:
            level.remove(order)
        except ValueError:
            return
        if not level:
            self._drop_level(order.side, order.price)

    def _drop_level(self, side: SimSide, price: Decimal) -> None:
        del self.levels[side][price]
        prices = self.prices[side]
        prices.pop(bisect.bisect_left(prices, price))

    def best(self, side: SimSide) -> Decimal | None:
        prices = self.prices[side]
        if not prices:
            return None
        return prices[-1] if side is SimSide.BUY else prices[0]

    def iter_prices(self, side: SimSide) -> Iterator[Decimal]:
        prices = self.prices[side]
        return reversed(prices) if side is SimSide.BUY else iter(prices)

    def depth(self, side: SimSide, n: int) -> list[tuple[Decimal, Decimal, int]]:
        out = []
        for price in itertools.islice(self.iter_prices(side), n):
            orders = self.levels[side][price]
            out.append((price, sum((o.remaining for o in orders), Decimal(0)), len(orders)))
        return out

    def pop_empty(self, side: SimSide, price: Decimal) -> None:
        if price in self.levels[side] and not self.levels[side][price]:
            self._drop_level(side, price)


def _crosses(taker: SimOrder, price: Decimal) -> bool:
    if taker.price is None:
        return True
    return price <= taker.price if taker.side is SimSide.BUY else price >= taker.price


class MatchingEngine:
    """All books, accounts and histories of one simulated venue."""

    def __init__(
        self,
        instruments: Iterable[SimInstrument],
        *,
        fees: FeeModel | None = None,
        accounting: Accounting | None = None,
        id_base: int = 6_530_219_599_900_000_000,
        max_open_per_instrument: int = 200,
        max_open_per_account: int = 1000,
    ) -> None:
        self.instruments: dict[str, SimInstrument] = {i.symbol: i for i in instruments}
        self.books: dict[str, Book] = {s: Book() for s in self.instruments}
        self.fees: FeeModel = fees or ProportionalFees()
        self.accounting: Accounting = accounting or SpotAccounting()
        self.accounts: dict[str, Account] = {}
        self.accounts_by_key: dict[str, Account] = {}
        self.orders: dict[str, SimOrder] = {}
        self.orders_by_client: dict[tuple[str, str], SimOrder] = {}
        self.account_orders: dict[str, list[SimOrder]] = {}
        self.fills: dict[str, list[SimFill]] = {}
        self.open_index: dict[str, dict[str, SimOrder]] = {}
        self.trades: dict[str, deque[PublicTrade]] = {s: deque(maxlen=20_000) for s in self.instruments}
        self.listeners: list[Listener] = []
        self.max_open_per_instrument = max_open_per_instrument
        self.max_open_per_account = max_open_per_account
        self._ids = itertools.count(id_base)
        self._seq = itertools.count(1)

    # -- plumbing --
    def next_id(self) -> str:
        return str(next(self._ids))

    def emit(self, event: EngineEvent) -> None:
        for listener in list(self.listeners):
            listener(event)

    def add_account(self, account: Account) -> Account:
        self.accounts[account.account_id] = account
        self.accounts_by_key[account.api_key] = account
        self.account_orders.setdefault(account.account_id, [])
        self.fills.setdefault(account.account_id, [])
        return account

    def instrument(self, symbol: str) -> SimInstrument:
        inst = self.instruments.get(symbol)
        if inst is None:
            raise EngineReject(Reject.UNKNOWN_INSTRUMENT, f"unknown instrument {symbol}")
        return inst

    def open_orders(self, account_id: str, instrument: str | None = None) -> list[SimOrder]:
        """Open orders, oldest first, from an index (no scan of the account's whole history)."""
        live = self.open_index.get(account_id, {}).values()
        return [o for o in live if instrument is None or o.instrument == instrument]

    def last_price(self, symbol: str) -> Decimal | None:
        trades = self.trades[symbol]
        return trades[-1].price if trades else None

    # -- validation --
    def _validate(self, inst: SimInstrument, order: SimOrder) -> None:
        if not inst.tradable:
            raise EngineReject(Reject.MARKET_CLOSED, f"{inst.symbol} is not tradable")
        if order.time_in_force not in ("gtc", "ioc", "fok") or (
            order.post_only and order.time_in_force != "gtc"
        ):
            raise EngineReject(Reject.BAD_TIF)
        needs_qty = not (order.order_type == "market" and order.side is SimSide.BUY and order.notional)
        if needs_qty and (
            order.quantity <= 0 or order.quantity % inst.qty_step != 0 or order.quantity < inst.min_qty
        ):
            raise EngineReject(Reject.BAD_QUANTITY, f"bad quantity {order.quantity}")
        if order.order_type == "limit" and (
            order.price is None or order.price <= 0 or order.price % inst.tick_size != 0
        ):
            raise EngineReject(Reject.BAD_PRICE, f"bad price {order.price}")
        if (order.account_id, order.client_oid) in self.orders_by_client:
            raise EngineReject(Reject.DUPLICATE_CLIENT_ID, f"duplicate client order id {order.client_oid}")
        if order.order_type == "limit" and not self.accounts[order.account_id].is_system:
            open_orders = self.open_orders(order.account_id)
            if len(open_orders) >= self.max_open_per_account or (
                sum(1 for o in open_orders if o.instrument == inst.symbol) >= self.max_open_per_instrument
            ):
                raise EngineReject(Reject.TOO_MANY_ORDERS)

    def _market_cost(self, inst: SimInstrument, order: SimOrder) -> Decimal:
        """Quote needed to fill a market buy by quantity, walking the book."""
        book, left, cost = self.books[inst.symbol], order.quantity, Decimal(0)
        for price in book.iter_prices(SimSide.SELL):
            for resting in book.levels[SimSide.SELL][price]:
                take = min(left, resting.remaining)
                cost += take * price
                left -= take
                if left <= 0:
                    return cost
        raise EngineReject(Reject.NO_LIQUIDITY, "not enough liquidity for a market order")

    # -- commands --
    def submit(self, order: SimOrder) -> SimOrder:
        """Validate, hold funds, match and rest (or kill) one order. Raises `EngineReject`."""
        inst = self.instrument(order.instrument)
        account = self.accounts[order.account_id]
        self._validate(inst, order)
        if order.notional is not None and order.order_type == "market" and order.side is SimSide.BUY:
            order.quantity = Decimal("1e18")  # bounded by the notional while matching
        est = Decimal(0)
        if order.order_type == "market" and order.side is SimSide.BUY and order.notional is None:
            est = self._market_cost(inst, order)
        currency, amount = self.accounting.hold_for(inst, order, est)
        if not account.is_system and account.available(currency) < amount:
            raise EngineReject(Reject.INSUFFICIENT_BALANCE, f"needs {amount} {currency}")
        order.hold_currency, order.hold_left, order.fee_currency = currency, amount, inst.quote
        order.seq = next(self._seq)
        account.hold(currency, amount)
        if amount:
            self.emit(BalanceEvent(order.account_id))  # available (reserved_qty) changed
        self.orders[order.order_id] = order
        self.orders_by_client[(order.account_id, order.client_oid)] = order
        self.account_orders[order.account_id].append(order)
        self.open_index.setdefault(order.account_id, {})[order.order_id] = order
        self._execute(inst, order)
        return order

    def _execute(self, inst: SimInstrument, order: SimOrder) -> None:
        book = self.books[inst.symbol]
        opposite = book.best(order.side.opposite)
        if order.post_only and opposite is not None and _crosses(order, opposite):
            self._finish(order, SimStatus.REJECTED, Reject.POST_ONLY_WOULD_CROSS)
            return
        if order.time_in_force == "fok" and self._fillable(book, order) < order.quantity:
            self._finish(order, SimStatus.CANCELED, Reject.FOK_NOT_FILLED)
            return
        self._match(inst, book, order)
        if order.notional is not None:
            order.quantity = order.filled  # a notional buy is done when its money is
        if order.remaining <= 0 and order.filled > 0:
            self._finish(order, SimStatus.FILLED)
        elif order.order_type == "market" or order.time_in_force == "ioc":
            reason = Reject.IOC_NOT_FILLED if order.filled == 0 else None
            self._finish(order, SimStatus.CANCELED, reason)
        else:
            order.status = SimStatus.ACTIVE
            order.updated_ns = now_ns()
            book.add(order)
            self.emit(OrderEvent(order))
            self.emit(BookEvent(inst.symbol))

    def _fillable(self, book: Book, order: SimOrder) -> Decimal:
        total = Decimal(0)
        for price in book.iter_prices(order.side.opposite):
            if not _crosses(order, price):
                break
            total += sum(
                (
                    o.remaining
                    for o in book.levels[order.side.opposite][price]
                    if o.account_id != order.account_id
                ),
                Decimal(0),
            )
        return total

    def _match(self, inst: SimInstrument, book: Book, taker: SimOrder) -> None:
        side = taker.side.opposite
        touched = False
        for price in list(book.iter_prices(side)):
            if taker.remaining <= 0 or not _crosses(taker, price):
                break
            level = book.levels[side][price]
            while level and taker.remaining > 0:
                maker = level[0]
                if maker.account_id == taker.account_id:
                    level.popleft()
                    self._finish(maker, SimStatus.CANCELED, Reject.SELF_TRADE, in_book=False)
                    touched = True
                    continue
                qty = min(taker.remaining, maker.remaining)
                if taker.notional is not None:
                    budget = taker.hold_left / (price * (1 + inst.taker_fee_rate))
                    qty = min(qty, budget.quantize(inst.qty_step, rounding=ROUND_DOWN))
                    if qty <= 0:
                        self._book_touched(inst, touched)
                        return
                self._trade(inst, taker, maker, price, qty)
                touched = True
                if maker.remaining <= 0:
                    level.popleft()
                    self._finish(maker, SimStatus.FILLED, in_book=False)
            book.pop_empty(side, price)
        self._book_touched(inst, touched)

    def _book_touched(self, inst: SimInstrument, touched: bool) -> None:
        if touched:
            self.emit(BookEvent(inst.symbol))

    def _trade(
        self, inst: SimInstrument, taker: SimOrder, maker: SimOrder, price: Decimal, qty: Decimal
    ) -> None:
        t = now_ns()
        match_id = self.next_id()
        for order, is_maker in ((maker, True), (taker, False)):
            fee = self.fees.fee(inst, price, qty, is_maker)
            account = self.accounts[order.account_id]
            used = self.accounting.settle_fill(account, inst, order, price, qty, fee)
            used = min(used, order.hold_left)
            order.hold_left -= used
            account.hold(order.hold_currency, -used)
            order.filled += qty
            order.cum_value += price * qty
            order.cum_fee += fee
            order.updated_ns = t
            fill = SimFill(
                trade_id=self.next_id(),
                match_id=match_id,
                order_id=order.order_id,
                client_oid=order.client_oid,
                account_id=order.account_id,
                instrument=inst.symbol,
                side=order.side,
                price=price,
                quantity=qty,
                fee=fee,
                fee_currency=inst.quote,
                is_maker=is_maker,
                time_ns=t,
            )
            self.fills[order.account_id].append(fill)
            self.emit(FillEvent(fill))
            if order is maker and maker.remaining > 0:
                self.emit(OrderEvent(maker))
            self.emit(BalanceEvent(order.account_id))
        trade = PublicTrade(self.next_id(), inst.symbol, price, qty, taker.side, t)
        self.trades[inst.symbol].append(trade)
        self.emit(TradeEvent(trade))

    def _finish(
        self, order: SimOrder, status: SimStatus, reason: Reject | None = None, *, in_book: bool = False
    ) -> None:
        if in_book:
            self.books[order.instrument].remove(order)
        order.status = status
        self.open_index.get(order.account_id, {}).pop(order.order_id, None)
        order.reason = reason.value if reason else order.reason
        order.updated_ns = now_ns()
        if order.hold_left:
            self.accounts[order.account_id].hold(order.hold_currency, -order.hold_left)
            order.hold_left = Decimal(0)
            self.emit(BalanceEvent(order.account_id))
        self.emit(OrderEvent(order))

    def cancel(
        self, account_id: str, *, order_id: str | None = None, client_oid: str | None = None
    ) -> SimOrder:
        order = self.find(account_id, order_id=order_id, client_oid=client_oid)
        if not order.is_open:
            raise EngineReject(Reject.ORDER_NOT_OPEN, f"order {order.order_id} is {order.status}")
        self._finish(order, SimStatus.CANCELED, in_book=True)
        self.emit(BookEvent(order.instrument))
        return order

    def cancel_all(self, account_id: str, instrument: str | None = None) -> list[SimOrder]:
        orders = self.open_orders(account_id, instrument)
        for order in orders:
            self._finish(order, SimStatus.CANCELED, in_book=True)
        for symbol in {o.instrument for o in orders}:
            self.emit(BookEvent(symbol))
        return orders

    def find(
        self, account_id: str, *, order_id: str | None = None, client_oid: str | None = None
    ) -> SimOrder:
        order = None
        if order_id:
            order = self.orders.get(order_id)
        elif client_oid:
            order = self.orders_by_client.get((account_id, client_oid))
        if order is None or order.account_id != account_id:
            raise EngineReject(Reject.ORDER_NOT_FOUND, "order not found")
        return order
