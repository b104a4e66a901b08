"""Pre-trade checks: the order against its instrument (before anything is stored) and the risk
engine (after the intent is stored, before anything reaches a venue).

Risk checks, each with its own code and `details` = {limit, attempted, ...}:

  TRADING_HALTED / REDUCE_ONLY   an active kill switch (global, venue or user), read fresh per order;
                                 under reduce-only, a sell must fit in the position less the
                                 user's other live sells of it
  RISK_VELOCITY                  orders per second and per minute per user
  RISK_MAX_NOTIONAL              one order's notional, per user and instrument type
  RISK_DAILY_NOTIONAL            today's (UTC) committed notional, per user and instrument type
  RISK_FAT_FINGER_PRICE          limit price too far from the latest price (crypto: percent;
                                 event contracts: cents, comparing YES-equivalent prices)
  RISK_FAT_FINGER_QUANTITY       quantity beyond a multiple of the user's median order size
                                 (once there is enough history on the instrument)
  RISK_MAX_POSITION              position value after a buy and the user's other live buys of
                                 it, per instrument (event contracts: per outcome)
  INSUFFICIENT_POSITION          event contracts: a sell closes contracts held (to take the other
                                 side, buy the other outcome), so it must fit in the outcome's
                                 position less the user's other live sells of it
  INSUFFICIENT_BALANCE           from the venue balance (briefly cached), fees included
  PRICE_UNAVAILABLE              no reference price: market orders cannot be sized and limit
                                 orders cannot be fat-finger checked, so both are refused;
                                 post-only limit orders (they cannot cross) skip the price check.

Event-contract market orders go out as immediate-or-cancel limits at a protection price: the
latest price of the outcome plus (buy) or minus (sell) the fat-finger band in cents, on the cent
grid and within 0.01-0.99. They never fill further from the market than a limit order may be
placed, and a buy is sized (notional, balance, hold) at that worst price.

Live orders (submitted, unknown, open, partial; of any age) count by their unfilled quantity,
read under the user's lock with the rest of the recent activity. The daily notional
counts a cancelled order's filled part only.

Reference price: the market-data cache (fresh, not stale), else the venue's ticker (cached for
`K2_TRADING_PRICE_CACHE_SECONDS`). Balances and positions: the venue (cached per link for
`K2_TRADING_BALANCE_CACHE_SECONDS`, then used for `K2_TRADING_BALANCE_STALE_SECONDS` more while
re-read in the background, but never to refuse an order); the venue stays the final guard
against overspending.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from django import db
from django.conf import settings
from django.core.cache import cache

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import Balance, Credentials, ExchangeAdapter, Position
from apps.exchanges.adapters.base import OrderType as VenueOrderType
from apps.marketdata.models import Instrument
from apps.trading import selectors
from apps.trading.choices import InstrumentType, KillSwitchMode, OrderType, Outcome, Side
from apps.trading.exceptions import RISK_CODES, InvalidOrderInput, RiskRejection
from apps.trading.models import KillSwitch, Order, RiskLimit
from apps.trading.venue import venue_call, venue_capabilities
from k2.core.cache import cache_decode, cache_encode, redis_client, redis_run_script
from k2.observability.logging import get_logger

log = get_logger(__name__)

EVENT_MIN_PRICE = Decimal("0.01")
EVENT_MAX_PRICE = Decimal("0.99")
CENT = Decimal("0.01")
ONE = Decimal(1)
HUNDRED = Decimal(100)


# ---- validation against the instrument -------------------------------------------------------


def order_validate(
    *,
    instrument: Instrument,
    side: str,
    order_type: str,
    quantity: Decimal,
    price: Decimal | None,
    outcome: str,
    time_in_force: str,
    post_only: bool,
) -> None:
    """Raise `InvalidOrderInput` (code per rule) when the order cannot be valid at the venue."""

    def bad(code: str, message: str, **details: Any) -> InvalidOrderInput:
        return InvalidOrderInput(message, code=code, details={"instrument": instrument.symbol, **details})

    if instrument.status != "open":
        raise bad("MARKET_CLOSED", f"{instrument.symbol} is not open for trading.", status=instrument.status)
    caps = venue_capabilities(instrument.venue)
    if order_type not in {str(t) for t in caps["order_types"]}:
        raise bad("ORDER_TYPE_NOT_SUPPORTED", f"{order_type} orders are not supported here.")
    if time_in_force not in {str(t) for t in caps["time_in_force"]}:
        raise bad("TIME_IN_FORCE_NOT_SUPPORTED", f"time_in_force {time_in_force} is not supported here.")
    if post_only and (not caps["post_only"] or order_type != OrderType.LIMIT or time_in_force != "gtc"):
        raise bad("POST_ONLY_NOT_SUPPORTED", "post_only needs a good-till-cancelled limit order.")
    if order_type == OrderType.LIMIT and price is None:
        raise bad("PRICE_REQUIRED", "A limit order needs a price.")
    if order_type == OrderType.MARKET and price is not None:
        raise bad("PRICE_NOT_ALLOWED", "A market order takes no price.")
    if instrument.instrument_type == InstrumentType.EVENT:
        if outcome not in Outcome.values:
            raise bad("OUTCOME_REQUIRED", "Event contracts need an outcome: yes or no.")
        if price is not None and not EVENT_MIN_PRICE <= price <= EVENT_MAX_PRICE:
            raise bad(
                "INVALID_PRICE",
                "Event contract prices are 0.01 to 0.99.",
                min="0.01",
                max="0.99",
                price=str(price),
            )
    elif outcome:
        raise bad("OUTCOME_NOT_ALLOWED", "Only event contracts take an outcome.")
    if quantity < instrument.min_quantity:
        raise bad(
            "QUANTITY_BELOW_MINIMUM",
            f"The minimum quantity is {instrument.min_quantity.normalize()}.",
            min_quantity=str(instrument.min_quantity.normalize()),
            quantity=str(quantity),
        )
    if quantity % instrument.quantity_step != 0:
        raise bad(
            "INVALID_QUANTITY_STEP",
            f"The quantity must be a multiple of {instrument.quantity_step.normalize()}.",
            quantity_step=str(instrument.quantity_step.normalize()),
            quantity=str(quantity),
        )
    if price is not None and price % instrument.tick_size != 0:
        raise bad(
            "INVALID_TICK_SIZE",
            f"The price must be a multiple of {instrument.tick_size.normalize()}.",
            tick_size=str(instrument.tick_size.normalize()),
            price=str(price),
        )


# ---- limits -----------------------------------------------------------------------------------

_LIMIT_FIELDS = (
    "max_order_notional", "max_daily_notional", "max_position_notional", "max_orders_per_second",
    "max_orders_per_minute", "fat_finger_percent", "fat_finger_cents", "fat_finger_quantity_multiple",
)  # fmt: skip


@dataclass(frozen=True)
class Limits:
    max_order_notional: Decimal
    max_daily_notional: Decimal
    max_position_notional: Decimal
    max_orders_per_second: int
    max_orders_per_minute: int
    fat_finger_percent: Decimal
    fat_finger_cents: Decimal
    fat_finger_quantity_multiple: Decimal


def limits_for(*, user_id: Any, instrument_type: str, rows: list[RiskLimit] | None = None) -> Limits:
    """Each limit from the most specific admin row that sets it, else the settings default.
    `rows`: the matching rows, most specific first, if already read."""
    defaults: dict[str, Any] = settings.K2_RISK_DEFAULTS[instrument_type]
    values = dict(defaults)
    if rows is None:
        rows = selectors.risk_limit_rows(user_id=user_id, instrument_type=instrument_type)
    for name in _LIMIT_FIELDS:
        for row in rows:
            value = getattr(row, name)
            if value is not None:
                values[name] = value
                break
    return Limits(
        max_order_notional=Decimal(values["max_order_notional"]),
        max_daily_notional=Decimal(values["max_daily_notional"]),
        max_position_notional=Decimal(values["max_position_notional"]),
        max_orders_per_second=int(values["max_orders_per_second"]),
        max_orders_per_minute=int(values["max_orders_per_minute"]),
        fat_finger_percent=Decimal(values["fat_finger_percent"]),
        fat_finger_cents=Decimal(values["fat_finger_cents"]),
        fat_finger_quantity_multiple=Decimal(values["fat_finger_quantity_multiple"]),
    )


# ---- inputs from the market and the venue (gathered outside any transaction) -------------------


@dataclass
class RiskInputs:
    reference_price: Decimal | None = None
    price_source: str = ""
    balances: dict[str, Balance] | None = None  # less the holds (`account_holds_apply`, under the lock)
    account: AccountSnapshot | None = None  # as the venue said, and the link's holds then
    switches: list[KillSwitch] = field(default_factory=list)  # read fresh for this order
    limit_rows: list[RiskLimit] | None = None  # likewise, most specific first (None: not read yet)
    venue_error: ex.ExchangeError | None = None
    # Holds taken off the balances were recorded while the snapshot's venue read was under way:
    # the venue's figures may hold those orders already (`account_holds_apply`).
    holds_in_doubt: bool = False

    @property
    def positions(self) -> list[Position] | None:
        return self.account.positions if self.account is not None else None

    @property
    def account_in_doubt(self) -> bool:
        """An account refusal made on these inputs may be wrong: the snapshot is stale (see
        `account_snapshot`), or holds were taken off that its venue read may have counted
        already. Read the venue again."""
        return (self.account is not None and self.account.stale) or self.holds_in_doubt


def reference_price(instrument: Instrument) -> tuple[Decimal | None, str]:
    """The latest price (last trade, else mid), fresh from the feed cache or from the venue."""
    from apps.marketdata import cache as price_cache

    try:
        snap = price_cache.prices_read([instrument.symbol], {instrument.symbol: instrument.venue}).get(
            instrument.symbol
        )
    except Exception as exc:  # the price cache being down must not stop the venue fallback
        log.warning("price_cache_unavailable", error=repr(exc))
        snap = None
    if snap is not None and not snap.stale:
        price = _price_of(snap.price, snap.bid, snap.ask)
        if price is not None:
            return price, "feed"
    key = f"k2:trading:ticker:{instrument.venue}:{instrument.symbol}"
    cached = cache.get(key)
    if cached is not None:
        return Decimal(cached), "venue"

    async def get(adapter: ExchangeAdapter) -> Any:
        return await adapter.get_ticker(instrument.symbol)

    ticker = venue_call(
        instrument.venue, get, credentials=None, timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS
    )
    price = _price_of(ticker.last, ticker.bid, ticker.ask)
    if price is not None:
        cache.set(key, str(price), timeout=settings.K2_TRADING_PRICE_CACHE_SECONDS)
    return price, "venue"


def _price_of(last: Any, bid: Any, ask: Any) -> Decimal | None:
    if last not in (None, ""):
        return Decimal(str(last))
    if bid not in (None, "") and ask not in (None, ""):
        return (Decimal(str(bid)) + Decimal(str(ask))) / 2
    return None


@dataclass(frozen=True)
class AccountSnapshot:
    """A link's balances (and positions) as its venue said when read (from `read_at` until
    `read_until`, Unix times: the venue answered at some moment between), and the link's hold
    entries as read with them (`_holds`)."""

    balances: dict[str, Balance]
    positions: list[Position] | None
    stale: bool
    read_at: float
    holds: list[bytes]
    read_until: float


def account_snapshot(
    *,
    link_id: Any,
    venue: str,
    credentials: Credentials,
    want_positions: bool,
    allow_stale: bool = False,
    fresh: bool = False,
) -> AccountSnapshot:
    """The link's balances and positions as the venue said, cached, with its holds. What orders
    placed since the venue read hold is taken off under the risk lock (`account_holds_apply`).

    Fresh for `K2_TRADING_BALANCE_CACHE_SECONDS`. With `allow_stale`, a snapshot up to
    `K2_TRADING_BALANCE_STALE_SECONDS` older is returned at once (stale=True) and refreshed from
    the venue in the background: a user ordering every second or two does not wait for a venue
    read on every other order. A stale snapshot may only let an order through to the venue's own
    check, never refuse it (`order_place` reads the venue again before refusing). `fresh`: read
    the venue whatever the cache holds (and cache what it says)."""
    key = _account_keys(link_id)[int(want_positions)]
    read = functools.partial(
        _account_read, key, venue=venue, credentials=credentials, want_positions=want_positions
    )
    if settings.K2_TRADING_BALANCE_CACHE_SECONDS > 0 and not fresh:
        with redis_client().pipeline(transaction=False) as pipe:
            pipe.get(cache.make_and_validate_key(key))
            _holds(link_id, pipe)
            cached, holds = pipe.execute()
        if cached is not None:
            balances, positions, read_at, read_until = cache_decode(cached)
            age = time.time() - read_at
            if age < settings.K2_TRADING_BALANCE_CACHE_SECONDS:
                return AccountSnapshot(balances, positions, False, read_at, holds, read_until)
            if allow_stale and age < _account_ttl():  # (the cache's expiry is in whole seconds)
                account_refresher().submit(key, read)
                return AccountSnapshot(balances, positions, True, read_at, holds, read_until)
    balances, positions, read_at, read_until = read()
    return AccountSnapshot(balances, positions, False, read_at, _holds(link_id), read_until)


def _account_read(
    key: str, *, venue: str, credentials: Credentials, want_positions: bool
) -> tuple[dict[str, Balance], list[Position] | None, float, float]:
    """Read the venue and cache what it says (kept for the fresh and the stale window); also
    returns when the read began and when its answer was in."""

    async def get(adapter: ExchangeAdapter) -> tuple[list[Balance], list[Position] | None]:
        balances = await adapter.get_balances()
        positions = await adapter.get_positions() if want_positions else None
        return balances, positions

    read_at = time.time()
    balances, positions = venue_call(
        venue, get, credentials=credentials, timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS
    )
    read_until = time.time()
    by_currency = {b.currency: b for b in balances}
    _account_put(key, by_currency, positions, read_at, read_until)
    return by_currency, positions, read_at, read_until


# Writes a snapshot (KEYS[1]) and when its venue read began (KEYS[2], beside it: the snapshot is
# the cache's encoding, which a script cannot read) unless the one cached began later.
# ARGV: the snapshot, its read time (Unix seconds, Python's repr of the float), expiry (seconds).
_PUT_IF_NEWER = """
local cached_at = redis.call('GET', KEYS[2])
if cached_at and redis.call('EXISTS', KEYS[1]) == 1 and tonumber(cached_at) > tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""


