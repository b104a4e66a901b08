"""Kalshi WebSocket streams (spec section 5): one signed connection per stream.

The upgrade request carries the signed headers (`GET /trade-api/ws/v2`). A stream subscribes its
channels (`subscribe` commands, one per channel), answers the server's pings (the `websockets`
library pongs) and pings the server itself so a silent connection is detected and dropped,
reconnects with exponential backoff and jitter after any drop (new signature, re-subscription,
fresh snapshots), and checks `orderbook_delta` sequence numbers per subscription: on a gap it
asks for fresh snapshots with `update_subscription` / `get_snapshot` (falling back to
unsubscribe + subscribe) and ignores that book's deltas until the snapshot arrives. A data
message it cannot translate is skipped with a warning (a book's: that book is resynced instead),
never a reconnect; protocol messages (acks, errors) keep their own handling.

Kalshi deltas are size *changes*; the stream keeps each book and emits K2 `BookUpdate`s with
absolute sizes, in YES terms (bids = YES bids, asks = NO bids at 1 - price).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    BookLevel,
    BookUpdate,
    Credentials,
    MarketChannel,
    MarketEvent,
    MarketSubscription,
    Position,
    StreamStatus,
    UserEvent,
)
from apps.exchanges.adapters.kalshi import signing, translate
from apps.exchanges.adapters.kalshi.types import MarketLifecycle
from apps.exchanges.adapters.stream import UNTRANSLATABLE, Reconnect, ReconnectingStream

E = TypeVar("E")
ONE = Decimal(1)
KalshiMarketEvent = MarketEvent | MarketLifecycle
KalshiUserEvent = UserEvent | Position

CHANNELS = {
    MarketChannel.TICKER: "ticker",
    MarketChannel.TRADES: "trade",
    MarketChannel.BOOK: "orderbook_delta",
}
USER_CHANNELS = ("fill", "user_orders", "market_positions")
LIFECYCLE_CHANNEL = "market_lifecycle_v2"


@dataclass(frozen=True)
class StreamSettings:
    """Connection behaviour; production defaults, tests shrink every interval."""

    open_timeout: float = 10.0
    close_timeout: float = 2.0
    ping_interval: float = 10.0  # our pings: a server that stops answering is dead
    ping_timeout: float = 10.0
    silence_timeout: float | None = None  # optional: reconnect after this long without any message
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0
    stable_seconds: float = 60.0  # a connection held this long: the back-off after its drop starts afresh
    max_reconnects: int | None = None  # None = forever
    queue_size: int = 10_000


@dataclass
class StreamStats:
    connects: int = 0
    reconnects: int = 0
    resyncs: int = 0
    messages: int = 0
    skipped: int = 0  # data messages that could not be translated
    errors: list[str] = field(default_factory=list)


@dataclass
class _Book:
    yes: dict[Decimal, Decimal] = field(default_factory=dict)
    no: dict[Decimal, Decimal] = field(default_factory=dict)


class KalshiStream(ReconnectingStream[E, StreamSettings]):
    """One auto-reconnecting, signed socket subscribed to `channels` ({channel: tickers or None})."""

    venue = "kalshi"

    def __init__(
        self,
        *,
        url: str,
        credentials: Credentials,
        channels: dict[str, list[str] | None],
        settings: StreamSettings,
    ) -> None:
        self.stats = StreamStats()
        super().__init__(url=url, settings=settings)
        self.credentials = credentials
        self.channels = channels
        self._ids = itertools.count(1)
        self._pending: dict[int, str] = {}  # command id -> channel awaiting "subscribed"
        self._snapshot_cmds: dict[int, int] = {}  # get_snapshot command id -> sid
        self.sids: dict[int, str] = {}  # sid -> channel
        self._seq: dict[int, int] = {}
        self._awaiting: dict[int, set[str]] = {}
        self._books: dict[str, _Book] = {}
        self._attempt = 0
        self._announced = False

    def connect_options(self) -> dict[str, Any]:
        """The upgrade is signed (a new signature each time); our pings find a dead server."""
        path = urlsplit(self.url).path or "/trade-api/ws/v2"
        headers = signing.auth_headers(self.credentials.api_key, self.credentials.api_secret, "GET", path)
        return {
            "additional_headers": headers,
            "ping_interval": self.settings.ping_interval,
            "ping_timeout": self.settings.ping_timeout,
        }

    def refusal(self, exc: BaseException) -> ex.ExchangeError | None:
        status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
        if status in (401, 403):
            message = f"WebSocket upgrade refused: HTTP {status}"
            return ex.AuthFailed(message, venue=self.venue, http_status=status)
        return None

    async def _session(self, ws: ClientConnection, attempt: int) -> None:
        self._attempt = attempt
        self._pending.clear()
        self._snapshot_cmds.clear()
        self.sids.clear()
        self._seq.clear()
        self._awaiting.clear()
        self._books.clear()
        self._announced = False
        for channel, tickers in self.channels.items():
            await self._subscribe(ws, channel, tickers)
        while True:
            try:
                if self.settings.silence_timeout:
                    raw = await asyncio.wait_for(ws.recv(), self.settings.silence_timeout)
                else:
                    raw = await ws.recv()
            except TimeoutError as exc:
                raise Reconnect("silent stream") from exc
            msg = json.loads(raw)
            if isinstance(msg, dict):
                self.stats.messages += 1
                await self._handle(ws, msg)

    async def send(self, ws: ClientConnection, cmd: str, params: dict[str, Any] | None = None) -> int:
        cmd_id = next(self._ids)
        payload: dict[str, Any] = {"id": cmd_id, "cmd": cmd}
        if params is not None:
            payload["params"] = params
        await ws.send(json.dumps(payload, separators=(",", ":")))
        return cmd_id

    async def _subscribe(self, ws: ClientConnection, channel: str, tickers: list[str] | None) -> None:
        params: dict[str, Any] = {"channels": [channel]}
        if tickers:
            params["market_tickers"] = list(tickers)
        self._pending[await self.send(ws, "subscribe", params)] = channel

    def _connected_if_ready(self) -> None:
        if not self._pending and not self._announced:
            self._announced = True
            self.stats.connects += 1
            self.emit(StreamStatus("connected", self._attempt))

    async def _handle(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        body = msg.get("msg") if isinstance(msg.get("msg"), dict) else {}
        assert isinstance(body, dict)
        if kind == "subscribed":
            channel = self._pending.pop(int(msg.get("id") or 0), None) or str(body.get("channel", ""))
            sid = int(body.get("sid") or msg.get("sid") or 0)
            self.sids[sid] = channel
            self._connected_if_ready()
        elif kind == "error":
            await self._on_error(ws, msg, body)
        elif kind == "orderbook_snapshot":
            await self._on_snapshot(ws, msg, body)
        elif kind == "orderbook_delta":
            await self._on_delta(ws, msg, body)
        elif kind in ("ok", "unsubscribed", "list_subscriptions"):
            return
        else:
            try:
                self.on_data(str(kind), body)
            except UNTRANSLATABLE as exc:
                self.skip(str(kind), exc, msg.get("msg"))

    async def _on_error(self, ws: ClientConnection, msg: dict[str, Any], body: dict[str, Any]) -> None:
        code = int(body.get("code") or 0)
        text = f"{code} {body.get('msg', '')}"
        self.stats.errors.append(text)
        cmd_id = int(msg.get("id") or 0)
        if code == 9:
            raise ex.AuthFailed(f"WebSocket: {text}", venue="kalshi")
        if cmd_id in self._snapshot_cmds:  # get_snapshot unsupported: resubscribe instead
            sid = self._snapshot_cmds.pop(cmd_id)
            channel = self.sids.pop(sid, "orderbook_delta")
            await self.send(ws, "unsubscribe", {"sids": [sid]})
            await self._subscribe(ws, channel, self.channels.get(channel))
            return
        if cmd_id in self._pending:
            channel = self._pending.pop(cmd_id)
            if code == 6:  # already subscribed: harmless
                self._connected_if_ready()
                return
            raise ex.BadRequest(f"cannot subscribe to {channel}: {text}", venue="kalshi")
        if code in (10, 17, 25):  # terminal subscription errors: start over
            raise Reconnect(text)

    # ---- books ----------------------------------------------------------------------------
    async def _on_snapshot(self, ws: ClientConnection, msg: dict[str, Any], body: dict[str, Any]) -> None:
        sid, seq = int(msg.get("sid") or 0), msg.get("seq")
        name = str(body.get("market_ticker", ""))
        if seq is not None:
            self._seq[sid] = int(seq)  # received in order, whether or not it can be translated
        try:
            yes, no = translate.orderbook_sides(body)
            update = self._update(name, yes, no, snapshot=True, sequence=self._seq.get(sid))
        except UNTRANSLATABLE as exc:
            await self._untranslatable_book(ws, sid, name, "orderbook_snapshot", exc, body)
            return
        self._books[name] = _Book(yes=dict(yes), no=dict(no))
        self.book_translated(name)
        self._awaiting.get(sid, set()).discard(name)
        self.emit(update)

    async def _on_delta(self, ws: ClientConnection, msg: dict[str, Any], body: dict[str, Any]) -> None:
        sid, seq = int(msg.get("sid") or 0), int(msg.get("seq") or 0)
        name = str(body.get("market_ticker", ""))
        last = self._seq.get(sid)
        if last is None:
            return  # no snapshot on this subscription yet
        self._seq[sid] = seq
        if seq != last + 1:
            await self._resync(ws, sid, f"{self.sids.get(sid, sid)}: seq {seq} after {last}")
            return
        if name in self._awaiting.get(sid, set()) or name not in self._books:
            return
        try:  # a delta without a readable price, size change or side would corrupt the book
            price = translate.dec(body.get("price_dollars"))
            if price is None and (cents := translate.dec(body.get("price"))) is not None:
                price = cents / 100
            change = translate.dec(body.get("delta_fp"))
            if change is None:
                change = translate.dec(body.get("delta"))
            if price is None or change is None:
                raise ValueError("book delta without a price or size change")
            side = str(body.get("side", "")).lower()
            if side not in ("yes", "no"):
                raise ValueError(f"unknown book side {side!r}")
            at = translate.row_time(body, "ts_ms", "ts") or translate.now()
        except UNTRANSLATABLE as exc:
            await self._untranslatable_book(ws, sid, name, "orderbook_delta", exc, body)
            return
        levels = self._books[name].yes if side == "yes" else self._books[name].no
        size = levels.get(price, Decimal(0)) + change
        if size <= Decimal("0.000001"):
            levels.pop(price, None)
            size = Decimal(0)
        else:
            levels[price] = size
        level = (BookLevel(price, size),) if side == "yes" else (BookLevel(ONE - price, size),)
        bids, asks = (level, ()) if side == "yes" else ((), level)
        self.emit(
            BookUpdate(
                instrument=name,
                is_snapshot=False,
                bids=bids,
                asks=asks,
                time=at,
                sequence=seq,
            )
        )

    async def _untranslatable_book(
        self, ws: ClientConnection, sid: int, name: str, kind: str, error: BaseException, body: Any
    ) -> None:
        """A book message we cannot apply: resync the book (fresh snapshots, as after a gap), or
        leave it out; either way its deltas are ignored until a good snapshot."""
        if self.book_untranslatable(name, kind, error, body):
            await self._resync(ws, sid, f"{self.sids.get(sid, sid)} {name}: untranslatable book data")
        self._books.pop(name, None)

    async def _resync(self, ws: ClientConnection, sid: int, detail: str) -> None:
        self.stats.resyncs += 1
        self.emit(StreamStatus("resync", self.stats.resyncs, detail))
        tickers = self.channels.get(self.sids.get(sid, "orderbook_delta")) or sorted(self._books)
        self._awaiting[sid] = set(tickers)
        cmd_id = await self.send(
            ws, "update_subscription", {"sid": sid, "market_tickers": tickers, "action": "get_snapshot"}
        )
        self._snapshot_cmds[cmd_id] = sid

    @staticmethod
    def _update(
        name: str,
        yes: dict[Decimal, Decimal],
        no: dict[Decimal, Decimal],
        *,
        snapshot: bool,
        sequence: int | None,
    ) -> BookUpdate:
        book = translate.yes_book(name, yes, no, sequence=sequence)
        return BookUpdate(name, snapshot, book.bids, book.asks, book.time, sequence)

    def on_data(self, kind: str, body: dict[str, Any]) -> None:
        raise NotImplementedError


class KalshiMarketStream(KalshiStream[KalshiMarketEvent]):
    """Tickers, trades, books (snapshot + seq-checked deltas) and, optionally, market lifecycle."""

    def __init__(
        self,
        *,
        url: str,
        credentials: Credentials,
        subscriptions: Sequence[MarketSubscription],
        settings: StreamSettings,
        lifecycle: bool = False,
    ) -> None:
        channels: dict[str, list[str] | None] = {}
        for sub in subscriptions:
            channel = CHANNELS.get(sub.channel)
            if channel is None:
                raise ex.BadRequest(f"Kalshi has no {sub.channel} stream", venue="kalshi")
            tickers = channels.setdefault(channel, [])
            assert tickers is not None
            if sub.instrument not in tickers:
                tickers.append(sub.instrument)
        if lifecycle:
            channels[LIFECYCLE_CHANNEL] = None
        super().__init__(url=url, credentials=credentials, channels=channels, settings=settings)

    def on_data(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "ticker":
            self.emit(translate.ws_ticker(body))
        elif kind == "trade":
            self.emit(translate.trade(body))
        elif kind == "market_lifecycle_v2":
            self.emit(translate.lifecycle(body))


class KalshiUserStream(KalshiStream[KalshiUserEvent]):
    """Fills, order updates and position changes of one account."""

    resync_on_skip = True

    def __init__(
        self,
        *,
        url: str,
        credentials: Credentials,
        instruments: Sequence[str] | None,
        settings: StreamSettings,
        positions: bool = True,
    ) -> None:
        tickers = list(instruments) if instruments else None
        channels = [c for c in USER_CHANNELS if positions or c != "market_positions"]
        super().__init__(
            url=url,
            credentials=credentials,
            channels=dict.fromkeys(channels, tickers),
            settings=settings,
        )

    def on_data(self, kind: str, body: dict[str, Any]) -> None:
        if kind == "fill":
            self.emit(translate.fill(body))
        elif kind == "user_order":
            self.emit(translate.order(body))
        elif kind == "market_position":
            self.emit(translate.ws_position(body))
