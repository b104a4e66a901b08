"""`CryptocomAdapter`: the Crypto.com Exchange v1 venue behind K2's `ExchangeAdapter`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
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
    MarketSubscription,
    OnCall,
    OrderBook,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Position,
    Ticker,
    TimeInForce,
    Trade,
)
from apps.exchanges.adapters.cryptocom import symbols, translate
from apps.exchanges.adapters.cryptocom.client import CryptocomRestClient, RestSettings
from apps.exchanges.adapters.cryptocom.websocket import (
    CryptocomMarketStream,
    CryptocomUserStream,
    StreamSettings,
)

PRODUCTION_REST_URL = "https://api.crypto.com/exchange/v1"
UAT_REST_URL = "https://uat-api.3ona.co/exchange/v1"
_STREAM_HOSTS = {"api.crypto.com": "stream.crypto.com", "uat-api.3ona.co": "uat-stream.3ona.co"}

CAPABILITIES: Capabilities = {
    "instrument_types": frozenset({InstrumentType.CRYPTO}),
    "order_types": frozenset({OrderType.LIMIT, OrderType.MARKET}),
    "time_in_force": frozenset({TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK}),
    "post_only": True,
    "reduce_only": False,  # spot: no positions to reduce
    "outcomes": False,
    "market_buy_by_notional": True,
    "cancel_by_client_order_id": True,
    "get_order_by_client_order_id": True,
    "positions": False,
    "candle_timeframes": tuple(translate.TIMEFRAMES),
    "book_depths": (10, 50),
    "max_client_order_id_length": 36,
    "async_order_ack": True,
}


def stream_url(base_url: str, socket: str) -> str:
    """`https://api.crypto.com/exchange/v1` -> `wss://stream.crypto.com/exchange/v1/<socket>`."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    host = parts.netloc
    hostname = parts.hostname or ""
    if hostname in _STREAM_HOSTS:
        host = host.replace(hostname, _STREAM_HOSTS[hostname])
    return urlunsplit((scheme, host, f"{parts.path}/{socket}", "", ""))


@dataclass(frozen=True)
class CryptocomSettings:
    rest: RestSettings = field(default_factory=RestSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)


