"""Kalshi Trade API v2 simulator: REST under `/trade-api/v2`, WebSocket at `/trade-api/ws/v2`.

Speaks the current shape (era C: fixed-point `*_dollars` / `*_fp` strings, V2 order endpoints)
and, with `legacy_cents` (on by default), adds the era-A integer twins and keeps the legacy
`/portfolio/orders` writes working, so client libraries generated before the 2026 migration
(Kalshi's own `kalshi_python_sync` 3.2.0) work unchanged. RSA-PSS signatures and the timestamp
window are verified on every private request and on the WebSocket upgrade; rate limits are the
venue's read/write token buckets by usage tier (429 `{"error": "too many requests"}`).

Markets are engine books in YES prices (see `accounting.py`). Control endpoints beyond the
framework's `/_sim/`: `POST /_sim/accounts` returns `{api_key_id, private_key_pem}` (a fresh RSA
key; only the public half is kept); `POST /_sim/markets/{ticker}/close`;
`POST /_sim/markets/{ticker}/settle {"result": "yes"|"no"}` (closed -> determined -> finalized,
paying $1.00 per winning contract).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.exchanges.adapters.kalshi import signing
from apps.exchanges.simulators.engine import (
    Account,
    BookEvent,
    EngineEvent,
    EngineReject,
    FillEvent,
    MatchingEngine,
    OrderEvent,
    Reject,
    SimInstrument,
    SimOrder,
    SimSide,
    TradeEvent,
)
from apps.exchanges.simulators.faults import FaultKind
from apps.exchanges.simulators.kalshi import render
from apps.exchanges.simulators.kalshi.accounting import EventAccounting, EventPosition, KalshiFees
from apps.exchanges.simulators.kalshi.liquidity import EventContractMarket
from apps.exchanges.simulators.kalshi.seed import EventSeed, MarketSeed, SeriesSeed, catalogue
from apps.exchanges.simulators.liquidity import MM_ACCOUNT, TAKER_ACCOUNT
from apps.exchanges.simulators.server import MALFORMED_ROW, SimConfig, SimSocket, SimulatorServer

log = logging.getLogger(__name__)
PREFIX = "/trade-api/v2"
WS_PATH = "/trade-api/ws/v2"
ONE = Decimal(1)
ZERO = Decimal(0)
CENT = Decimal("0.01")
SYSTEM = (MM_ACCOUNT, TAKER_ACCOUNT)

# tokens per second (read, write) and seconds of budget per bucket (spec section 6)
TIERS: dict[str, tuple[int, int, float, float]] = {
    "basic": (200, 100, 2.0, 1.0),
    "advanced": (300, 300, 2.0, 2.0),
    "expert": (600, 600, 1.0, 2.0),
    "premier": (1000, 1000, 1.0, 2.0),
    "paragon": (2000, 2000, 1.0, 2.0),
    "prime": (4000, 4000, 1.0, 2.0),
    "prestige": (10000, 8000, 1.0, 2.0),
}
COST = 10
V2_CANCEL_COST = 2
LEGACY_WRITE_COST = 100  # legacy mutations cost 10x the V2 price since 2026-06-04
TIF = {"good_till_canceled": "gtc", "immediate_or_cancel": "ioc", "fill_or_kill": "fok"}
STATUS_FILTER = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed", "determined", "disputed", "amended"},
    "settled": {"finalized"},
}
CHANNELS = {
    "orderbook_delta",
    "ticker",
    "trade",
    "fill",
    "user_orders",
    "market_positions",
    "market_lifecycle_v2",
}
TICKERS_REQUIRED = {"orderbook_delta"}


@dataclass
class KalshiSimConfig(SimConfig):
    """`SimConfig` plus Kalshi's switches (all settable through `POST /_sim/config`)."""

    auth_window_s: float = 30.0
    heartbeat_interval: float = 10.0
    legacy_cents: bool = True
    default_balances: dict[str, str] = field(default_factory=lambda: {"USD": "100000"})


def kalshi_config(config: SimConfig | None) -> KalshiSimConfig:
    if isinstance(config, KalshiSimConfig):
        return config
    if config is None:
        return KalshiSimConfig()
    values = dataclasses.asdict(config)
    if values.get("default_balances") == SimConfig().default_balances:
        values.pop("default_balances")  # the crypto default means "no preference" here
    if values.get("auth_window_s") == SimConfig().auth_window_s:
        values.pop("auth_window_s")
    if values.get("heartbeat_interval") == SimConfig().heartbeat_interval:
        values.pop("heartbeat_interval")
    return KalshiSimConfig(**values)