def _account_put(
    key: str,
    balances: dict[str, Balance],
    positions: list[Position] | None,
    read_at: float,
    read_until: float,
) -> None:
    """Cache a snapshot for the rest of its window, unless the cache holds a newer one (a push
    that arrived while this read was under way). The comparison and the write are one step (a
    script: one round trip), so a newer snapshot written meanwhile is never replaced by an
    older one."""
    left = read_at + _account_ttl() - time.time()
    if settings.K2_TRADING_BALANCE_CACHE_SECONDS <= 0 or left <= 0:
        return
    keys = [cache.make_and_validate_key(key), cache.make_and_validate_key(f"{key}:read_at")]
    value = cache_encode((balances, positions, read_at, read_until))
    redis_run_script(_PUT_IF_NEWER, keys=keys, args=[value, repr(read_at), _whole_seconds(left)])


def _whole_seconds(left: float) -> int:
    """The cache's expiry is in whole seconds: round up, `account_snapshot` checks the age."""
    return math.ceil(left)


def _account_ttl() -> float:
    return settings.K2_TRADING_BALANCE_CACHE_SECONDS + max(settings.K2_TRADING_BALANCE_STALE_SECONDS, 0)


class _Refresher:
    """Background venue reads for stale snapshots: one thread per process, one read per key at a
    time (a burst of orders on a stale snapshot asks the venue once)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="k2-account-refresh")
        self.pending: dict[str, Future[None]] = {}
        self.lock = threading.Lock()

    def submit(self, key: str, read: Callable[[], object]) -> None:
        with self.lock:
            if key in self.pending:
                return
            self.pending[key] = self.executor.submit(self._run, key, read)

    def _run(self, key: str, read: Callable[[], object]) -> None:
        try:
            read()
        except Exception as exc:  # the snapshot stays as it was; the next order tries again
            log.warning("account_refresh_failed", key=key, error=repr(exc))
        finally:
            db.connections.close_all()  # this thread's connection (its venue-call audit) goes back
            with self.lock:
                self.pending.pop(key, None)

    def wait(self, timeout: float) -> None:
        """Until the refreshes under way are done (tests, shutdown)."""
        with self.lock:
            futures = list(self.pending.values())
        wait_futures(futures, timeout=timeout)


_refresher: _Refresher | None = None


def account_refresher() -> _Refresher:
    global _refresher
    if _refresher is None or _refresher.pid != os.getpid():  # a forked worker starts its own
        _refresher = _Refresher()
    return _refresher


def _account_keys(link_id: Any) -> list[str]:
    """The cached snapshots of one link, without and with positions: (balances, positions,
    when the venue read began and when its answer was in, as Unix times)."""
    return [f"k2:trading:account:v4:{link_id}:{positions}" for positions in (0, 1)]


def account_snapshot_store(*, link_id: Any, balances: Iterable[Balance], read_at: float) -> None:
    """The venue pushed the link's balances (user stream): they become the snapshot, as if read
    at `read_at` (Unix time), so the next order need not ask the venue. The snapshot with
    positions is dropped (a push carries none)."""
    without, with_positions = _account_keys(link_id)
    _account_put(without, {b.currency: b for b in balances}, None, read_at, read_at)
    cache.delete(with_positions)


def _holds_key(link_id: Any) -> str:
    """What the link's orders hold since they were placed: a sorted set of "when order currency
    amount" (when: Unix time), scored by when. Kept apart from the snapshots, so recording a hold
    never writes over a snapshot (a venue read or a push landing at the same moment stays as it
    is). The time is in the entry too, so reading needs no scores: with scores, redis-py turns
    each one into text and back, and an active user has hundreds of holds in the window."""
    return cache.make_and_validate_key(f"k2:trading:account:v3:{link_id}:holds:v2")


def _holds(link_id: Any, client: Any = None) -> Any:
    """The link's holds still inside the snapshots' window (no snapshot is older), as entries;
    on a pipeline, queued for its result."""
    since = time.time() - _account_ttl()
    return (client or redis_client()).zrangebyscore(_holds_key(link_id), since, "+inf")


def _first_since(holds: list[bytes], when: float) -> int:
    """Where the hold entries (in time order) recorded from `when` on begin."""
    return bisect.bisect_left(holds, when, key=lambda entry: float(entry.split(b" ", 1)[0]))


def _less_holds(balances: dict[str, Balance], holds: list[bytes], read_at: float) -> dict[str, Balance]:
    """The snapshot less what orders placed since its venue read hold (those before it are in
    the venue's own figures). `holds` come in time order: only those from `read_at` on are read
    (an active user has hundreds in the window, a fresh snapshot is younger than most)."""
    held: dict[str, Decimal] = {}
    for entry in holds[_first_since(holds, read_at) :]:
        _when, _order, currency, figure = entry.decode().split(" ")
        held[currency] = held.get(currency, Decimal(0)) + Decimal(figure)
    if not held:
        return balances
    balances = dict(balances)
    for currency, amount in held.items():
        if (b := balances.get(currency)) is not None:
            balances[currency] = Balance(
                currency=b.currency, total=b.total, available=b.available - amount, on_hold=b.on_hold + amount
            )
    return balances


def _hold_of(order: Order, instrument: Instrument) -> tuple[str, Decimal] | None:
    """What an order holds at its venue while it rests: (currency, amount), None for nothing."""
    if order.side == Side.BUY:
        fee_buffer = ONE + Decimal(settings.K2_RISK_FEE_BUFFER_PERCENT) / HUNDRED
        return instrument.quote or "USD", (order.notional or Decimal(0)) * fee_buffer
    if order.instrument_type == InstrumentType.EVENT:
        return None
    return instrument.base, order.quantity


def _hold_put(link_id: Any, order: Order, currency: str, amount: Decimal) -> None:
    key, now, ttl = _holds_key(link_id), time.time(), _account_ttl()
    with redis_client(write=True).pipeline(transaction=False) as pipe:
        pipe.zadd(key, {f"{now!r} {order.pk} {currency} {amount}": now})
        pipe.zremrangebyscore(key, "-inf", now - ttl)  # older than any snapshot still cached
        pipe.expire(key, _whole_seconds(ttl))
        pipe.execute()


# Web processes' clocks may differ by this much: a hold is stamped by its writer's clock, a
# snapshot's read time by its reader's.
HOLDS_CLOCK_MARGIN_SECONDS = 5.0


def holds_since(inputs: RiskInputs, now: datetime) -> datetime:
    """Orders submitted since this time may hold part of the snapshot's balances
    (`account_holds_apply`); with no snapshot, none matter."""
    if inputs.account is None:
        return now
    return datetime.fromtimestamp(inputs.account.read_at - HOLDS_CLOCK_MARGIN_SECONDS, UTC)


def account_holds_apply(*, inputs: RiskInputs, link_id: Any, submitted: Iterable[Any]) -> None:
    """Under the risk lock: take what the link's orders hold since the venue read off its
    balances. `submitted`: the user's orders at the venue that went out since `holds_since`, as
    read under the lock. An order records its hold before it lets go of the lock
    (`account_snapshot_reserve`); one submitted after the holds were read with the snapshot
    (another order of the user, checked meanwhile) is not among them, and then they are read
    again: two orders placed at once cannot both spend the same balance. Otherwise (the usual
    case) the holds read with the snapshot are complete, and the lock is held no longer."""
    account = inputs.account
    if account is None:
        return
    holds = account.holds
    held = {entry.split(b" ", 2)[1] for entry in holds}
    if any(str(order_id).encode() not in held for order_id in submitted):
        try:
            holds = _holds(link_id)
        except Exception as exc:  # as when recording one: a cache fault must not stop the order
            log.warning("balance_holds_unavailable", link_id=str(link_id), error=repr(exc))
    inputs.balances = _less_holds(account.balances, holds, account.read_at)
    # Taken off as not in the venue's figures, though recorded before its answer: those orders
    # may have reached the venue before it answered, and be counted twice.
    inputs.holds_in_doubt = _first_since(holds, account.read_at) < _first_since(holds, account.read_until)


def account_snapshot_reserve(*, link_id: Any, order: Order, instrument: Instrument) -> bool:
    """Under the risk lock, once an order has passed its checks: record what it will hold, so the
    next order is checked against what is really left until a venue read (or push) after it
    includes it. Recording never touches the snapshot or its window: a user trading steadily
    still gets fresh balances (fills, deposits) from the venue every few seconds. Whether a hold
    was recorded (`account_hold_drop` takes it back if the order then does not go out)."""
    if (hold := _hold_of(order, instrument)) is None:
        return False
    try:
        _hold_put(link_id, order, *hold)
    except Exception as exc:  # the order passed its checks: a cache fault must not stop it
        log.warning("balance_reserve_failed", order_id=str(order.pk), error=repr(exc))
        return False
    return True


# Drops every hold entry of one order (ARGV[1]: " <order id> ").
_HOLD_DROP = """
local dropped = 0
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.find(entry, ARGV[1], 1, true) then
    redis.call('ZREM', KEYS[1], entry)
    dropped = dropped + 1
  end
end
return dropped
"""


def _hold_drop(link_id: Any, order: Order) -> None:
    redis_run_script(_HOLD_DROP, keys=[_holds_key(link_id)], args=[f" {order.pk} "])


def account_hold_drop(*, link_id: Any, order: Order) -> None:
    """Take back the hold `account_snapshot_reserve` recorded for an order that then failed to
    be stored as checked (it never went out). Best effort: left, it lapses with the window."""
    try:
        _hold_drop(link_id, order)
    except Exception as exc:
        log.warning("balance_release_failed", order_id=str(order.pk), error=repr(exc))


def account_hold_release(*, order: Order) -> None:
    """An order sent to its venue has ended without filling all of it (cancelled, or refused):
    what it held is free again, so the next order (a cancel-and-replace, typically) is not
    refused for want of it.

    - Refused by the venue (it never rested there): its hold is dropped; no venue read ever
      included it.
    - Cancelled after resting: a release of the unfilled part is recorded, a negative hold at
      the time of the cancel. A snapshot read before the order was placed counts both (nothing
      changed); one read while it rested counts only the release (the venue's figures still had
      it on hold); one read after the cancel counts neither.
    Best effort: a cache fault leaves the hold until the snapshot's next venue read."""
    if order.submitted_at is None:
        return  # refused or cancelled before it was sent: it never held anything
    try:
        instrument, link = selectors.instrument_with_link(symbol=order.instrument, user_id=order.user_id)
        if instrument is None or link is None or (hold := _hold_of(order, instrument)) is None:
            return
        currency, amount = hold
        if not order.exchange_order_id:
            _hold_drop(link.pk, order)
            return
        unfilled = max(order.quantity - order.filled_quantity, Decimal(0)) / order.quantity
        if unfilled > 0:
            _hold_put(link.pk, order, currency, -amount * unfilled)
    except Exception as exc:
        log.warning("balance_release_failed", order_id=str(order.pk), error=repr(exc))


def risk_gather(
    *,
    order: Order,
    instrument: Instrument,
    link_id: Any,
    credentials: Credentials,
    allow_stale: bool = True,
    fresh_account: bool = False,
    config: selectors.RiskConfig | None = None,
) -> RiskInputs:
    """What the checks need from outside the database. Skipped entirely under a halt switch;
    a venue that cannot be reached is recorded (the order is then refused, never sent blind).
    `allow_stale`, `fresh_account` (its `fresh`): see `account_snapshot`. `config`: the switches
    and limits, if already read for this order (`selectors.risk_config`)."""
    switches, limit_rows = config or selectors.risk_config(
        user_id=order.user_id, venue=order.exchange, instrument_type=order.instrument_type
    )
    inputs = RiskInputs(switches=switches, limit_rows=limit_rows)
    if any(s.mode == KillSwitchMode.HALT for s in switches):
        return inputs
    if any(s.mode == KillSwitchMode.REDUCE_ONLY for s in switches):
        allow_stale = False  # what may be sold is the position now, not a few seconds ago
    # An event sell is checked against the contracts held as the venue says now: one bought a
    # moment ago is not in a cached snapshot (a refusal for nothing), one sold elsewhere still is
    # (and a sell beyond what is held would open the other outcome).
    event_sell = order.side == Side.SELL and order.instrument_type == InstrumentType.EVENT
    needs_price = not (order.order_type == OrderType.LIMIT and order.post_only)
    try:
        if needs_price or order.side == Side.BUY:
            inputs.reference_price, inputs.price_source = reference_price(instrument)
        caps = venue_capabilities(order.exchange)
        want_positions = bool(caps["positions"]) and order.instrument_type == InstrumentType.EVENT
        inputs.account = account_snapshot(
            link_id=link_id,
            venue=order.exchange,
            credentials=credentials,
            want_positions=want_positions,
            allow_stale=allow_stale,
            fresh=fresh_account or event_sell,
        )
    except ex.ExchangeError as error:
        inputs.venue_error = error
    return inputs


# Refusals that depend on the account snapshot: never made from one in doubt (stale, or holds
# taken off that its venue read may have counted: `RiskInputs.account_in_doubt`).
ACCOUNT_CODES = frozenset({"INSUFFICIENT_BALANCE", "INSUFFICIENT_POSITION", "RISK_MAX_POSITION"})


class AccountSnapshotStale(Exception):
    """The checks would refuse the order on an account snapshot in doubt
    (`RiskInputs.account_in_doubt`): read the venue, check again."""


class KillSwitchesChanged(Exception):
    """A kill switch became active while the order's inputs were gathered: gather them again
    (the switches and limits read afresh), then check."""


# ---- the engine ---------------------------------------------------------------------------------


def _d(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _position(order: Order, instrument: Instrument, inputs: RiskInputs) -> Decimal:
    """What the user holds of the thing this order trades (crypto: the base currency, its total:
    what resting sells hold is still in it; event contracts: contracts of this outcome)."""
    if order.instrument_type == InstrumentType.EVENT:
        held = Decimal(0)
        for p in inputs.positions or []:
            if p.instrument != order.instrument:
                continue
            outcome = p.outcome or (Outcome.YES if p.quantity >= 0 else Outcome.NO)
            if outcome == order.outcome:
                held += abs(p.quantity)
        return held
    balance = (inputs.balances or {}).get(instrument.base)
    return balance.total if balance else Decimal(0)


def _activity_scope(order: Order, now: datetime, since: datetime | None = None) -> selectors.ActivityScope:
    return selectors.ActivityScope(
        user_id=order.user_id,
        order_id=order.pk,
        instrument=order.instrument,
        instrument_type=order.instrument_type,
        venue=order.exchange,
        side=order.side,
        outcome=order.outcome,
        now=now,
        risk_codes=_RISK_SET,
        history=settings.K2_RISK_FAT_FINGER_QUANTITY_HISTORY,
        holds_since=since or now,
    )


def risk_lock(*, order: Order, inputs: RiskInputs, now: datetime) -> selectors.RiskLock:
    """Inside the risk transaction: lock the order and its user's checks; its status now, the
    user's recent activity (with the orders submitted since `holds_since`) and the active kill
    switches under the lock (`selectors.order_lock_for_risk`)."""
    return selectors.order_lock_for_risk(_activity_scope(order, now, holds_since(inputs, now)))


@dataclass(frozen=True)
class Verdict:
    """An order that passed every check: its notional, and for an event-contract market order
    the protection price it goes out at (`event_market_price_limit`)."""

    notional: Decimal
    price_limit: Decimal | None = None


def event_market_price_limit(side: str, price: Decimal, cents: Decimal) -> Decimal:
    """The worst price an event-contract market order may fill at: `price` (the outcome's latest)
    plus, for a buy, or minus, for a sell, `cents`; on the cent grid, inside the band, and within
    the contract's 0.01-0.99."""
    band = Decimal(cents) / HUNDRED
    if side == Side.BUY:
        limit = (price + band).quantize(CENT, rounding=ROUND_FLOOR)
    else:
        limit = (price - band).quantize(CENT, rounding=ROUND_CEILING)
    return min(max(limit, EVENT_MIN_PRICE), EVENT_MAX_PRICE)


def risk_check(
    *,
    order: Order,
    instrument: Instrument,
    inputs: RiskInputs,
    now: datetime,
    activity: selectors.RecentActivity | None = None,
) -> Verdict:
    """Run every check on a locked, pending order; return the verdict or raise `RiskRejection`.
    Call inside the transaction that holds `risk_lock` for the order, with the activity it read
    (None: read it now)."""
    switches = inputs.switches
    for switch in switches:
        if switch.mode == KillSwitchMode.HALT:
            raise RiskRejection("TRADING_HALTED", {"scope": switch.scope, "reason": switch.reason})
    if inputs.venue_error is not None:
        raise RiskRejection(
            inputs.venue_error.code if inputs.venue_error.code not in RISK_CODES else "EXCHANGE_UNAVAILABLE",
            {"venue": order.exchange, "stage": "risk"},
            message="The venue could not be reached to check the order; nothing was sent.",
        )
    limits = limits_for(user_id=order.user_id, instrument_type=order.instrument_type, rows=inputs.limit_rows)
    is_event = order.instrument_type == InstrumentType.EVENT
    ref = inputs.reference_price
    # Event prices compare as YES-equivalents (a NO at p is a YES at 1 - p).
    yes_price = (ONE - order.price if order.outcome == Outcome.NO else order.price) if order.price else None

    if activity is None:
        activity = selectors.recent_activity(_activity_scope(order, now))
    # What this order and the user's other live orders of its side (and outcome) would trade.
    committed = order.quantity + activity.resting

    if any(s.mode == KillSwitchMode.REDUCE_ONLY for s in switches):
        held = _position(order, instrument, inputs)
        if order.side != Side.SELL or committed > held:
            attempted = committed if order.side == Side.SELL else order.quantity
            raise RiskRejection(
                "REDUCE_ONLY", {"side": order.side, "attempted": _d(attempted), "position": _d(held)}
            )

    per_second, per_minute = activity.last_second, activity.last_minute
    if per_second >= limits.max_orders_per_second:
        raise RiskRejection(
            "RISK_VELOCITY",
            {"window": "1s", "limit": limits.max_orders_per_second, "attempted": per_second + 1},
        )
    if per_minute >= limits.max_orders_per_minute:
        raise RiskRejection(
            "RISK_VELOCITY",
            {"window": "1m", "limit": limits.max_orders_per_minute, "attempted": per_minute + 1},
        )

    # Price: the order's own for limits; the reference for market orders (event: the outcome's).
    if order.price is not None:
        unit_price = order.price
    elif ref is not None:
        unit_price = (ONE - ref if order.outcome == Outcome.NO else ref) if is_event else ref
    else:
        raise RiskRejection("PRICE_UNAVAILABLE", {"instrument": order.instrument})
    mark = unit_price if is_event else (ref or unit_price)  # what a position is worth
    price_limit = None
    if is_event and order.order_type == OrderType.MARKET:
        price_limit = event_market_price_limit(order.side, unit_price, limits.fat_finger_cents)
        if order.side == Side.BUY:
            unit_price = price_limit  # what it may cost at worst
    notional = order.quantity * unit_price

    if notional > limits.max_order_notional:
        raise RiskRejection(
            "RISK_MAX_NOTIONAL", {"limit": _d(limits.max_order_notional), "attempted": _d(notional)}
        )
    used = activity.daily_notional
    if used + notional > limits.max_daily_notional:
        raise RiskRejection(
            "RISK_DAILY_NOTIONAL",
            {"limit": _d(limits.max_daily_notional), "used": _d(used), "attempted": _d(used + notional)},
        )

    if order.order_type == OrderType.LIMIT and yes_price is not None:
        if ref is None:
            if not order.post_only:
                raise RiskRejection("PRICE_UNAVAILABLE", {"instrument": order.instrument})
        elif is_event:
            cents = abs(yes_price - ref) * HUNDRED
            if cents > limits.fat_finger_cents:
                raise RiskRejection(
                    "RISK_FAT_FINGER_PRICE",
                    {
                        "limit_cents": _d(limits.fat_finger_cents),
                        "attempted_cents": _d(cents),
                        "reference": _d(ref),
                    },
                )
        elif ref > 0:
            percent = abs(yes_price - ref) / ref * HUNDRED
            if percent > limits.fat_finger_percent:
                raise RiskRejection(
                    "RISK_FAT_FINGER_PRICE",
                    {
                        "limit_percent": _d(limits.fat_finger_percent),
                        "attempted_percent": _d(percent.quantize(Decimal("0.01"))),
                        "reference": _d(ref),
                    },
                )

    history = activity.quantities
    if len(history) >= settings.K2_RISK_FAT_FINGER_QUANTITY_MIN_HISTORY:
        median = Decimal(statistics.median(history))
        cap = median * limits.fat_finger_quantity_multiple
        if order.quantity > cap:
            raise RiskRejection(
                "RISK_FAT_FINGER_QUANTITY",
                {"limit": _d(cap), "attempted": _d(order.quantity), "median": _d(median)},
            )

    if order.side == Side.BUY:
        held = _position(order, instrument, inputs)
        after = (held + committed) * mark
        if after > limits.max_position_notional:
            raise RiskRejection(
                "RISK_MAX_POSITION",
                {"limit": _d(limits.max_position_notional), "attempted": _d(after), "position": _d(held)},
            )
    elif is_event:
        # A sell closes contracts held: beyond them the venue would open the other outcome.
        held = _position(order, instrument, inputs)
        if committed > held:
            raise RiskRejection(
                "INSUFFICIENT_POSITION",
                {
                    "instrument": order.instrument,
                    "outcome": order.outcome,
                    "held": _d(held),
                    "attempted": _d(committed),
                },
            )

    _check_balance(order, instrument, inputs, notional)
    return Verdict(notional, price_limit)


_RISK_SET = frozenset(RISK_CODES)


def _check_balance(order: Order, instrument: Instrument, inputs: RiskInputs, notional: Decimal) -> None:
    balances = inputs.balances or {}
    if order.side == Side.BUY:
        currency = instrument.quote or "USD"
        buffer = ONE + Decimal(settings.K2_RISK_FEE_BUFFER_PERCENT) / HUNDRED
        required = notional * buffer
    elif order.instrument_type == InstrumentType.EVENT:
        return  # selling contracts: checked against the position (INSUFFICIENT_POSITION)
    else:
        currency, required = instrument.base, order.quantity
    balance = balances.get(currency)
    available = balance.available if balance else Decimal(0)
    if available < required:
        raise RiskRejection(
            "INSUFFICIENT_BALANCE",
            {"currency": currency, "required": _d(required), "available": _d(available)},
            message=f"Insufficient {currency} balance at {order.exchange}.",
        )


def venue_order_type(order_type: str) -> VenueOrderType:
    return VenueOrderType(order_type)