class CryptocomAdapter(ExchangeAdapter):
    """Crypto.com Exchange v1 spot adapter.

    `CryptocomAdapter(credentials=Credentials(key, secret), base_url=".../exchange/v1")`; the
    WebSocket URLs default from the base URL. `redis` (an asyncio client) shares rate limits
    across processes; `on_call` receives one report per venue request.
    """

    venue = "cryptocom"
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        base_url: str = PRODUCTION_REST_URL,
        market_ws_url: str | None = None,
        user_ws_url: str | None = None,
        redis: Any = None,
        on_call: OnCall | None = None,
        settings: CryptocomSettings | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings or CryptocomSettings()
        self.credentials = credentials
        self.market_ws_url = market_ws_url or stream_url(base_url, "market")
        self.user_ws_url = user_ws_url or stream_url(base_url, "user")
        self.rest = CryptocomRestClient(
            base_url=base_url,
            credentials=credentials,
            settings=self.settings.rest,
            redis=redis,
            on_call=on_call,
            http=http,
        )

    async def close(self) -> None:
        await self.rest.close()

    # ---- market data --------------------------------------------------------------------------
    async def get_instruments(self) -> list[Instrument]:
        result = await self.rest.public("public/get-instruments")
        return [i for row in result.get("data", []) if (i := translate.instrument(row)) is not None]

    async def get_ticker(self, instrument: str) -> Ticker:
        tickers = await self.get_tickers([instrument])
        if not tickers:
            raise ex.InstrumentNotFound(instrument, venue=self.venue)
        return tickers[0]

    async def get_tickers(self, instruments: Sequence[str] | None = None) -> list[Ticker]:
        if instruments is not None and len(instruments) == 1:
            result = await self.rest.public(
                "public/get-tickers", {"instrument_name": symbols.to_venue(instruments[0])}
            )
            return [translate.ticker(row) for row in result.get("data", [])]
        result = await self.rest.public("public/get-tickers")
        tickers = [translate.ticker(row) for row in result.get("data", [])]
        wanted = set(instruments) if instruments is not None else None
        return [t for t in tickers if wanted is None or t.instrument in wanted]

    async def get_order_book(self, instrument: str, depth: int = 10) -> OrderBook:
        venue_symbol = symbols.to_venue(instrument)
        result = await self.rest.public("public/get-book", {"instrument_name": venue_symbol, "depth": depth})
        rows = result.get("data") or [{"bids": [], "asks": [], "t": 0}]
        return translate.order_book(venue_symbol, rows[0])

    async def get_trades(self, instrument: str, limit: int = 25) -> list[Trade]:
        params = {"instrument_name": symbols.to_venue(instrument), "count": min(limit, 150)}
        result = await self.rest.public("public/get-trades", params)
        return [translate.public_trade(row) for row in result.get("data", [])]

    async def get_candles(
        self,
        instrument: str,
        timeframe: str = "1m",
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 25,
    ) -> list[Candle]:
        venue_tf = translate.TIMEFRAMES.get(timeframe)
        if venue_tf is None:
            raise ex.BadRequest(f"unsupported timeframe {timeframe}", venue=self.venue)
        venue_symbol = symbols.to_venue(instrument)
        params: dict[str, Any] = {
            "instrument_name": venue_symbol,
            "timeframe": venue_tf,
            "count": min(limit, 300),
        }
        if start is not None:
            params["start_ts"] = translate.dt_to_ms(start)
        if end is not None:
            params["end_ts"] = translate.dt_to_ms(end)
        result = await self.rest.public("public/get-candlestick", params)
        interval = str(result.get("interval", venue_tf))
        return [translate.candle(venue_symbol, interval, row) for row in result.get("data", [])]

    # ---- account ----------------------------------------------------------------------------
    async def get_balances(self) -> list[Balance]:
        result = await self.rest.private("private/user-balance", safe=True)
        rows = result.get("data") or []
        return translate.balances(rows[0]) if rows else []

    async def get_positions(self) -> list[Position]:
        result = await self.rest.private("private/get-positions", safe=True)
        return [translate.position(row) for row in result.get("data", [])]

    # ---- orders -------------------------------------------------------------------------------
    async def place_order(self, request: OrderRequest) -> OrderState:
        """Submit; returns the acknowledged order (status `new`; fills arrive on the user stream or
        via `get_order`). Post-only crosses and unfilled IOC/FOK come back as a finished order.
        Raises `OrderOutcomeUnknown` when the venue may hold the order without having said so."""
        if len(request.client_order_id) > CAPABILITIES["max_client_order_id_length"]:
            raise ex.InvalidOrder("client_order_id is longer than 36 characters", venue=self.venue)
        params = translate.order_params(request)
        try:
            result = await self.rest.private("private/create-order", params, safe=False)
            status, reason, reject_code = OrderStatus.NEW, None, None
        except ex.OrderOutcomeUnknown as exc:
            exc.client_order_id = request.client_order_id
            raise
        except (ex.OrderWouldTakeLiquidity, ex.OrderNotFilled) as exc:
            if not exc.details.get("order_id"):
                raise
            result = dict(exc.details)
            killed = isinstance(exc, ex.OrderNotFilled)
            status, reason = (OrderStatus.CANCELLED if killed else OrderStatus.REJECTED), exc.message
            reject_code = None if killed else exc.code
        return OrderState(
            venue_order_id=str(result.get("order_id", "")),
            client_order_id=str(result.get("client_oid") or request.client_order_id),
            instrument=request.instrument,
            side=request.side,
            order_type=request.order_type,
            status=status,
            quantity=request.quantity,
            filled_quantity=translate.dec0(0),
            price=request.price,
            avg_fill_price=None,
            fees=translate.dec0(0),
            fee_currency=None,
            created_at=None,
            updated_at=None,
            time_in_force=request.time_in_force,
            reason=reason,
            reject_code=reject_code,
        )

    @staticmethod
    def _order_ref(venue_order_id: str | None, client_order_id: str | None) -> dict[str, str]:
        if venue_order_id:
            return {"order_id": venue_order_id}
        if client_order_id:
            return {"client_oid": client_order_id}
        raise ValueError("give venue_order_id or client_order_id")

    async def cancel_order(
        self, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> None:
        await self.rest.private(
            "private/cancel-order", self._order_ref(venue_order_id, client_order_id), safe=True
        )

    async def cancel_all_orders(self, instrument: str | None = None) -> None:
        params = {"instrument_name": symbols.to_venue(instrument)} if instrument else {}
        await self.rest.private("private/cancel-all-orders", params, safe=True)

    async def get_order(
        self, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> OrderState:
        ref = self._order_ref(venue_order_id, client_order_id)
        result = await self.rest.private("private/get-order-detail", ref, safe=True)
        if not result.get("order_id"):
            raise ex.OrderNotFound(str(ref), venue=self.venue)
        return translate.order(result)  # type: ignore[arg-type]

    async def get_open_orders(self, instrument: str | None = None) -> list[OrderState]:
        params = {"instrument_name": symbols.to_venue(instrument)} if instrument else {}
        result = await self.rest.private("private/get-open-orders", params, safe=True)
        return [translate.order(row) for row in result.get("data", [])]

    @staticmethod
    def _window(
        instrument: str | None, start: datetime | None, end: datetime | None, limit: int
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": max(1, min(limit, 100))}  # an int: the venue refuses a string
        if instrument:
            params["instrument_name"] = symbols.to_venue(instrument)
        if start is not None:
            params["start_time"] = str(translate.dt_to_ms(start))
        if end is not None:
            params["end_time"] = str(translate.dt_to_ms(end))
        return params

    async def get_order_history(
        self,
        instrument: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> list[OrderState]:
        params = self._window(instrument, start, end, limit)
        result = await self.rest.private("private/get-order-history", params, safe=True)
        return [translate.order(row) for row in result.get("data", [])]

    async def get_fills(
        self,
        instrument: str | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int = 100,
    ) -> list[Fill]:
        params = self._window(instrument, start, end, limit)
        result = await self.rest.private("private/get-trades", params, safe=True)
        return [translate.fill(row) for row in result.get("data", [])]

    # ---- streams ------------------------------------------------------------------------------
    def market_stream(self, subscriptions: Sequence[MarketSubscription]) -> CryptocomMarketStream:
        return CryptocomMarketStream(
            url=self.market_ws_url, subscriptions=subscriptions, settings=self.settings.stream
        )

    def user_stream(self, instruments: Sequence[str] | None = None) -> CryptocomUserStream:
        if self.credentials is None:
            raise ex.AuthFailed("the user stream needs credentials", venue=self.venue)
        return CryptocomUserStream(
            url=self.user_ws_url,
            credentials=self.credentials,
            instruments=instruments,
            settings=self.settings.stream,
        )