class KalshiError(Exception):
    """A Kalshi error answer: `{"error": {"code", "message", "details"?, "service"}}`."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None) -> None:
        self.status, self.code, self.message, self.details = status, code, message, details
        super().__init__(message)

    def response(self) -> web.Response:
        error: dict[str, Any] = {"code": self.code, "message": self.message, "service": "exchange"}
        if self.details:
            error["details"] = self.details
        return web.json_response({"error": error}, status=self.status)


class TooManyRequests(Exception):
    pass


REJECTS: dict[Reject, tuple[int, str]] = {
    Reject.UNKNOWN_INSTRUMENT: (404, "market_not_found"),
    Reject.MARKET_CLOSED: (409, "market_closed"),
    Reject.BAD_QUANTITY: (400, "invalid_order"),
    Reject.BAD_PRICE: (400, "invalid_price"),
    Reject.BAD_TIF: (400, "invalid_order"),
    Reject.DUPLICATE_CLIENT_ID: (409, "order_already_exists"),
    Reject.INSUFFICIENT_BALANCE: (400, "insufficient_balance"),
    Reject.TOO_MANY_ORDERS: (400, "too_many_open_orders"),
}


@dataclass(eq=False)
class WsSub:
    sid: int
    channel: str
    tickers: set[str] | None
    seq: int = 0
    books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = field(default_factory=dict)

    def wants(self, ticker: str) -> bool:
        return self.tickers is None or ticker in self.tickers


@dataclass
class SocketState:
    subs: dict[int, WsSub] = field(default_factory=dict)
    sids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


Handler = Callable[[web.Request, Account | None], Awaitable[web.Response]]


def event_of(inst: SimInstrument) -> EventSeed:
    event = inst.extra["event"]
    assert isinstance(event, EventSeed)
    return event


def seed_of(inst: SimInstrument) -> MarketSeed:
    seed = inst.extra["seed"]
    assert isinstance(seed, MarketSeed)
    return seed


def _dec(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise KalshiError(400, "invalid_parameters", f"{what} is not a number") from exc
    if not number.is_finite():
        raise KalshiError(400, "invalid_parameters", f"{what} is not a number")
    return number


def _int_param(request: web.Request, key: str, default: int, maximum: int) -> int:
    raw = request.query.get(key)
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError as exc:
        raise KalshiError(400, "invalid_parameters", f"{key} must be an integer") from exc
    if value < 0:
        raise KalshiError(400, "invalid_parameters", f"{key} must not be negative")
    return min(value or default, maximum)


def _page(rows: list[Any], request: web.Request, default: int, maximum: int) -> tuple[list[Any], str]:
    limit = _int_param(request, "limit", default, maximum)
    cursor = request.query.get("cursor") or "0"
    try:
        start = int(cursor)
    except ValueError as exc:
        raise KalshiError(400, "invalid_parameters", "bad cursor") from exc
    page = rows[start : start + limit]
    return page, str(start + limit) if start + limit < len(rows) else ""


def _seconds(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw in (None, ""):
        return None
    try:
        return int(str(raw))
    except ValueError as exc:
        raise KalshiError(400, "invalid_parameters", f"{key} must be Unix seconds") from exc


class KalshiSimulator(SimulatorServer):
    """The Kalshi venue on the simulator framework."""

    venue = "kalshi"
    config: KalshiSimConfig

    def __init__(self, config: SimConfig | None = None) -> None:
        self.public_keys: dict[str, rsa.RSAPublicKey] = {}
        self.tiers: dict[str, str] = {}
        self.series: dict[str, SeriesSeed] = {}
        self.events: dict[str, EventSeed] = {}
        self.settlements: dict[str, list[dict[str, Any]]] = {}
        self.ws_state: dict[SimSocket, SocketState] = {}
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.volume: dict[str, Decimal] = {}
        self.dirty_tickers: set[str] = set()
        super().__init__(kalshi_config(config))

    # ---- framework hooks ------------------------------------------------------------------
    def build_engine(self) -> MatchingEngine:
        series, events = catalogue()
        self.series = {s.ticker: s for s in series}
        self.events = {e.event_ticker: e for e in events}
        instruments = []
        for ev in events:
            s = self.series[ev.series_ticker]
            for m in ev.markets:
                instruments.append(
                    SimInstrument(
                        m.ticker,
                        m.ticker,
                        "USD",
                        CENT,
                        ONE,
                        ONE,
                        m.start_price,
                        maker_fee_rate=ZERO,
                        taker_fee_rate=ZERO,
                        extra={
                            "seed": m,
                            "event": ev,
                            "fee_type": s.fee_type,
                            "fee_multiplier": s.fee_multiplier,
                            "status": "active",
                            "result": "",
                            "created_ns": int(ev.open_time.timestamp() * 1e9),
                        },
                    )
                )
        accounting = EventAccounting()
        engine = MatchingEngine(
            instruments, fees=KalshiFees(), accounting=accounting, max_open_per_instrument=1000
        )
        accounting.engine = engine
        return engine

    def on_reset(self) -> None:
        # The framework seeded a generic market; rebuild with event-contract liquidity.
        self.engine = self.build_engine()
        self.market = EventContractMarket(self.engine, seed=self.config.seed)
        self.market.seed_history(self.config.history_minutes)
        self.public_keys = {}
        self.tiers = {}
        self.settlements = {}
        self.ws_state = {}
        self.buckets = {}
        self.dirty_tickers = set()
        self.volume = {s: sum((t.quantity for t in tr), ZERO) for s, tr in self.engine.trades.items()}
        self.engine.listeners.append(self._on_engine_event)

    @property
    def accounting(self) -> EventAccounting:
        assert isinstance(self.engine.accounting, EventAccounting)
        return self.engine.accounting

    def add_venue_routes(self, app: web.Application) -> None:
        app.router.add_post("/_sim/markets/{ticker}/settle", self._sim_settle)
        app.router.add_post("/_sim/markets/{ticker}/close", self._sim_close)
        app.router.add_get(WS_PATH, self._ws)
        r = app.router
        get, post, delete = r.add_get, r.add_post, r.add_delete
        p = PREFIX
        get(p + "/exchange/status", self._wrap(self._exchange_status, auth=False))
        get(p + "/account/limits", self._wrap(self._account_limits))
        get(p + "/series", self._wrap(self._series_list, auth=False))
        get(p + "/series/{series}", self._wrap(self._series_one, auth=False))
        get(p + "/series/{series}/markets/{ticker}/candlesticks", self._wrap(self._candles, auth=False))
        get(p + "/events", self._wrap(self._events_list, auth=False))
        get(p + "/events/{event}", self._wrap(self._event_one, auth=False))
        get(p + "/markets", self._wrap(self._markets_list, auth=False))
        get(p + "/markets/trades", self._wrap(self._trades, auth=False))
        get(p + "/markets/orderbooks", self._wrap(self._orderbooks, auth=False))
        get(p + "/markets/{ticker}", self._wrap(self._market_one, auth=False))
        get(p + "/markets/{ticker}/orderbook", self._wrap(self._orderbook, auth=False))
        get(p + "/portfolio/balance", self._wrap(self._balance))
        get(p + "/portfolio/summary/total_resting_order_value", self._wrap(self._resting_value))
        get(p + "/portfolio/positions", self._wrap(self._positions))
        get(p + "/portfolio/fills", self._wrap(self._fills))
        get(p + "/portfolio/settlements", self._wrap(self._settlements))
        get(p + "/portfolio/orders", self._wrap(self._orders_list))
        post(p + "/portfolio/orders", self._wrap(self._legacy_create, bucket="write", cost=LEGACY_WRITE_COST))
        get(p + "/portfolio/orders/{order_id}", self._wrap(self._order_one))
        delete(
            p + "/portfolio/orders/{order_id}",
            self._wrap(self._legacy_cancel, bucket="write", cost=LEGACY_WRITE_COST),
        )
        post(p + "/portfolio/events/orders", self._wrap(self._v2_create, bucket="write"))
        delete(
            p + "/portfolio/events/orders/{order_id}",
            self._wrap(self._v2_cancel, bucket="write", cost=V2_CANCEL_COST),
        )
        post(p + "/login", self._login_gone)
        r.add_route("*", p + "/{tail:.*}", self._not_found)

    def fault_method(self, request: web.Request) -> str | None:
        if not request.path.startswith(PREFIX + "/"):
            return None
        return f"{request.method} {request.path[len(PREFIX) :]}"

    def http_error(self, kind: FaultKind, method: str) -> web.Response:
        if kind is FaultKind.HTTP_429:
            return web.json_response({"error": "too many requests"}, status=429)
        if kind is FaultKind.TIMEOUT_AFTER_EXECUTE:
            return KalshiError(504, "gateway_timeout", "Gateway timeout").response()
        if kind is FaultKind.MAINTENANCE:
            return KalshiError(503, "exchange_paused", "Trading on the exchange is paused").response()
        return KalshiError(500, "internal_server_error", "Internal server error").response()

    def malformed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The fields naming the market stay, so the message reaches that market's handling."""
        body = payload.get("msg") or {}
        named = {k: body[k] for k in ("market_ticker", "ticker", "market_id") if k in body}
        return {**payload, "msg": {**named, **MALFORMED_ROW}}

    def _data(self, sock: SimSocket, ticker: str, payload: dict[str, Any]) -> None:
        """A channel's data; a `malformed_ws` fault matches `{type}.{ticker}` (`user_order.KXBTC-...`)."""
        self.send_data(sock, f"{payload['type']}.{ticker}", payload)

    def venue_loops(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self._publisher_loop]

    # ---- accounts and auth ------------------------------------------------------------------
    def create_kalshi_account(
        self, balances: dict[str, str] | None = None, tier: str = "basic"
    ) -> tuple[Account, str]:
        """A funded account with a fresh RSA key: returns the account and the private key PEM."""
        account = self.create_account(balances)
        pem, public = signing.generate_private_key_pem()
        self.engine.accounts_by_key.pop(account.api_key, None)
        account.api_key, account.api_secret = str(uuid.uuid4()), ""
        self.engine.accounts_by_key[account.api_key] = account
        self.public_keys[account.api_key] = public
        self.tiers[account.account_id] = tier
        return account, pem

    async def _sim_accounts(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        balances, tier = body.get("balances"), str(body.get("tier") or "basic")
        try:
            if balances is not None and not isinstance(balances, dict):
                raise ValueError("balances must be an object")
            for amount in (balances or {}).values():
                if Decimal(str(amount)) < 0:
                    raise ValueError("balances must not be negative")
            if tier not in TIERS:
                raise ValueError(f"tier must be one of {', '.join(TIERS)}")
        except (ValueError, InvalidOperation) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        account, pem = self.create_kalshi_account(
            {str(k).upper(): str(v) for k, v in balances.items()} if balances else None, tier
        )
        return web.json_response(
            {
                "api_key_id": account.api_key,
                "private_key_pem": pem,
                "api_key": account.api_key,  # the framework's generic names for the same pair
                "api_secret": pem,
                "account_id": account.account_id,
                "tier": tier,
                "balances": self._balances_json(account),
            },
            status=201,
        )

    def authenticate(self, request: web.Request) -> Account:
        """Verify the signed headers over `timestamp + METHOD + path` (query excluded)."""
        key = request.headers.get(signing.KEY_HEADER, "")
        ts = request.headers.get(signing.TIMESTAMP_HEADER, "")
        sig = request.headers.get(signing.SIGNATURE_HEADER, "")
        if not key or not ts or not sig:
            raise KalshiError(401, "authentication_error", "authentication failed", "MISSING_AUTH_HEADERS")
        public = self.public_keys.get(key)
        account = self.engine.accounts_by_key.get(key)
        if public is None or account is None or account.is_system:
            raise KalshiError(401, "authentication_error", "authentication failed", "INCORRECT_API_KEY")
        if not ts.isdigit() or abs(time.time() * 1000 - int(ts)) > self.config.auth_window_s * 1000:
            raise KalshiError(401, "authentication_error", "authentication failed", "INVALID_TIMESTAMP")
        if not signing.verify(public, sig, ts, request.method, request.raw_path.split("?", 1)[0]):
            raise KalshiError(
                401, "authentication_error", "authentication failed", "INCORRECT_API_KEY_SIGNATURE"
            )
        return account

    def _rate_ok(self, scope: str, tier: str, bucket: str, cost: float) -> bool:
        if not self.config.rate_limits:
            return True
        read, write, read_s, write_s = TIERS[tier]
        rate, seconds = (read, read_s) if bucket == "read" else (write, write_s)
        capacity = rate * seconds
        now = time.monotonic()
        tokens, ts = self.buckets.get((scope, bucket), (capacity, now))
        tokens = min(capacity, tokens + (now - ts) * rate)
        if tokens < cost:
            self.buckets[(scope, bucket)] = (tokens, now)
            return False
        self.buckets[(scope, bucket)] = (tokens - cost, now)
        return True

    def _wrap(self, handler: Handler, *, auth: bool = True, bucket: str = "read", cost: float = COST) -> Any:
        async def route(request: web.Request) -> web.Response:
            try:
                account: Account | None = None
                if auth or signing.KEY_HEADER in request.headers:
                    account = self.authenticate(request)
                if account is not None:
                    scope, tier = f"key:{account.api_key}", self.tiers.get(account.account_id, "basic")
                else:
                    scope, tier = f"ip:{request.remote}", "basic"
                if not self._rate_ok(scope, tier, bucket, cost):
                    raise TooManyRequests
                return await handler(request, account)
            except KalshiError as err:
                return err.response()
            except TooManyRequests:
                return web.json_response({"error": "too many requests"}, status=429)

        return route

    async def _login_gone(self, request: web.Request) -> web.Response:
        return KalshiError(
            410, "gone", "Password login was replaced by API keys; sign requests instead"
        ).response()

    async def _not_found(self, request: web.Request) -> web.Response:
        return KalshiError(404, "not_found", "not found").response()

    # ---- market data --------------------------------------------------------------------------
    def _inst(self, ticker: str) -> SimInstrument:
        inst = self.engine.instruments.get(ticker)
        if inst is None:
            raise KalshiError(404, "not_found", f"market {ticker} not found")
        return inst

    def _sides(self, ticker: str) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        """YES bids and NO bids: an engine ask at p is a NO bid at 1 - p."""
        book = self.engine.books[ticker]
        yes = {p: q for p, q, _ in book.depth(SimSide.BUY, 1000)}
        no = {ONE - p: q for p, q, _ in book.depth(SimSide.SELL, 1000)}
        return yes, no

    def _open_interest(self, ticker: str) -> Decimal:
        return sum(
            (p.position for (_, t), p in self.accounting.positions.items() if t == ticker and p.position > 0),
            ZERO,
        )

    def render_market(self, inst: SimInstrument) -> dict[str, Any]:
        x = inst.extra
        seed, ev = seed_of(inst), event_of(inst)
        book = self.engine.books[inst.symbol]
        bid, ask = book.best(SimSide.BUY), book.best(SimSide.SELL)
        bid_size = sum((o.remaining for o in book.levels[SimSide.BUY].get(bid, [])), ZERO) if bid else ZERO
        ask_size = sum((o.remaining for o in book.levels[SimSide.SELL].get(ask, [])), ZERO) if ask else ZERO
        trades = self.engine.trades[inst.symbol]
        last = trades[-1].price if trades else ZERO
        previous = trades[0].price if trades else ZERO
        yes_bid, yes_ask = bid or ZERO, ask or ONE
        status = str(x["status"])
        result = str(x["result"])
        settled = x.get("settled_ns")
        closed_at = x.get("closed_at")
        settle_value = (ONE if result == "yes" else ZERO) if result else None
        volume, oi = self.volume.get(inst.symbol, ZERO), self._open_interest(inst.symbol)
        close = closed_at if isinstance(closed_at, datetime) else ev.close_time
        row: dict[str, Any] = {
            "ticker": inst.symbol,
            "event_ticker": ev.event_ticker,
            "market_type": "binary",
            "title": seed.title,
            "subtitle": seed.yes_sub_title,
            "yes_sub_title": seed.yes_sub_title,
            "no_sub_title": seed.yes_sub_title,
            "created_time": render.rfc3339(ev.open_time),
            "updated_time": render.rfc3339(time.time_ns()),
            "open_time": render.rfc3339(ev.open_time),
            "close_time": render.rfc3339(close),
            "expected_expiration_time": render.rfc3339(ev.close_time),
            "expiration_time": render.rfc3339(ev.close_time),
            "latest_expiration_time": render.rfc3339(ev.close_time),
            "settlement_timer_seconds": 300,
            "status": status,
            "yes_bid_dollars": render.d4(yes_bid),
            "yes_bid_size_fp": render.fp2(bid_size),
            "yes_ask_dollars": render.d4(yes_ask),
            "yes_ask_size_fp": render.fp2(ask_size),
            "no_bid_dollars": render.d4(ONE - yes_ask),
            "no_ask_dollars": render.d4(ONE - yes_bid),
            "last_price_dollars": render.d4(last),
            "previous_yes_bid_dollars": render.d4(yes_bid),
            "previous_yes_ask_dollars": render.d4(yes_ask),
            "previous_price_dollars": render.d4(previous),
            "volume_fp": render.fp2(volume),
            "volume_24h_fp": render.fp2(volume),
            "open_interest_fp": render.fp2(oi),
            "notional_value_dollars": "1.0000",
            "liquidity_dollars": "0.0000",
            "result": result,
            "can_close_early": True,
            "early_close_condition": None,
            "expiration_value": "",
            "settlement_value_dollars": render.d4(settle_value) if settle_value is not None else None,
            "settlement_ts": render.rfc3339(settled) if isinstance(settled, int) else None,
            "fee_waiver_expiration_time": None,
            "strike_type": seed.strike_type,
            "floor_strike": seed.floor_strike,
            "cap_strike": seed.cap_strike,
            "rules_primary": f"If the outcome is {seed.yes_sub_title}, the market resolves to Yes.",
            "rules_secondary": "Simulated market: settled through the simulator's control endpoint.",
            "price_level_structure": "linear_cent",
            "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
            "fractional_trading_enabled": False,
            "is_provisional": False,
            "mve_collection_ticker": None,
            "mve_selected_legs": None,
            "exchange_index": 0,
        }
        if self.config.legacy_cents:
            row.update(
                response_price_units="usd_cent",
                yes_bid=render.cents(yes_bid),
                yes_ask=render.cents(yes_ask),
                no_bid=render.cents(ONE - yes_ask),
                no_ask=render.cents(ONE - yes_bid),
                last_price=render.cents(last),
                previous_yes_bid=render.cents(yes_bid),
                previous_yes_ask=render.cents(yes_ask),
                previous_price=render.cents(previous),
                volume=render.whole(volume),
                volume_24h=render.whole(volume),
                open_interest=render.whole(oi),
                liquidity=0,
                notional_value=100,
                settlement_value=render.cents(settle_value) if settle_value is not None else None,
                tick_size=1,
                category=self.series[ev.series_ticker].category,
                risk_limit_cents=0,
            )
        return row

    def render_event(self, ev: EventSeed, *, nested: bool) -> dict[str, Any]:
        s = self.series[ev.series_ticker]
        row: dict[str, Any] = {
            "event_ticker": ev.event_ticker,
            "series_ticker": ev.series_ticker,
            "title": ev.title,
            "sub_title": ev.sub_title,
            "mutually_exclusive": ev.mutually_exclusive,
            "collateral_return_type": "binary",
            "category": s.category,
            "strike_date": render.rfc3339(ev.close_time),
            "strike_period": None,
            "available_on_brokers": True,
            "product_metadata": None,
            "settlement_sources": [],
            "last_updated_ts": render.rfc3339(time.time_ns()),
        }
        if nested:
            row["markets"] = [self.render_market(self.engine.instruments[m.ticker]) for m in ev.markets]
        return row

    def render_series(self, s: SeriesSeed) -> dict[str, Any]:
        return {
            "ticker": s.ticker,
            "title": s.title,
            "category": s.category,
            "frequency": s.frequency,
            "tags": s.tags,
            "settlement_sources": [],
            "contract_url": "",
            "contract_terms_url": "",
            "fee_type": s.fee_type,
            "fee_multiplier": float(s.fee_multiplier),
            "additional_prohibitions": [],
            "product_metadata": None,
        }

    async def _exchange_status(self, request: web.Request, account: Account | None) -> web.Response:
        return web.json_response(
            {"exchange_active": True, "trading_active": True, "exchange_index_statuses": []}
        )

    async def _account_limits(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        tier = self.tiers.get(account.account_id, "basic")
        read, write, read_s, write_s = TIERS[tier]
        return web.json_response(
            {
                "usage_tier": tier,
                "read": {"refill_rate": read, "bucket_capacity": read * read_s},
                "write": {"refill_rate": write, "bucket_capacity": write * write_s},
                "grants": [],
            }
        )

    async def _series_list(self, request: web.Request, account: Account | None) -> web.Response:
        category = request.query.get("category")
        rows = [self.render_series(s) for s in self.series.values() if not category or s.category == category]
        return web.json_response({"series": rows})

    async def _series_one(self, request: web.Request, account: Account | None) -> web.Response:
        s = self.series.get(request.match_info["series"])
        if s is None:
            raise KalshiError(404, "not_found", "series not found")
        return web.json_response({"series": self.render_series(s)})

    def _event_status_ok(self, ev: EventSeed, status: str | None) -> bool:
        if not status:
            return True
        wanted = STATUS_FILTER.get(status)
        if wanted is None:
            raise KalshiError(400, "invalid_parameters", f"invalid status filter {status}")
        return any(self.engine.instruments[m.ticker].extra["status"] in wanted for m in ev.markets)

    async def _events_list(self, request: web.Request, account: Account | None) -> web.Response:
        q = request.query
        nested = q.get("with_nested_markets", "false").lower() == "true"
        series = q.get("series_ticker")
        events = [
            ev
            for ev in self.events.values()
            if (not series or ev.series_ticker == series) and self._event_status_ok(ev, q.get("status"))
        ]
        page, cursor = _page(events, request, 200, 200)
        return web.json_response(
            {
                "events": [self.render_event(ev, nested=nested) for ev in page],
                "cursor": cursor,
                "milestones": [],
            }
        )

    async def _event_one(self, request: web.Request, account: Account | None) -> web.Response:
        ev = self.events.get(request.match_info["event"])
        if ev is None:
            raise KalshiError(404, "not_found", "event not found")
        nested = request.query.get("with_nested_markets", "false").lower() == "true"
        markets = [self.render_market(self.engine.instruments[m.ticker]) for m in ev.markets]
        return web.json_response({"event": self.render_event(ev, nested=nested), "markets": markets})

    async def _markets_list(self, request: web.Request, account: Account | None) -> web.Response:
        q = request.query
        status = q.get("status")
        wanted = None
        if status:
            wanted = STATUS_FILTER.get(status)
            if wanted is None:
                raise KalshiError(400, "invalid_parameters", f"invalid status filter {status}")
        tickers = {t for t in q.get("tickers", "").split(",") if t}
        rows = []
        for inst in self.engine.instruments.values():
            ev = event_of(inst)
            if q.get("event_ticker") and ev.event_ticker != q["event_ticker"]:
                continue
            if q.get("series_ticker") and ev.series_ticker != q["series_ticker"]:
                continue
            if tickers and inst.symbol not in tickers:
                continue
            if wanted is not None and inst.extra["status"] not in wanted:
                continue
            rows.append(inst)
        page, cursor = _page(rows, request, 100, 1000)
        return web.json_response({"markets": [self.render_market(i) for i in page], "cursor": cursor})

    async def _market_one(self, request: web.Request, account: Account | None) -> web.Response:
        return web.json_response({"market": self.render_market(self._inst(request.match_info["ticker"]))})

    def _book_json(self, ticker: str, depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
        yes, no = self._sides(ticker)
        if depth:
            yes = dict(sorted(yes.items())[-depth:])
            no = dict(sorted(no.items())[-depth:])
        fp = {"yes_dollars": render.levels(yes), "no_dollars": render.levels(no)}
        legacy = {
            "yes": render.levels_cents(yes) or None,
            "no": render.levels_cents(no) or None,
            "yes_dollars": render.levels(yes),
            "no_dollars": render.levels(no),
        }
        return fp, legacy

    async def _orderbook(self, request: web.Request, account: Account | None) -> web.Response:
        inst = self._inst(request.match_info["ticker"])
        depth = _int_param(request, "depth", 0, 100)
        fp, legacy = self._book_json(inst.symbol, depth)
        body: dict[str, Any] = {"orderbook_fp": fp}
        if self.config.legacy_cents:
            body["orderbook"] = legacy
        return web.json_response(body)

    async def _orderbooks(self, request: web.Request, account: Account | None) -> web.Response:
        tickers = [t for t in request.query.get("tickers", "").split(",") if t][:100]
        rows = [{"ticker": t, "orderbook_fp": self._book_json(self._inst(t).symbol, 0)[0]} for t in tickers]
        return web.json_response({"orderbooks": rows})

    async def _trades(self, request: web.Request, account: Account | None) -> web.Response:
        q = request.query
        ticker = q.get("ticker")
        lo, hi = _seconds(request, "min_ts"), _seconds(request, "max_ts")
        sources = [self._inst(ticker).symbol] if ticker else list(self.engine.trades)
        trades = [t for s in sources for t in self.engine.trades[s]]
        trades = [
            t
            for t in trades
            if (lo is None or t.time_ns >= lo * 10**9) and (hi is None or t.time_ns <= hi * 10**9)
        ]
        trades.sort(key=lambda t: t.time_ns, reverse=True)
        page, cursor = _page(trades, request, 100, 1000)
        legacy = self.config.legacy_cents
        return web.json_response(
            {"trades": [render.public_trade(t, legacy=legacy) for t in page], "cursor": cursor}
        )

    async def _candles(self, request: web.Request, account: Account | None) -> web.Response:
        inst = self._inst(request.match_info["ticker"])
        if event_of(inst).series_ticker != request.match_info["series"]:
            raise KalshiError(404, "not_found", "market not in series")
        start, end = _seconds(request, "start_ts"), _seconds(request, "end_ts")
        period = _int_param(request, "period_interval", 1, 1440)
        if start is None or end is None or period not in (1, 60, 1440):
            raise KalshiError(
                400, "invalid_parameters", "start_ts, end_ts and period_interval (1, 60, 1440) required"
            )
        width = period * 60
        buckets: dict[int, list[Any]] = {}
        for t in self.engine.trades[inst.symbol]:
            sec = t.time_ns // 10**9
            if start <= sec <= end:
                buckets.setdefault((sec // width + 1) * width, []).append(t)
        rows = []
        for end_ts, trades in sorted(buckets.items()):
            prices = [t.price for t in trades]
            ohlc = {
                "open_dollars": render.d4(prices[0]),
                "high_dollars": render.d4(max(prices)),
                "low_dollars": render.d4(min(prices)),
                "close_dollars": render.d4(prices[-1]),
            }
            mean = sum(prices, ZERO) / len(prices)
            rows.append(
                {
                    "end_period_ts": end_ts,
                    "price": {
                        **ohlc,
                        "mean_dollars": render.d4(mean),
                        "previous_dollars": render.d4(prices[0]),
                    },
                    "yes_bid": dict(ohlc),
                    "yes_ask": dict(ohlc),
                    "volume_fp": render.fp2(sum((t.quantity for t in trades), ZERO)),
                    "open_interest_fp": render.fp2(self._open_interest(inst.symbol)),
                }
            )
        return web.json_response({"ticker": inst.symbol, "candlesticks": rows})

    # ---- portfolio ----------------------------------------------------------------------------
    async def _balance(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        available = account.available("USD")
        value = ZERO
        for (acct, ticker), p in self.accounting.positions.items():
            if acct == account.account_id and p.position and not p.settled:
                mid = self.market.mid.get(ticker, ZERO)
                value += p.position * mid if p.position > 0 else -p.position * (ONE - mid)
        return web.json_response(
            {
                "balance": render.cents(available),
                "balance_dollars": render.d4(available),
                "portfolio_value": render.cents(value),
                "updated_ts": int(time.time()),
            }
        )

    async def _resting_value(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        return web.json_response({"total_resting_order_value": render.cents(account.holds.get("USD", ZERO))})

    async def _positions(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        q = request.query
        count_filter = {f for f in q.get("count_filter", "").split(",") if f}
        rows: list[tuple[str, EventPosition]] = []
        for (acct, ticker), p in sorted(self.accounting.positions.items()):
            if acct != account.account_id or p.settled or not p.volume:
                continue
            ev = event_of(self.engine.instruments[ticker])
            if q.get("ticker") and ticker != q["ticker"]:
                continue
            if q.get("event_ticker") and ev.event_ticker not in q["event_ticker"].split(","):
                continue
            if "position" in count_filter and not p.position:
                continue
            if "total_traded" in count_filter and not p.total_traded:
                continue
            rows.append((ticker, p))
        page, cursor = _page(rows, request, 100, 1000)
        legacy = self.config.legacy_cents
        resting = {t: sum(1 for o in self.engine.open_orders(account.account_id, t)) for t, _ in page}
        markets = [render.position(t, p, resting[t], legacy=legacy) for t, p in page]
        by_event: dict[str, list[EventPosition]] = {}
        for t, p in page:
            by_event.setdefault(event_of(self.engine.instruments[t]).event_ticker, []).append(p)
        events = [render.event_position(e, ps, legacy=legacy) for e, ps in by_event.items()]
        return web.json_response({"market_positions": markets, "event_positions": events, "cursor": cursor})

    async def _fills(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        q = request.query
        lo, hi = _seconds(request, "min_ts"), _seconds(request, "max_ts")
        fills = [
            f
            for f in reversed(self.engine.fills[account.account_id])
            if (not q.get("ticker") or f.instrument == q["ticker"])
            and (not q.get("order_id") or f.order_id == q["order_id"])
            and (lo is None or f.time_ns >= lo * 10**9)
            and (hi is None or f.time_ns <= hi * 10**9)
        ]
        page, cursor = _page(fills, request, 100, 1000)
        legacy = self.config.legacy_cents
        rows = [render.fill(f, self.engine.orders.get(f.order_id), legacy=legacy) for f in page]
        return web.json_response({"fills": rows, "cursor": cursor})

    async def _settlements(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        q = request.query
        rows = [
            r
            for r in reversed(self.settlements.get(account.account_id, []))
            if (not q.get("ticker") or r["ticker"] == q["ticker"])
            and (not q.get("event_ticker") or r["event_ticker"] == q["event_ticker"])
        ]
        page, cursor = _page(rows, request, 100, 1000)
        if not self.config.legacy_cents:
            page = [
                {
                    k: v
                    for k, v in r.items()
                    if k not in ("yes_count", "no_count", "yes_total_cost", "no_total_cost")
                }
                for r in page
            ]
        return web.json_response({"settlements": page, "cursor": cursor})

    # ---- orders -------------------------------------------------------------------------------
    def _account_order(self, account: Account, order_id: str) -> SimOrder:
        order = self.engine.orders.get(order_id)
        if order is None or order.account_id != account.account_id:
            raise KalshiError(404, "not_found", "order not found")
        return order

    async def _orders_list(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        q = request.query
        status = q.get("status")
        if status and status not in ("resting", "canceled", "executed"):
            raise KalshiError(400, "invalid_parameters", f"invalid status {status}")
        lo, hi = _seconds(request, "min_ts"), _seconds(request, "max_ts")
        events = {e for e in q.get("event_ticker", "").split(",") if e}
        orders = [
            o
            for o in reversed(self.engine.account_orders[account.account_id])
            if (not q.get("ticker") or o.instrument == q["ticker"])
            and (not events or event_of(self.engine.instruments[o.instrument]).event_ticker in events)
            and (not status or render.ORDER_STATUS[o.status] == status)
            and (not q.get("client_order_id") or o.client_oid == q["client_order_id"])
            and (lo is None or o.created_ns >= lo * 10**9)
            and (hi is None or o.created_ns <= hi * 10**9)
        ]
        page, cursor = _page(orders, request, 100, 1000)
        legacy = self.config.legacy_cents
        return web.json_response({"orders": [render.order(o, legacy=legacy) for o in page], "cursor": cursor})

    async def _order_one(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        order = self._account_order(account, request.match_info["order_id"])
        return web.json_response({"order": render.order(order, legacy=self.config.legacy_cents)})

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError as exc:
            raise KalshiError(400, "invalid_parameters", "invalid JSON body") from exc
        if not isinstance(body, dict):
            raise KalshiError(400, "invalid_parameters", "the body must be a JSON object")
        return body

    def submit(
        self,
        account: Account,
        *,
        ticker: Any,
        book_side: str,
        yes_price: Decimal,
        count: Decimal,
        tif: str,
        client_order_id: str | None,
        post_only: bool = False,
        reduce_only: bool = False,
        stp: str = "taker_at_cross",
    ) -> SimOrder:
        """Validate and match one order (YES price, bid/ask). Raises `KalshiError`."""
        if not isinstance(ticker, str) or not ticker:
            raise KalshiError(400, "invalid_parameters", "ticker is required")
        inst = self.engine.instruments.get(ticker)
        if inst is None:
            raise KalshiError(404, "market_not_found", f"market {ticker} not found")
        if inst.extra["status"] != "active" or not inst.tradable:
            raise KalshiError(409, "market_closed", f"market {ticker} is {inst.extra['status']}")
        if not CENT <= yes_price <= Decimal("0.99") or yes_price % CENT:
            raise KalshiError(400, "invalid_price", f"price {yes_price} is not a valid price for this market")
        if count <= 0 or count % 1:
            raise KalshiError(400, "invalid_order", "count must be a positive whole number of contracts")
        if post_only and tif != "gtc":
            raise KalshiError(400, "invalid_order", "post_only orders must be good_till_canceled")
        if stp not in ("taker_at_cross", "maker"):
            raise KalshiError(400, "invalid_parameters", "invalid self_trade_prevention_type")
        side = SimSide.BUY if book_side == "bid" else SimSide.SELL
        if reduce_only:
            closable = self.accounting.closable(account.account_id, ticker, side)
            if closable <= 0:
                raise KalshiError(400, "invalid_order", "reduce_only order would not reduce a position")
            count = min(count, closable)
        pos = self.accounting.positions.get((account.account_id, ticker))
        held = ZERO if pos is None else pos.position
        # Legacy-style labels for V2 orders: an ask against a YES position sells YES, otherwise it
        # buys NO; a bid against a NO position sells NO, otherwise it buys YES.
        if side is SimSide.BUY:
            outcome, action = ("no", "sell") if held < 0 else ("yes", "buy")
        else:
            outcome, action = ("yes", "sell") if held > 0 else ("no", "buy")
        order = SimOrder(
            order_id=str(uuid.uuid4()),
            client_oid=client_order_id or str(uuid.uuid4()),
            account_id=account.account_id,
            instrument=ticker,
            side=side,
            order_type="limit",
            time_in_force=tif,
            quantity=count,
            price=yes_price,
            post_only=post_only,
            extra={"outcome": outcome, "action": action, "stp": stp},
        )
        try:
            self.engine.submit(order)
        except EngineReject as rej:
            status, code = REJECTS.get(rej.reason, (400, "invalid_order"))
            raise KalshiError(status, code, str(rej)) from rej
        if order.reason == Reject.POST_ONLY_WOULD_CROSS.value:
            order.extra["cancel_reason"] = "PostOnlyCrossCancel"
        return order

    def _fill_summary(self, order: SimOrder) -> dict[str, Any]:
        out: dict[str, Any] = {
            "order_id": order.order_id,
            "client_order_id": order.client_oid,
            "fill_count": render.fp2(order.filled),
            "remaining_count": render.fp2(order.remaining if order.is_open else ZERO),
            "ts_ms": order.updated_ns // 1_000_000,
        }
        if order.filled:
            out["average_fill_price"] = render.d4(order.cum_value / order.filled)
            out["average_fee_paid"] = render.d4(order.cum_fee / order.filled)
        return out

    async def _v2_create(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        body = await self._body(request)
        missing = [
            k for k in ("ticker", "side", "count", "price", "time_in_force") if body.get(k) in (None, "")
        ]
        if missing:
            raise KalshiError(400, "invalid_parameters", f"missing required fields: {', '.join(missing)}")
        if body["side"] not in ("bid", "ask"):
            raise KalshiError(400, "invalid_parameters", "side must be bid or ask")
        tif = TIF.get(str(body["time_in_force"]))
        if tif is None:
            raise KalshiError(400, "invalid_parameters", "invalid time_in_force")
        order = self.submit(
            account,
            ticker=body["ticker"],
            book_side=str(body["side"]),
            yes_price=_dec(body["price"], "price"),
            count=_dec(body["count"], "count"),
            tif=tif,
            client_order_id=str(body["client_order_id"]) if body.get("client_order_id") else None,
            post_only=bool(body.get("post_only")),
            reduce_only=bool(body.get("reduce_only")),
            stp=str(body.get("self_trade_prevention_type") or "taker_at_cross"),
        )
        return web.json_response(self._fill_summary(order), status=201)

    async def _legacy_create(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        body = await self._body(request)
        outcome, action = body.get("side"), body.get("action")
        if outcome not in ("yes", "no") or action not in ("buy", "sell"):
            raise KalshiError(400, "invalid_order", "side must be yes or no and action buy or sell")
        if body.get("type") not in (None, "limit"):
            raise KalshiError(
                400, "invalid_order", "market orders are no longer supported; send a limit price"
            )
        prices = {k: body.get(k) for k in ("yes_price", "no_price", "yes_price_dollars", "no_price_dollars")}
        given = {k: v for k, v in prices.items() if v is not None}
        if len(given) != 1:
            raise KalshiError(
                400,
                "invalid_order",
                "exactly one of yes_price, no_price, yes_price_dollars, or no_price_dollars "
                "should be provided",
            )
        ((key, value),) = given.items()
        price = _dec(value, key)
        if not key.endswith("_dollars"):
            if price != price.to_integral_value():
                raise KalshiError(400, "invalid_price", "cent prices are whole numbers 1..99")
            price = price / 100
        yes_price = price if key.startswith("yes") else ONE - price
        count = _dec(body["count_fp"] if body.get("count_fp") is not None else body.get("count", 0), "count")
        book_side = "bid" if (action, outcome) in (("buy", "yes"), ("sell", "no")) else "ask"
        tif_word = body.get("time_in_force") or "good_till_canceled"
        if body.get("buy_max_cost") is not None:
            tif_word = "fill_or_kill"
        tif = TIF.get(str(tif_word))
        if tif is None:
            raise KalshiError(400, "invalid_order", "invalid time_in_force")
        order = self.submit(
            account,
            ticker=body.get("ticker"),
            book_side=book_side,
            yes_price=yes_price,
            count=count,
            tif=tif,
            client_order_id=str(body["client_order_id"]) if body.get("client_order_id") else None,
            post_only=bool(body.get("post_only")),
            reduce_only=bool(body.get("reduce_only")) or body.get("sell_position_floor") == 0,
            stp=str(body.get("self_trade_prevention_type") or "taker_at_cross"),
        )
        order.extra.update(outcome=outcome, action=action)
        return web.json_response({"order": render.order(order, legacy=self.config.legacy_cents)}, status=201)

    def cancel(self, account: Account, order_id: str) -> tuple[SimOrder, Decimal]:
        order = self._account_order(account, order_id)
        inst = self.engine.instruments[order.instrument]
        if inst.extra["status"] != "active":
            raise KalshiError(409, "market_closed", f"market {order.instrument} is {inst.extra['status']}")
        if not order.is_open:
            raise KalshiError(409, "order_not_resting", "the order is not resting")
        reduced = order.remaining
        self.engine.cancel(account.account_id, order_id=order.order_id)
        return order, reduced

    async def _v2_cancel(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        order, reduced = self.cancel(account, request.match_info["order_id"])
        return web.json_response(
            {
                "order_id": order.order_id,
                "client_order_id": order.client_oid,
                "reduced_by": render.fp2(reduced),
                "ts_ms": order.updated_ns // 1_000_000,
            }
        )

    async def _legacy_cancel(self, request: web.Request, account: Account | None) -> web.Response:
        assert account is not None
        order, reduced = self.cancel(account, request.match_info["order_id"])
        return web.json_response(
            {
                "order": render.order(order, legacy=self.config.legacy_cents),
                "reduced_by": render.whole(reduced),
                "reduced_by_fp": render.fp2(reduced),
            }
        )

    # ---- lifecycle: close, determine, settle --------------------------------------------------
    def close_market(self, ticker: str) -> None:
        inst = self._inst(ticker)
        if inst.extra["status"] != "active":
            return
        inst.tradable = False
        for account_id in list(self.engine.accounts):
            self.engine.cancel_all(account_id, ticker)
        now = datetime.now(UTC)
        inst.extra.update(status="closed", closed_at=now)
        self._lifecycle(ticker, "close_date_updated", close_ts=int(now.timestamp()))

    def settle_market(self, ticker: str, result: str) -> int:
        """Close, determine and finalize: $1.00 per winning contract. Returns accounts paid."""
        inst = self._inst(ticker)
        if inst.extra["status"] == "finalized":
            raise KalshiError(409, "market_settled", f"{ticker} is already settled")
        self.close_market(ticker)
        now_ns = time.time_ns()
        inst.extra.update(status="determined", result=result, determined_ns=now_ns)
        value = "1.0000" if result == "yes" else "0.0000"
        self._lifecycle(
            ticker, "determined", result=result, determination_ts=now_ns // 10**9, settlement_value=value
        )
        ev = event_of(inst)
        paid = 0
        for (account_id, t), pos in list(self.accounting.positions.items()):
            if t != ticker or pos.settled or account_id in SYSTEM:
                continue
            account = self.engine.accounts[account_id]
            yes_count = max(pos.position, ZERO)
            no_count = max(-pos.position, ZERO)
            won = yes_count if result == "yes" else no_count
            revenue = won  # dollars: $1.00 per winning contract
            account.adjust("USD", revenue)
            cost = pos.cost
            pos.realized_pnl += revenue - cost
            row = {
                "ticker": ticker,
                "event_ticker": ev.event_ticker,
                "market_result": result,
                "yes_count_fp": render.fp2(yes_count),
                "no_count_fp": render.fp2(no_count),
                "yes_total_cost_dollars": render.d4(cost if yes_count else ZERO),
                "no_total_cost_dollars": render.d4(cost if no_count else ZERO),
                "revenue": render.cents(revenue),
                "value": 100 if result == "yes" else 0,
                "fee_cost": "0.0000",
                "settled_time": render.rfc3339(now_ns),
                "exchange_index": 0,
                "yes_count": render.whole(yes_count),
                "no_count": render.whole(no_count),
                "yes_total_cost": render.cents(cost if yes_count else ZERO),
                "no_total_cost": render.cents(cost if no_count else ZERO),
            }
            self.settlements.setdefault(account_id, []).append(row)
            pos.position, pos.cost, pos.settled, pos.updated_ns = ZERO, ZERO, True, now_ns
            paid += 1
            self._to_account(
                account_id,
                "market_positions",
                ticker,
                "market_position",
                render.ws_position(account_id, ticker, pos),
            )
        inst.extra.update(status="finalized", settled_ns=now_ns)
        self._lifecycle(ticker, "settled", result=result, settled_ts=now_ns // 10**9, settlement_value=value)
        return paid

    async def _sim_close(self, request: web.Request) -> web.Response:
        try:
            self.close_market(request.match_info["ticker"])
            return web.json_response({"market": self.render_market(self._inst(request.match_info["ticker"]))})
        except KalshiError as err:
            return err.response()

    async def _sim_settle(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        result = str(body.get("result", "")).lower()
        if result not in ("yes", "no"):
            return web.json_response({"error": "result must be yes or no"}, status=400)
        try:
            paid = self.settle_market(request.match_info["ticker"], result)
            market = self.render_market(self._inst(request.match_info["ticker"]))
        except KalshiError as err:
            return err.response()
        return web.json_response({"market": market, "settled_accounts": paid})

    # ---- WebSocket ----------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        try:
            account = self.authenticate(request)
        except KalshiError as err:
            return err.response()
        ws = web.WebSocketResponse(
            autoping=True, heartbeat=self.config.heartbeat_interval, max_msg_size=1024**2
        )
        await ws.prepare(request)
        sock = SimSocket(kind="ws", ws=ws, request=request, account=account)
        self.sockets.add(sock)
        self.ws_state[sock] = SocketState()
        sock.spawn(self._writer(sock))
        if fault := self.faults.take(FaultKind.DROP_WS, "ws"):
            sock.spawn(self._drop_later(sock, fault.latency_ms / 1000))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                self._ws_command(sock, msg.data)
        finally:
            self.close_socket(sock)
            self.ws_state.pop(sock, None)
        return ws

    @staticmethod
    def _ws_error(sock: SimSocket, cmd_id: Any, code: int, text: str, **extra: Any) -> None:
        sock.send({"id": cmd_id, "type": "error", "msg": {"code": code, "msg": text, **extra}})

    def _ws_command(self, sock: SimSocket, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._ws_error(sock, None, 1, "Unable to process message")
            return
        cmd_id, cmd = msg.get("id"), msg.get("cmd")
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        state = self.ws_state.get(sock)
        if state is None:
            return
        if cmd == "subscribe":
            self._ws_subscribe(sock, state, cmd_id, params)
        elif cmd == "unsubscribe":
            sids = params.get("sids")
            if not isinstance(sids, list) or not sids:
                self._ws_error(sock, cmd_id, 4, "Sids required")
                return
            for sid in sids:
                sub = state.subs.pop(int(sid), None) if str(sid).isdigit() else None
                if sub is None:
                    self._ws_error(sock, cmd_id, 7, "Unknown subscription ID")
                    continue
                sock.send({"id": cmd_id, "sid": sub.sid, "seq": sub.seq, "type": "unsubscribed"})
        elif cmd == "update_subscription":
            self._ws_update(sock, state, cmd_id, params)
        elif cmd == "list_subscriptions":
            sock.send(
                {
                    "id": cmd_id,
                    "type": "ok",
                    "msg": [{"channel": s.channel, "sid": s.sid} for s in state.subs.values()],
                }
            )
        else:
            self._ws_error(sock, cmd_id, 5, "Unknown command")

    def _tickers_param(self, sock: SimSocket, cmd_id: Any, params: dict[str, Any]) -> set[str] | bool | None:
        tickers: list[Any] = []
        if isinstance(params.get("market_tickers"), list):
            tickers = list(params["market_tickers"])
        elif params.get("market_ticker"):
            tickers = [params["market_ticker"]]
        for t in tickers:
            if str(t) not in self.engine.instruments:
                self._ws_error(sock, cmd_id, 16, "Market not found", market_ticker=str(t))
                return False
        return {str(t) for t in tickers} or None

    def _ws_subscribe(self, sock: SimSocket, state: SocketState, cmd_id: Any, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            self._ws_error(sock, cmd_id, 3, "Channels required")
            return
        tickers = self._tickers_param(sock, cmd_id, params)
        if tickers is False:
            return
        assert tickers is None or isinstance(tickers, set)
        for channel in map(str, channels):
            if channel not in CHANNELS:
                self._ws_error(sock, cmd_id, 8, "Unknown channel name")
                continue
            if channel in TICKERS_REQUIRED and not tickers:
                self._ws_error(sock, cmd_id, 14, "Market ticker required")
                continue
            if any(s.channel == channel for s in state.subs.values()):
                self._ws_error(sock, cmd_id, 6, "Already subscribed")
                continue
            sub = WsSub(next(state.sids), channel, set(tickers) if tickers else None)
            state.subs[sub.sid] = sub
            sock.send({"id": cmd_id, "type": "subscribed", "msg": {"channel": channel, "sid": sub.sid}})
            if channel == "orderbook_delta":
                for ticker in sorted(sub.tickers or ()):
                    self._snapshot(sock, sub, ticker)

    def _ws_update(self, sock: SimSocket, state: SocketState, cmd_id: Any, params: dict[str, Any]) -> None:
        raw_sids = params.get("sids")
        sids: list[Any] = raw_sids if isinstance(raw_sids, list) else [params.get("sid")]
        if len(sids) != 1 or not str(sids[0]).isdigit():
            self._ws_error(sock, cmd_id, 12, "Exactly one subscription ID is required")
            return
        sub = state.subs.get(int(str(sids[0])))
        if sub is None:
            self._ws_error(sock, cmd_id, 7, "Unknown subscription ID")
            return
        action = params.get("action")
        tickers = self._tickers_param(sock, cmd_id, params)
        if tickers is False:
            return
        assert tickers is None or isinstance(tickers, set)
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            self._ws_error(
                sock,
                cmd_id,
                15 if not action else 13,
                "Action required" if not action else "Unsupported action",
            )
            return
        wanted = tickers or set(sub.tickers or ())
        if action == "add_markets":
            sub.tickers = (sub.tickers or set()) | wanted
        elif action == "delete_markets":
            sub.tickers = (sub.tickers or set()) - wanted
            for t in wanted:
                sub.books.pop(t, None)
        sub.seq += 1
        sock.send(
            {
                "id": cmd_id,
                "sid": sub.sid,
                "seq": sub.seq,
                "type": "ok",
                "msg": {"market_tickers": sorted(sub.tickers or ())},
            }
        )
        if sub.channel == "orderbook_delta" and action in ("add_markets", "get_snapshot"):
            for ticker in sorted(wanted):
                self._snapshot(sock, sub, ticker)

    def _snapshot(self, sock: SimSocket, sub: WsSub, ticker: str) -> None:
        yes, no = self._sides(ticker)
        sub.seq += 1
        body: dict[str, Any] = {"market_ticker": ticker, "market_id": ticker}
        if yes:
            body["yes_dollars_fp"] = render.levels(yes)
        if no:
            body["no_dollars_fp"] = render.levels(no)
        if self.config.legacy_cents:
            body.update(yes=render.levels_cents(yes), no=render.levels_cents(no))
        self._data(sock, ticker, {"type": "orderbook_snapshot", "sid": sub.sid, "seq": sub.seq, "msg": body})
        sub.books[ticker] = (yes, no)

    def _deltas(self, sock: SimSocket, sub: WsSub, ticker: str, now_ms: int) -> None:
        old = sub.books.get(ticker)
        if old is None:
            return
        new = self._sides(ticker)
        for side, before, after in (("yes", old[0], new[0]), ("no", old[1], new[1])):
            for price in sorted(set(before) | set(after)):
                change = after.get(price, ZERO) - before.get(price, ZERO)
                if not change:
                    continue
                sub.seq += 1
                if self.faults.take(FaultKind.SEQUENCE_GAP, f"orderbook_delta.{ticker}"):
                    sub.seq += 1  # as if a delta in between had been lost
                body: dict[str, Any] = {
                    "market_ticker": ticker,
                    "market_id": ticker,
                    "price_dollars": render.d4(price),
                    "delta_fp": render.fp2(change),
                    "side": side,
                    "ts_ms": now_ms,
                }
                if self.config.legacy_cents:
                    body.update(price=render.cents(price), delta=render.whole(change))
                self._data(
                    sock, ticker, {"type": "orderbook_delta", "sid": sub.sid, "seq": sub.seq, "msg": body}
                )
        sub.books[ticker] = new

    def _ticker_msg(self, ticker: str, now_ms: int) -> dict[str, Any]:
        m = self.render_market(self.engine.instruments[ticker])
        trades = self.engine.trades[ticker]
        return {
            "market_ticker": ticker,
            "market_id": ticker,
            "price_dollars": m["last_price_dollars"],
            "yes_bid_dollars": m["yes_bid_dollars"],
            "yes_ask_dollars": m["yes_ask_dollars"],
            "yes_bid_size_fp": m["yes_bid_size_fp"],
            "yes_ask_size_fp": m["yes_ask_size_fp"],
            "last_trade_size_fp": render.fp2(trades[-1].quantity if trades else ZERO),
            "volume_fp": m["volume_fp"],
            "open_interest_fp": m["open_interest_fp"],
            "dollar_volume": render.whole(self.volume.get(ticker, ZERO)),
            "dollar_open_interest": render.whole(self._open_interest(ticker)),
            "ts": now_ms // 1000,
            "ts_ms": now_ms,
            "time": render.rfc3339(now_ms * 1_000_000),
        }

    async def _publisher_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.book_update_interval)
            try:
                self._publish_once()
            except Exception:  # never let one bad frame stop the feed
                log.exception("kalshi publisher failed")

    def _publish_once(self) -> None:
        now_ms = int(time.time() * 1000)
        dirty, self.dirty_tickers = self.dirty_tickers, set()
        tickers: dict[str, dict[str, Any]] = {}
        for sock, state in list(self.ws_state.items()):
            if sock not in self.sockets:
                continue
            for sub in list(state.subs.values()):
                if sub.channel == "orderbook_delta":
                    for ticker in sorted(sub.tickers or ()):
                        self._deltas(sock, sub, ticker, now_ms)
                elif sub.channel == "ticker":
                    for ticker in sorted(dirty):
                        if sub.wants(ticker):
                            if ticker not in tickers:
                                tickers[ticker] = self._ticker_msg(ticker, now_ms)
                            self._data(
                                sock, ticker, {"type": "ticker", "sid": sub.sid, "msg": tickers[ticker]}
                            )

    def _subs(
        self, channel: str, ticker: str, account_id: str | None = None
    ) -> list[tuple[SimSocket, WsSub]]:
        out = []
        for sock, state in self.ws_state.items():
            if account_id is not None and (sock.account is None or sock.account.account_id != account_id):
                continue
            out += [(sock, s) for s in state.subs.values() if s.channel == channel and s.wants(ticker)]
        return out

    def _to_account(
        self, account_id: str, channel: str, ticker: str, kind: str, body: dict[str, Any]
    ) -> None:
        for sock, sub in self._subs(channel, ticker, account_id):
            self._data(sock, ticker, {"type": kind, "sid": sub.sid, "msg": body})

    def _lifecycle(self, ticker: str, event_type: str, **fields: Any) -> None:
        body = {"event_type": event_type, "market_ticker": ticker, **fields}
        for sock, sub in self._subs("market_lifecycle_v2", ticker):
            self._data(sock, ticker, {"type": "market_lifecycle_v2", "sid": sub.sid, "msg": body})

    def _on_engine_event(self, event: EngineEvent) -> None:
        if isinstance(event, BookEvent):
            self.dirty_tickers.add(event.instrument)
        elif isinstance(event, TradeEvent):
            t = event.trade
            self.volume[t.instrument] = self.volume.get(t.instrument, ZERO) + t.quantity
            self.dirty_tickers.add(t.instrument)
            subs = self._subs("trade", t.instrument)
            if subs:
                body = render.ws_trade(t)
                for sock, sub in subs:
                    self._data(sock, t.instrument, {"type": "trade", "sid": sub.sid, "msg": body})
        elif isinstance(event, OrderEvent):
            o = event.order
            if o.account_id not in SYSTEM:
                self._to_account(
                    o.account_id, "user_orders", o.instrument, "user_order", render.user_order(o)
                )
        elif isinstance(event, FillEvent):
            self._on_fill(event)

    def _on_fill(self, event: FillEvent) -> None:
        f = event.fill
        if f.account_id in SYSTEM:
            return
        order = self.engine.orders.get(f.order_id)
        if order is not None:
            outcome_price = f.price if order.extra.get("outcome", "yes") == "yes" else ONE - f.price
            kind = "maker" if f.is_maker else "taker"
            x = order.extra
            x[f"{kind}_cost"] = Decimal(str(x.get(f"{kind}_cost", 0))) + outcome_price * f.quantity
            x[f"{kind}_fees"] = Decimal(str(x.get(f"{kind}_fees", 0))) + f.fee
        pos = self.accounting.position(f.account_id, f.instrument)
        self._to_account(f.account_id, "fill", f.instrument, "fill", render.ws_fill(f, order, pos.position))
        self._to_account(
            f.account_id,
            "market_positions",
            f.instrument,
            "market_position",
            render.ws_position(f.account_id, f.instrument, pos),
        )

    # ---- state for /_sim/state ------------------------------------------------------------------
    def tickers(self) -> list[str]:
        return list(self.engine.instruments)
