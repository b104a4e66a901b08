"""`KalshiAdapter`: Kalshi Trade API v2 (event contracts) behind K2's `ExchangeAdapter`.

K2's view: instruments are market tickers (`KXBTC-26DEC01-B100000`), books and tickers are in
YES terms, and an order names an `outcome` (yes/no) and a side (buy/sell) with the price of
that contract in dollars (0.01-0.99). Orders go through the V2 endpoints
(`POST/DELETE /portfolio/events/orders`); order reads use `/portfolio/orders`, whose legacy and
fixed-point shapes are both parsed. Kalshi-only reads (series, events, markets with results,
settlements) are extra methods returning `apps.exchanges.adapters.kalshi.types`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import httpx

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    Balance,
    Candle,
    Capabilities,
    Credentials,
    ExchangeAdapter,
    Fill,
    Instrument,
    InstrumentType,
    MarketEvent,
    MarketSubscription,
    OnCall,
    OrderBook,
    OrderRequest,
    OrderState,
    OrderType,
    Position,
    Ticker,
    TimeInForce,
    Trade,
    UserEvent,
)
from apps.exchanges.adapters.kalshi import translate
from apps.exchanges.adapters.kalshi.client import KalshiRestClient, RestSettings
from apps.exchanges.adapters.kalshi.types import KalshiEvent, KalshiMarket, KalshiSeries, Settlement
from apps.exchanges.adapters.kalshi.websocket import (
    KalshiMarketStream,
    KalshiStream,
    KalshiUserStream,
    StreamSettings,
)

PRODUCTION_REST_URL = "https://external-api.kalshi.com/trade-api/v2"
DEMO_REST_URL = "https://external-api.demo.kalshi.co/trade-api/v2"
_WS_HOSTS = {
    "external-api.kalshi.com": "external-api-ws.kalshi.com",
    "external-api.demo.kalshi.co": "external-api-ws.demo.kalshi.co",
}
V2_ORDERS = "/portfolio/events/orders"
V2_CANCEL_COST = 2

CAPABILITIES: Capabilities = {
    "instrument_types": frozenset({InstrumentType.EVENT}),
    "order_types": frozenset({OrderType.LIMIT, OrderType.MARKET}),  # market = marketable IOC limit
    "time_in_force": frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
    "post_only": True,
    "reduce_only": True,
    "outcomes": True,
    "market_buy_by_notional": False,
    "cancel_by_client_order_id": True,  # looked up first, then cancelled by id
    "get_order_by_client_order_id": True,
    "positions": True,
    "candle_timeframes": tuple(translate.CANDLE_PERIODS),
    "book_depths": (1, 10, 100),
    "max_client_order_id_length": 64,
    "async_order_ack": False,  # the V2 answer carries fills so far
}


def ws_url_for(base_url: str) -> str:
    """`https://external-api.kalshi.com/trade-api/v2` -> `wss://external-api-ws.kalshi.com/trade-api/ws/v2`."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    host = parts.netloc
    hostname = parts.hostname or ""
    if hostname in _WS_HOSTS:
        host = host.replace(hostname, _WS_HOSTS[hostname])
    path = parts.path.removesuffix("/v2") + "/ws/v2"
    return urlunsplit((scheme, host, path, "", ""))


@dataclass(frozen=True)
class KalshiSettings:
    rest: RestSettings = field(default_factory=RestSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)


