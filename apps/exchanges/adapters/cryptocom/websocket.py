"""Crypto.com v1 WebSocket streams (spec section 4): market and user sockets.

Each stream owns one connection at a time and keeps it alive on its own: it waits the venue's
settle delay after connecting, authenticates (`public/auth`, user socket), subscribes, answers
`public/heartbeat`, reconnects with exponential backoff and jitter after any drop (then
re-authenticates and re-subscribes), treats a silent socket as dead, and checks the book's
`u`/`pu` chain, resubscribing for a fresh snapshot after a gap. A data row it cannot translate
is skipped with a warning (a book row: the book is resynced instead), never a reconnect.
Consumers see normalised events (plus `StreamStatus` markers) through `async for`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    BalanceUpdate,
    Credentials,
    MarketChannel,
    MarketEvent,
    MarketSubscription,
    StreamStatus,
    UserEvent,
)
from apps.exchanges.adapters.cryptocom import symbols, translate
from apps.exchanges.adapters.cryptocom.client import sign
from apps.exchanges.adapters.stream import UNTRANSLATABLE, Reconnect, ReconnectingStream

E = TypeVar("E")


@dataclass(frozen=True)
class StreamSettings:
    """Connection behaviour; production defaults, tests shrink every interval."""

    connect_delay: float = 1.0  # the venue pro-rates limits to the second the socket opened
    silence_timeout: float = 35.0  # > the 30 s server heartbeat
    open_timeout: float = 10.0
    close_timeout: float = 2.0
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0
    stable_seconds: float = 60.0  # a connection held this long: the back-off after its drop starts afresh
    max_reconnects: int | None = None  # None = forever
    book_frequency_ms: int = 100
    queue_size: int = 10_000


@dataclass
class StreamStats:
    connects: int = 0
    reconnects: int = 0
    resyncs: int = 0
    heartbeats: int = 0
    messages: int = 0
    skipped: int = 0  # data rows that could not be translated


class CryptocomStream(ReconnectingStream[E, StreamSettings]):
    """One auto-reconnecting socket; subclasses subscribe and turn messages into events."""

    venue = "cryptocom"
    kind = "market"

    def __init__(self, *, url: str, channels: Sequence[str], settings: StreamSettings) -> None:
        self.stats = StreamStats()
        super().__init__(url=url, settings=settings)
        self.channels = list(channels)
        self._ids = iter(range(1, 2**62))
        self._last_rx = 0.0
        self._silent = False

    def connect_options(self) -> dict[str, Any]:
        return {"ping_interval": None}  # the venue's own heartbeat keeps the socket alive

    async def _session(self, ws: ClientConnection, attempt: int) -> None:
        if self.settings.connect_delay:
            await asyncio.sleep(self.settings.connect_delay)
        await self._authenticate(ws)
        await self._subscribe(ws, "subscribe", self.channels)
        self.stats.connects += 1
        self.emit(StreamStatus("connected", attempt))
        loop = asyncio.get_running_loop()
        self._last_rx, self._silent = loop.time(), False
        watchdog = asyncio.create_task(self._watch_silence(ws))
        try:
            async for raw in ws:
                self._last_rx = loop.time()
                await self._handle(ws, json.loads(raw))
        except ConnectionClosed as exc:
            if self._silent:
                raise Reconnect("silent stream") from exc
            raise
        finally:
            watchdog.cancel()
        raise Reconnect("closed by the venue")

    async def _watch_silence(self, ws: ClientConnection) -> None:
        """No message (not even a heartbeat) for `silence_timeout`: the socket is dead; drop it."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.silence_timeout / 5)
            if loop.time() - self._last_rx > self.settings.silence_timeout:
                self._silent = True
                ws.transport.abort()
                return

    async def _authenticate(self, ws: ClientConnection) -> None:
        """Only the user socket authenticates."""

    async def send(self, ws: ClientConnection, payload: dict[str, Any]) -> None:
        await ws.send(json.dumps(payload, separators=(",", ":")))

    def subscribe_params(self, channels: Sequence[str]) -> dict[str, Any]:
        return {"channels": list(channels)}

    async def _subscribe(self, ws: ClientConnection, method: str, channels: Sequence[str]) -> None:
        if channels:
            payload = {
                "id": next(self._ids),
                "method": method,
                "params": self.subscribe_params(channels),
                "nonce": int(time.time() * 1000),
            }
            await self.send(ws, payload)

    async def _handle(self, ws: ClientConnection, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "public/heartbeat":
            self.stats.heartbeats += 1
            await self.send(ws, {"id": msg.get("id"), "method": "public/respond-heartbeat"})
            return
        code = int(msg.get("code") or 0)
        if code:
            self._on_error(msg, code)
            return
        result = msg.get("result")
        if method == "subscribe" and isinstance(result, dict) and "channel" in result:
            self.stats.messages += 1
            try:
                await self.on_data(ws, result)
            except UNTRANSLATABLE as exc:  # the message's own fields; its rows are skipped one by one
                self.skip(str(result.get("subscription") or result["channel"]), exc, result)

    def _on_error(self, msg: dict[str, Any], code: int) -> None:
        error = translate.error_for(code, str(msg.get("message", "")), http_status=None, result=None)
        if isinstance(error, ex.RetryableError):
            raise Reconnect(str(error))
        raise error

    async def on_data(self, ws: ClientConnection, result: dict[str, Any]) -> None:
        raise NotImplementedError

    def emit_rows(self, result: dict[str, Any], translate_row: Callable[[Any], Any]) -> None:
        """Emit each data row translated; one that cannot be is skipped, the rest still arrive,
        and then (a user stream) one resync for the message, however many of its rows were
        skipped."""
        subscription = str(result.get("subscription") or result["channel"])
        skipped = False
        for row in rows(result):
            try:
                event = translate_row(row)
            except UNTRANSLATABLE as exc:
                self.skip(subscription, exc, row, resync=False)
                skipped = True
                continue
            self.emit(event)
        if skipped:
            self.resync_skipped(subscription)


def rows(result: dict[str, Any]) -> list[Any]:
    data = result.get("data") or []
    if not isinstance(data, list):
        raise TypeError(f"data is a {type(data).__name__}, not a list")
    return data


def market_channel(sub: MarketSubscription) -> str:
    venue_symbol = symbols.to_venue(sub.instrument)
    if sub.channel is MarketChannel.TICKER:
        return f"ticker.{venue_symbol}"
    if sub.channel is MarketChannel.TRADES:
        return f"trade.{venue_symbol}"
    if sub.channel is MarketChannel.BOOK:
        return f"book.{venue_symbol}.{10 if (sub.depth or 10) <= 10 else 50}"
    timeframe = translate.TIMEFRAMES.get(sub.timeframe or "1m")
    if timeframe is None:
        raise ex.BadRequest(f"unsupported timeframe {sub.timeframe}", venue="cryptocom")
    return f"candlestick.{timeframe}.{venue_symbol}"


class CryptocomMarketStream(CryptocomStream[MarketEvent]):
    """Tickers, trades, candles and books (snapshot, then `u`/`pu`-checked deltas)."""

    kind = "market"

    def __init__(
        self, *, url: str, subscriptions: Sequence[MarketSubscription], settings: StreamSettings
    ) -> None:
        super().__init__(url=url, channels=[market_channel(s) for s in subscriptions], settings=settings)
        self._book_u: dict[str, int | None] = {}

    def subscribe_params(self, channels: Sequence[str]) -> dict[str, Any]:
        params: dict[str, Any] = {"channels": list(channels)}
        if any(c.startswith("book.") for c in channels):
            params["book_subscription_type"] = "SNAPSHOT_AND_UPDATE"
            params["book_update_frequency"] = self.settings.book_frequency_ms
        return params

    async def _session(self, ws: ClientConnection, attempt: int) -> None:
        self._book_u = {c: None for c in self.channels if c.startswith("book.")}
        await super()._session(ws, attempt)

    async def on_data(self, ws: ClientConnection, result: dict[str, Any]) -> None:
        channel = result["channel"]
        if channel == "ticker":
            self.emit_rows(result, translate.ticker)
        elif channel == "trade":
            newest_last = {**result, "data": rows(result)[::-1]}  # the venue sends newest first
            self.emit_rows(newest_last, translate.public_trade)
        elif channel == "candlestick":
            symbol, interval = result["instrument_name"], result.get("interval", "")
            self.emit_rows(result, lambda row: translate.candle(symbol, interval, row))
        elif channel in ("book", "book.update"):
            await self._on_book(ws, result["subscription"], result["instrument_name"], channel, rows(result))

    async def _on_book(
        self, ws: ClientConnection, subscription: str, symbol: str, channel: str, data: list[dict[str, Any]]
    ) -> None:
        for row in data:
            if channel == "book":
                try:
                    snapshot = translate.book_update(symbol, row, snapshot=True)
                except UNTRANSLATABLE as exc:
                    await self._untranslatable_book(ws, subscription, exc, row)
                    return
                self._book_u[subscription] = row.get("u")
                self.book_translated(subscription)
                self.emit(snapshot)
                continue
            last = self._book_u.get(subscription)
            if last is None:
                continue  # waiting for the snapshot of a resubscription
            try:
                pu, u, update = row.get("pu"), row.get("u"), row.get("update") or {}
                # empty deltas are heartbeats
                delta = (
                    translate.book_update(symbol, row, snapshot=False)
                    if update.get("bids") or update.get("asks")
                    else None
                )
            except UNTRANSLATABLE as exc:
                await self._untranslatable_book(ws, subscription, exc, row)
                return
            if pu != last:
                await self._resync(ws, subscription, f"{subscription}: pu {pu} != u {last}")
                return
            self._book_u[subscription] = u
            if delta is not None:
                self.emit(delta)

    async def _untranslatable_book(
        self, ws: ClientConnection, subscription: str, error: BaseException, row: Any
    ) -> None:
        """A book row we cannot apply: resync the book, or leave it waiting (its deltas ignored)."""
        if self.book_untranslatable(subscription, subscription, error, row):
            await self._resync(ws, subscription, f"{subscription}: untranslatable book data")
        else:
            self._book_u[subscription] = None

    async def _resync(self, ws: ClientConnection, subscription: str, detail: str) -> None:
        self.stats.resyncs += 1
        self._book_u[subscription] = None
        self.emit(StreamStatus("resync", self.stats.resyncs, detail))
        await self._subscribe(ws, "unsubscribe", [subscription])
        await self._subscribe(ws, "subscribe", [subscription])


class CryptocomUserStream(CryptocomStream[UserEvent]):
    """Order updates, fills and balances of one account (authenticated user socket)."""

    kind = "user"
    resync_on_skip = True

    def __init__(
        self,
        *,
        url: str,
        credentials: Credentials,
        instruments: Sequence[str] | None,
        settings: StreamSettings,
    ) -> None:
        if instruments:
            venue = [symbols.to_venue(i) for i in instruments]
            channels = [f"user.order.{v}" for v in venue] + [f"user.trade.{v}" for v in venue]
        else:
            channels = ["user.order", "user.trade"]
        super().__init__(url=url, channels=[*channels, "user.balance"], settings=settings)
        self.credentials = credentials
        self.auth_count = 0

    async def _authenticate(self, ws: ClientConnection) -> None:
        req_id, nonce = next(self._ids), int(time.time() * 1000)
        key = self.credentials.api_key
        sig = sign(
            secret=self.credentials.api_secret,
            method="public/auth",
            req_id=req_id,
            api_key=key,
            params={},
            nonce=nonce,
        )
        await self.send(
            ws, {"id": req_id, "method": "public/auth", "api_key": key, "sig": sig, "nonce": nonce}
        )
        deadline = time.monotonic() + self.settings.open_timeout
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            msg = json.loads(raw)
            if msg.get("method") == "public/heartbeat":
                await self._handle(ws, msg)
            elif msg.get("method") == "public/auth" and msg.get("id") == req_id:
                break
        code = int(msg.get("code") or 0)
        if code:
            raise translate.error_for(code, str(msg.get("message", "")), http_status=None, result=None)
        self.auth_count += 1

    async def on_data(self, ws: ClientConnection, result: dict[str, Any]) -> None:
        channel = result["channel"]
        if channel == "user.order":
            self.emit_rows(result, translate.order)
        elif channel == "user.trade":
            self.emit_rows(result, translate.fill)
        elif channel == "user.balance":
            self.emit_rows(
                result,
                lambda row: BalanceUpdate(
                    tuple(translate.balances(row)), translate.ms_to_dt(time.time() * 1000)
                ),
            )