class KalshiAdapter(ExchangeAdapter):
    """Kalshi Trade API v2.

    `KalshiAdapter(credentials=Credentials(api_key=<key id>, api_secret=<private key PEM>),
    base_url=".../trade-api/v2", ws_url=".../trade-api/ws/v2")`; `ws_url` defaults from the base
    URL. `redis` (asyncio client) shares the token buckets across processes; `on_call` receives
    one report per venue request.
    """

    venue = "kalshi"
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        base_url: str = PRODUCTION_REST_URL,
        ws_url: str | None = None,
        redis: Any = None,
        on_call: OnCall | None = None,
        settings: KalshiSettings | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings or KalshiSettings()
        self.credentials = credentials
        self.ws_url = ws_url or ws_url_for(base_url)
        self.rest = KalshiRestClient(
            base_url=base_url,
            credentials=credentials,
            settings=self.settings.rest,
            redis=redis,
            on_call=on_call,
            http=http,
        )
        self._series_of_event: dict[str, str] = {}

    async def close(self) -> None:
        await self.rest.close()

    async def _get(
        self, path: str, params: dict[str, Any] | None = None, *, auth: bool = True
    ) -> dict[str, Any]:
        return await self.rest.request("GET", path, params=params, auth=auth and self.credentials is not None)

    async def _pages(
        self,
        path: str,
        key: str,
        params: dict[str, Any] | None = None,
        *,
        limit: int | None = None,
        auth: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Rows of a cursor-paginated list; stops at an empty cursor, `limit` rows or `max_pages`."""
        query = dict(params or {})
        seen = 0
        for _ in range(self.settings.rest.max_pages):
            page = await self._get(path, query, auth=auth)
            for row in page.get(key) or []:
                yield row
                seen += 1
                if limit is not None and seen >= limit:
                    return
            cursor = page.get("cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    # ---- market data --------------------------------------------------------------------------
    async def get_instruments(self) -> list[Instrument]:
        return [
            translate.instrument(row) async for row in self._pages("/markets", "markets", {"limit": 1000})
        ]

    async def get_markets(
        self, *, event_ticker: str | None = None, series_ticker: str | None = None, status: str | None = None
    ) -> list[KalshiMarket]:
        """Markets with status, close/settle times and result. `status` uses the filter words
        (unopened, open, paused, closed, settled)."""
        params = {
            "limit": 1000,
            "event_ticker": event_ticker,
            "series_ticker": series_ticker,
            "status": status,
        }
        return [translate.market(row) async for row in self._pages("/markets", "markets", params)]

    async def get_market(self, ticker: str) -> KalshiMarket:
        return translate.market(await self._market_row(ticker))

    async def _market_row(self, ticker: str) -> dict[str, Any]:
        try:
            row = (await self._get(f"/markets/{ticker}")).get("market")
        except ex.OrderNotFound as exc:
            raise ex.InstrumentNotFound(ticker, venue=self.venue, http_status=404) from exc
        if not isinstance(row, dict):
            raise ex.InstrumentNotFound(ticker, venue=self.venue)
        return row

    async def get_series(self, series_ticker: str | None = None) -> list[KalshiSeries]:
        if series_ticker:
            row = (await self._get(f"/series/{series_ticker}")).get("series") or {}
            return [translate.series(row)]
        rows = (await self._get("/series")).get("series") or []
        return [translate.series(r) for r in rows]

    async def get_events(
        self, *, series_ticker: str | None = None, status: str | None = None, with_markets: bool = True
    ) -> list[KalshiEvent]:
        params = {
            "limit": 200,
            "series_ticker": series_ticker,
            "status": status,
            "with_nested_markets": with_markets,
        }
        events = [translate.event(row) async for row in self._pages("/events", "events", params)]
        for e in events:
            self._series_of_event[e.event_ticker] = e.series_ticker
        return events

    async def get_event(self, event_ticker: str) -> KalshiEvent:
        answer = await self._get(f"/events/{event_ticker}", {"with_nested_markets": True})
        row = answer.get("event") or {}
        markets = row.get("markets") or answer.get("markets") or []
        result = translate.event(row, markets)
        self._series_of_event[result.event_ticker] = result.series_ticker
        return result

    async def get_ticker(self, instrument: str) -> Ticker:
        return translate.ticker(await self._market_row(instrument))

    async def get_tickers(self, instruments: Sequence[str] | None = None) -> list[Ticker]:
        params: dict[str, Any] = {"limit": 1000}
        if instruments is not None:
            if not instruments:
                return []
            params["tickers"] = list(instruments)
        return [translate.ticker(row) async for row in self._pages("/markets", "markets", params)]

    async def get_order_book(self, instrument: str, depth: int = 10) -> OrderBook:
        try:
            answer = await self._get(f"/markets/{instrument}/orderbook", {"depth": max(0, min(depth, 100))})
        except ex.OrderNotFound as exc:
            raise ex.InstrumentNotFound(instrument, venue=self.venue, http_status=404) from exc
        payload = answer.get("orderbook_fp") or answer.get("orderbook") or {}
        yes, no = translate.orderbook_sides(payload)
        return translate.yes_book(instrument, yes, no, depth=depth)

    async def get_trades(self, instrument: str, limit: int = 25) -> list[Trade]:
        params = {"ticker": instrument, "limit": max(1, min(limit, 1000))}
        rows = (await self._get("/markets/trades", params)).get("trades") or []
        return [translate.trade(r) for r in rows]

    async def get_candles(
        self,
        instrument: str,
        timeframe: str = "1m",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 25,
    ) -> list[Candle]:
        minutes = translate.CANDLE_PERIODS.get(timeframe)
        if minutes is None:
            raise ex.BadRequest(f"unsupported timeframe {timeframe}", venue=self.venue)
        event_ticker = str((await self._market_row(instrument)).get("event_ticker", ""))
        series = self._series_of_event.get(event_ticker) or (await self.get_event(event_ticker)).series_ticker
        end_ts = translate.dt_to_s(end or translate.now())
        start_ts = translate.dt_to_s(start) if start else end_ts - minutes * 60 * max(1, limit)
        params = {"start_ts": start_ts, "end_ts": end_ts, "period_interval": minutes}
        answer = await self._get(f"/series/{series}/markets/{instrument}/candlesticks", params)
        candles = [
            translate.candle(instrument, timeframe, minutes, row) for row in answer.get("candlesticks") or []
        ]
        return [c for c in candles if c is not None][-limit:]

    # ---- account ------------------------------------------------------------------------------
    async def get_balances(self) -> list[Balance]:
        """USD: available cash (`balance`, cents) plus what resting orders hold."""
        answer, resting = await asyncio.gather(
            self._get("/portfolio/balance"), self._resting_value(), return_exceptions=False
        )
        return [translate.balance(answer, resting)]

    async def _resting_value(self) -> int:
        try:
            answer = await self._get("/portfolio/summary/total_resting_order_value")
        except (ex.OrderNotFound, ex.PermissionDenied, ex.BadRequest):
            return 0  # not offered to every key: no hold information then
        return int(answer.get("total_resting_order_value") or 0)

    async def get_positions(self) -> list[Position]:
        params = {"limit": 1000, "count_filter": "position"}
        rows = [row async for row in self._pages("/portfolio/positions", "market_positions", params)]
        return [p for p in map(translate.position, rows) if p.quantity]

    async def get_settlements(self, instrument: str | None = None, *, limit: int = 100) -> list[Settlement]:
        params = {"limit": max(1, min(limit, 1000)), "ticker": instrument}
        rows = [r async for r in self._pages("/portfolio/settlements", "settlements", params, limit=limit)]
        return [translate.settlement(r) for r in rows]

    # ---- orders -------------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> OrderState:
        """Submit through `POST /portfolio/events/orders`. The answer says what filled at once;
        post-only crosses come back `rejected` (PostOnlyCrossCancel), unfilled IOC/FOK
        `cancelled`. Raises `OrderOutcomeUnknown` when the venue may hold the order unannounced."""
        if (
            not request.client_order_id
            or len(request.client_order_id) > CAPABILITIES["max_client_order_id_length"]
        ):
            raise ex.InvalidOrder("client_order_id must be 1-64 characters", venue=self.venue)
        body = translate.order_body(request)
        try:
            ack = await self.rest.request("POST", V2_ORDERS, body=body, bucket="write", safe=False)
        except ex.OrderOutcomeUnknown as exc:
            exc.client_order_id = request.client_order_id
            raise
        except ex.OrderWouldTakeLiquidity:
            raise
        if not ack.get("order_id"):  # a 2xx without an order: reported as a soft rejection
            raise ex.OrderOutcomeUnknown(
                "order answer without an order id", client_order_id=request.client_order_id, venue=self.venue
            )
        return translate.order_from_ack(request, ack)  # type: ignore[arg-type]

    async def cancel_order(
        self, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> None:
        if not venue_order_id:
            if not client_order_id:
                raise ValueError("give venue_order_id or client_order_id")
            venue_order_id = (await self.get_order(client_order_id=client_order_id)).venue_order_id
        await self.rest.request(
            "DELETE", f"{V2_ORDERS}/{venue_order_id}", bucket="write", cost=V2_CANCEL_COST, safe=True
        )

    async def cancel_all_orders(self, instrument: str | None = None) -> None:
        for order in await self.get_open_orders(instrument):
            try:
                await self.cancel_order(venue_order_id=order.venue_order_id)
            except (ex.OrderNotFound, ex.OrderNotOpen):
                continue  # filled or cancelled meanwhile

    async def get_order(
        self, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> OrderState:
        if venue_order_id:
            row = (await self._get(f"/portfolio/orders/{venue_order_id}")).get("order")
            if not isinstance(row, dict):
                raise ex.OrderNotFound(venue_order_id, venue=self.venue)
            return translate.order(row)
        if not client_order_id:
            raise ValueError("give venue_order_id or client_order_id")
        # No documented filter by client order id: ask with one (servers that know it narrow the
        # list) and match here, newest pages first, bounded.
        params = {"client_order_id": client_order_id, "limit": 1000}
        async for row in self._pages("/portfolio/orders", "orders", params):
            if row.get("client_order_id") == client_order_id:
                return translate.order(row)
        raise ex.OrderNotFound(f"client_order_id {client_order_id}", venue=self.venue)

    async def get_open_orders(self, instrument: str | None = None) -> list[OrderState]:
        params = {"status": "resting", "ticker": instrument, "limit": 1000}
        return [translate.order(row) async for row in self._pages("/portfolio/orders", "orders", params)]

    @staticmethod
    def _window(
        instrument: str | None, start: datetime | None, end: datetime | None, limit: int
    ) -> dict[str, Any]:
        return {
            "ticker": instrument,
            "min_ts": translate.dt_to_s(start) if start else None,
            "max_ts": translate.dt_to_s(end) if end else None,
            "limit": max(1, min(limit, 1000)),
        }

    async def get_order_history(
        self,
        instrument: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> list[OrderState]:
        """Finished orders (executed and canceled), newest first."""
        params = self._window(instrument, start, end, limit)
        out: list[OrderState] = []
        async for row in self._pages("/portfolio/orders", "orders", params):
            if str(row.get("status")) != "resting":
                out.append(translate.order(row))
                if len(out) >= limit:
                    break
        return out

    async def get_fills(
        self,
        instrument: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> list[Fill]:
        params = self._window(instrument, start, end, limit)
        return [
            translate.fill(r) async for r in self._pages("/portfolio/fills", "fills", params, limit=limit)
        ]

    # ---- streams ------------------------------------------------------------------------------
    def _stream_credentials(self) -> Credentials:
        if self.credentials is None:
            raise ex.AuthFailed("Kalshi streams are signed: credentials needed", venue=self.venue)
        return self.credentials

    def market_stream(self, subscriptions: Sequence[MarketSubscription]) -> KalshiStream[MarketEvent]:
        """`ticker`, `trade` and `orderbook_delta` for the subscriptions (K2's market events)."""
        return cast(KalshiStream[MarketEvent], self.event_market_stream(subscriptions, lifecycle=False))

    def event_market_stream(
        self, subscriptions: Sequence[MarketSubscription] = (), *, lifecycle: bool = True
    ) -> KalshiMarketStream:
        """`market_stream` plus `market_lifecycle_v2` (all markets) as `MarketLifecycle` events."""
        return KalshiMarketStream(
            url=self.ws_url,
            credentials=self._stream_credentials(),
            subscriptions=subscriptions,
            settings=self.settings.stream,
            lifecycle=lifecycle,
        )

    def user_stream(self, instruments: Sequence[str] | None = None) -> KalshiStream[UserEvent]:
        """`fill` and `user_orders` of this account (K2's user events)."""
        return cast(KalshiStream[UserEvent], self.event_user_stream(instruments, positions=False))

    def event_user_stream(
        self, instruments: Sequence[str] | None = None, *, positions: bool = True
    ) -> KalshiUserStream:
        """`user_stream` plus `market_positions` as `Position` events (signed, outcome set)."""
        return KalshiUserStream(
            url=self.ws_url,
            credentials=self._stream_credentials(),
            instruments=instruments,
            settings=self.settings.stream,
            positions=positions,
        )
