"""The feed of one venue: lease, stream, aggregate, publish, candles, backfill, liveness.

`VenueFeed(venue).run(stop)` loops until `stop` is set:

1. take the venue's lease (or stand by and retry: another replica owns it);
2. load the venue's instruments (syncing them from the venue if the registry has none);
3. open the adapter's market stream (ticker, trades, book per instrument); the adapter
   reconnects and resyncs books by itself and reports it with `StreamStatus` events;
4. on every connect: drop the books (fresh snapshots follow), back-fill candles from the venue
   (trades wait until the back-fill is stored, so none is counted twice), and go `live` again
   with the first data;
5. publish each changed price through the fenced Redis script (cache + fan-out), fold trades
   into candles in batches, renew the lease and the venue's liveness key;
6. on a disconnect mark the venue `stale` and tell clients; on losing the lease stop writing.

Nothing here names a venue: every venue in `apps.exchanges.venues.VENUES` runs the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    BookUpdate,
    Credentials,
    ExchangeAdapter,
    MarketChannel,
    MarketSubscription,
    StreamStatus,
    Ticker,
    Trade,
)
from apps.exchanges.adapters.base import Candle as VenueCandle
from apps.marketdata import cache, selectors, services
from apps.marketdata.cache import PriceSnapshot
from apps.marketdata.candles import aggregate, bucket_start, timeframe_seconds
from apps.marketdata.choices import INTERVAL_SECONDS
from apps.marketdata.feed.aggregator import Outcome, PriceAggregator
from apps.marketdata.feed.lease import LeaseLost, VenueLease
from k2.aio import cancel_and_wait
from k2.observability.logging import get_logger

log = get_logger(__name__)

AdapterFactory = Callable[[str], AbstractAsyncContextManager[ExchangeAdapter]]


class Resubscribe(Exception):
    """Reopen the stream (instrument set changed, or a book must be rebuilt from a snapshot)."""


@dataclass(frozen=True)
class FeedConfig:
    lease_seconds: float = 10.0
    book_depth: int = 10
    max_instruments: int = 500
    backfill_candles: int = 120
    venue_timeout: float = 15.0
    flush_interval: float = 0.25
    flush_batch: int = 1000
    max_buffered_trades: int = 200_000
    instrument_refresh_seconds: float = 60.0
    retry_base: float = 0.5
    retry_cap: float = 30.0
    backfill_concurrency: int = 4

    @classmethod
    def from_settings(cls, **overrides: Any) -> FeedConfig:
        values: dict[str, Any] = {
            "lease_seconds": settings.K2_MARKETDATA_LEASE_SECONDS,
            "book_depth": settings.K2_MARKETDATA_BOOK_DEPTH,
            "max_instruments": settings.K2_MARKETDATA_FEED_MAX_INSTRUMENTS,
            "backfill_candles": settings.K2_MARKETDATA_BACKFILL_CANDLES,
            "venue_timeout": settings.K2_MARKETDATA_VENUE_TIMEOUT_SECONDS,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class FeedStats:
    leases: int = 0
    connects: int = 0
    disconnects: int = 0
    resyncs: int = 0
    resubscribes: int = 0
    published: int = 0
    trades_written: int = 0
    backfills: int = 0
    backfill_errors: int = 0
    errors: int = 0
    history: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.history.append(what)
        del self.history[:-200]


# The venue did not answer at all: retried like any failure, logged without a stack trace.
UNREACHABLE: tuple[type[BaseException], ...] = (ex.ExchangeUnavailable, httpx.TransportError, ConnectionError)

_simulator_keys: dict[str, Credentials] = {}


def _simulator_credentials(venue: str) -> Credentials:
    """Development only: a key from the venue's local simulator (`POST /_sim/accounts` on the host
    of the venue's configured REST URL). Kept per process; forgotten when the venue refuses it."""
    if venue not in _simulator_keys:
        from apps.exchanges.venues import venue_spec

        rest = urlsplit(getattr(settings, venue_spec(venue).url_settings["base_url"]))
        response = httpx.post(f"{rest.scheme}://{rest.netloc}/_sim/accounts", json={}, timeout=3)
        response.raise_for_status()
        body = response.json()
        _simulator_keys[venue] = Credentials(
            api_key=str(body.get("api_key") or body["api_key_id"]),
            api_secret=str(body.get("api_secret") or body["private_key_pem"]),
        )
    return _simulator_keys[venue]


def feed_credentials(venue: str) -> Credentials | None:
    """The feed's own key at a venue whose market stream is signed (`K2_MARKETDATA_FEED_CREDENTIALS`,
    or in development `K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS`); None (public data) otherwise."""
    entry = settings.K2_MARKETDATA_FEED_CREDENTIALS.get(venue)
    if not entry:
        if venue in settings.K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS:
            return _simulator_credentials(venue)
        return None
    secret = entry.get("api_secret")
    if not secret and entry.get("api_secret_file"):
        secret = Path(entry["api_secret_file"]).read_text()
    return Credentials(api_key=str(entry["api_key"]), api_secret=str(secret or ""))


def _default_factory(venue: str) -> AbstractAsyncContextManager[ExchangeAdapter]:
    from apps.exchanges.calls import open_adapter

    return open_adapter(venue, credentials=feed_credentials(venue))


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(tz=UTC)


class VenueFeed:
    def __init__(
        self,
        venue: str,
        *,
        config: FeedConfig | None = None,
        adapter_factory: AdapterFactory | None = None,
        redis_client: aioredis.Redis | None = None,
    ) -> None:
        self.venue = venue
        self.config = config or FeedConfig.from_settings()
        self.adapter_factory = adapter_factory or _default_factory
        self._own_client = redis_client is None
        self.redis = redis_client or cache.async_client()
        self.lease = VenueLease(self.redis, venue, self.config.lease_seconds)
        self._publish_script: Any = self.redis.register_script(cache.PUBLISH_PRICE)
        self._state_script: Any = self.redis.register_script(cache.SET_VENUE_STATE)
        self.stats = FeedStats()
        self.role = "standby"
        self.venue_state = cache.VENUE_STALE
        self.venue_detail = ""
        self.aggregator: PriceAggregator | None = None
        self.instrument_ids: dict[str, Any] = {}
        self._trades: list[Trade] = []
        self._trades_ready = asyncio.Event()
        self._history_floor: datetime | None = None
        self._backfill: asyncio.Task[None] | None = None
        self._pending_live = False

    # ---- main loop ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        try:
            while not stop.is_set():
                if not await self._acquire():
                    await _sleep_or_stop(stop, self.config.lease_seconds / 3)
                    continue
                self.role = "leader"
                self.stats.leases += 1
                self.stats.note("lease")
                log.info("feed_lease_acquired", venue=self.venue, token=self.lease.token)
                try:
                    await _until_stopped(stop, self._lead())
                    attempt = 0
                except LeaseLost:
                    log.warning("feed_lease_lost", venue=self.venue)
                    self.stats.note("lease_lost")
                except ex.FatalError as exc:  # e.g. a signed stream without (valid) feed credentials
                    _simulator_keys.pop(self.venue, None)  # a restarted simulator forgot our key
                    self.stats.errors += 1
                    attempt = max(attempt + 1, 10)  # retry at the slowest pace: a person must act
                    self.stats.note(f"refused:{exc.code}")
                    log.error(
                        "feed_venue_refused",
                        venue=self.venue,
                        error=str(exc),
                        hint="K2_MARKETDATA_FEED_CREDENTIALS",
                    )
                except UNREACHABLE as exc:  # not answering (an outage, a simulator still starting)
                    self.stats.errors += 1
                    attempt += 1
                    self.stats.note(f"unreachable:{type(exc).__name__}")
                    error = str(exc) or repr(exc)
                    log.warning("feed_venue_unreachable", venue=self.venue, attempt=attempt, error=error)
                except Exception as exc:
                    self.stats.errors += 1
                    attempt += 1
                    self.stats.note(f"error:{type(exc).__name__}")
                    log.exception("feed_failed", venue=self.venue, attempt=attempt)
                finally:
                    self.role = "standby"
                    await self._step_down()
                if attempt and not stop.is_set():
                    cap = min(self.config.retry_cap, self.config.retry_base * 2 ** min(attempt, 10))
                    await _sleep_or_stop(stop, random.uniform(cap / 2, cap))  # noqa: S311 - jitter
        finally:
            if self._own_client:
                await self.redis.aclose()

    async def _acquire(self) -> bool:
        try:
            return await self.lease.acquire()
        except aioredis.RedisError:
            log.warning("feed_redis_unavailable", venue=self.venue)
            return False

    async def _step_down(self) -> None:
        if self._backfill is not None:
            self._backfill.cancel()
            self._backfill = None
        with contextlib.suppress(Exception):
            await self._flush_trades(final=True)
        with contextlib.suppress(Exception):
            await self._set_state(cache.VENUE_STALE, "feed stopped")
        with contextlib.suppress(Exception):
            await self.lease.release()

    async def _lead(self) -> None:
        while True:
            instruments = await self._load_instruments()
            if not instruments:
                log.warning("feed_no_instruments", venue=self.venue)
                await self._keepalive_for(self.config.instrument_refresh_seconds)
                continue
            self.aggregator = PriceAggregator(self.venue, {i.symbol: i.venue_symbol for i in instruments})
            self.instrument_ids = {i.symbol: i.id for i in instruments}
            try:
                await self._stream(sorted(self.instrument_ids))
            except Resubscribe as why:
                self.stats.resubscribes += 1
                self.stats.note(f"resubscribe:{why}")
                log.info("feed_resubscribe", venue=self.venue, reason=str(why))

    async def _stream(self, symbols: list[str]) -> None:
        subscriptions = [
            sub
            for symbol in symbols
            for sub in (
                MarketSubscription(MarketChannel.TICKER, symbol),
                MarketSubscription(MarketChannel.TRADES, symbol),
                MarketSubscription(MarketChannel.BOOK, symbol, depth=self.config.book_depth),
            )
        ]
        async with self.adapter_factory(self.venue) as adapter:
            tasks = [
                asyncio.create_task(self._consume(adapter, subscriptions)),
                asyncio.create_task(self._keepalive(set(symbols))),
                asyncio.create_task(self._writer()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    if (error := task.exception()) is not None:
                        log.info("feed_stream_ended", venue=self.venue, reason=repr(error))
                    task.result()  # re-raise the first failure
            finally:
                await cancel_and_wait(*tasks, self._backfill)
                self._backfill = None
                await self._flush_trades(final=True)

    # ---- the stream -----------------------------------------------------------------------
    async def _consume(self, adapter: ExchangeAdapter, subscriptions: list[MarketSubscription]) -> None:
        assert self.aggregator is not None
        aggregator = self.aggregator
        async with adapter.market_stream(subscriptions) as stream:
            async for event in stream:
                if isinstance(event, StreamStatus):
                    await self._on_status(adapter, event)
                    continue
                if self._pending_live and isinstance(event, Ticker | BookUpdate | Trade):
                    self._pending_live = False
                    await self._set_state(cache.VENUE_LIVE, "")
                if isinstance(event, Ticker):
                    outcome = aggregator.on_ticker(event)
                elif isinstance(event, BookUpdate):
                    outcome = aggregator.on_book(event)
                elif isinstance(event, Trade):
                    outcome = aggregator.on_trade(event)
                else:
                    continue
                await self._apply(outcome)
        raise Resubscribe("stream ended")

    async def _on_status(self, adapter: ExchangeAdapter, event: StreamStatus) -> None:
        assert self.aggregator is not None
        if event.state == "connected":
            self.stats.connects += 1
            self.stats.note("connected")
            self.aggregator.reset_books()
            self._pending_live = True
            self._start_backfill(adapter)
            log.info("feed_connected", venue=self.venue, attempt=event.attempt)
        elif event.state == "disconnected":
            self.stats.disconnects += 1
            self.stats.note("disconnected")
            self._pending_live = False
            await self._set_state(cache.VENUE_STALE, f"venue stream disconnected: {event.detail}")
            log.warning("feed_disconnected", venue=self.venue, attempt=event.attempt, detail=event.detail)
        elif event.state == "resync":
            self.stats.resyncs += 1
            self.stats.note("resync")
            symbols = self.aggregator.on_resync(event.detail)
            log.warning("feed_book_resync", venue=self.venue, detail=event.detail, instruments=symbols[:10])

    async def _apply(self, outcome: Outcome) -> None:
        for snap in outcome.publish:
            await self._publish(snap)
        if outcome.trades:
            self._buffer_trades(outcome.trades)
        if outcome.resubscribe:
            raise Resubscribe("crossed book")

    async def _publish(self, snap: PriceSnapshot) -> None:
        seq = await self._publish_script(
            keys=[self.lease.key, cache.seq_key(snap.instrument), cache.price_key(snap.instrument)],
            args=[self.lease.token, snap.body_json(), cache.EVENTS_CHANNEL],
        )
        if int(seq) < 0:
            raise LeaseLost(self.venue)
        self.stats.published += 1

    async def _set_state(self, state: str, detail: str) -> None:
        """Write the venue's liveness (fenced) and tell clients when it changed."""
        changed = state != self.venue_state
        self.venue_state, self.venue_detail = state, detail
        now = _iso(_now())
        doc = json.dumps({"venue": self.venue, "state": state, "since": now, "detail": detail})
        event = ""
        if changed:
            event = json.dumps(
                {"t": "status", "venue": self.venue, "state": state, "detail": detail, "since": now}
            )
        ok = await self._state_script(
            keys=[self.lease.key, cache.venue_key(self.venue)],
            args=[self.lease.token, doc, int(self.config.lease_seconds * 3000), cache.EVENTS_CHANNEL, event],
        )
        if not ok:
            raise LeaseLost(self.venue)

    # ---- lease, liveness, instrument changes ----------------------------------------------
    async def _keepalive(self, symbols: set[str]) -> None:
        interval = max(0.05, self.config.lease_seconds / 3)
        next_check = time.monotonic() + self.config.instrument_refresh_seconds
        while True:
            await asyncio.sleep(interval)
            await self.lease.renew()
            await self._set_state(self.venue_state, self.venue_detail)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self.config.instrument_refresh_seconds
                await self._refresh_references()
                current = {i.symbol for i in await self._instruments_from_db()}
                if current and current != symbols:
                    raise Resubscribe("instrument set changed")

    async def _keepalive_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(max(0.05, self.config.lease_seconds / 3))
            await self.lease.renew()

    async def _instruments_from_db(self) -> list[Any]:
        return await database_sync_to_async(selectors.instruments_for_feed)(
            venue=self.venue, limit=self.config.max_instruments
        )

    async def _load_instruments(self) -> list[Any]:
        instruments = await self._instruments_from_db()
        if instruments:
            return instruments
        async with self.adapter_factory(self.venue) as adapter:
            listed = await asyncio.wait_for(adapter.get_instruments(), self.config.venue_timeout)
        await database_sync_to_async(services.instruments_upsert)(venue=self.venue, instruments=listed)
        return await self._instruments_from_db()

    # ---- trades -> candles ----------------------------------------------------------------
    def _buffer_trades(self, trades: list[Trade]) -> None:
        floor = self._history_floor
        self._trades.extend(t for t in trades if floor is None or t.time >= floor)
        overflow = len(self._trades) - self.config.max_buffered_trades
        if overflow > 0:  # the database has been away for long: the next back-fill repairs it
            del self._trades[:overflow]
            log.error("feed_trade_buffer_overflow", venue=self.venue, dropped=overflow)

    async def _writer(self) -> None:
        while True:
            await asyncio.sleep(self.config.flush_interval)
            try:
                await self._flush_trades()
            except Exception:
                self.stats.errors += 1
                log.exception("feed_trade_write_failed", venue=self.venue)

    async def _flush_trades(self, *, final: bool = False) -> None:
        """Write buffered trades once the back-fill of this connection is stored (on the way
        out, `final`, whatever is buffered: the dedupe and watermarks keep that exact)."""
        if not (self._trades_ready.is_set() or final):
            return
        while self._trades:
            batch = self._trades[: self.config.flush_batch]
            written = await database_sync_to_async(services.trades_record)(
                trades=batch, instrument_ids=self.instrument_ids
            )
            del self._trades[: len(batch)]
            self.stats.trades_written += written

    # ---- back-fill ------------------------------------------------------------------------
    def _start_backfill(self, adapter: ExchangeAdapter) -> None:
        if self._backfill is not None:
            self._backfill.cancel()
        self._trades_ready.clear()
        window = timedelta(seconds=INTERVAL_SECONDS["1m"] * self.config.backfill_candles)
        self._history_floor = bucket_start(_now() - window, "1m")
        self._backfill = asyncio.create_task(self._run_backfill(adapter))

    async def _run_backfill(self, adapter: ExchangeAdapter) -> None:
        try:
            limit = asyncio.Semaphore(self.config.backfill_concurrency)

            async def one(symbol: str) -> None:
                async with limit:
                    await self._backfill_instrument(adapter, symbol)

            await asyncio.gather(*(one(s) for s in self.instrument_ids), return_exceptions=False)
            await self._refresh_references()
            self.stats.backfills += 1
            self.stats.note("backfilled")
        finally:
            self._trades_ready.set()  # even a failed back-fill must not hold trades forever

    async def _refresh_references(self) -> None:
        if self.aggregator is None:
            return
        refs = await database_sync_to_async(selectors.reference_prices)(
            instrument_ids=self.instrument_ids, at=_now() - timedelta(hours=24)
        )
        self.aggregator.reference_24h = refs

    async def _backfill_instrument(self, adapter: ExchangeAdapter, symbol: str) -> None:
        timeframes = {tf: timeframe_seconds(tf) for tf in adapter.capabilities["candle_timeframes"]}
        for interval, seconds in INTERVAL_SECONDS.items():
            try:
                await self._backfill_interval(adapter, symbol, interval, seconds, timeframes)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.backfill_errors += 1
                log.warning(
                    "feed_backfill_failed",
                    venue=self.venue,
                    instrument=symbol,
                    interval=interval,
                    error=repr(exc),
                )

    async def _backfill_interval(
        self,
        adapter: ExchangeAdapter,
        symbol: str,
        interval: str,
        seconds: int,
        timeframes: dict[str, int | None],
    ) -> None:
        count = self.config.backfill_candles
        now = _now()
        if interval in timeframes:
            source_tf, per_bucket = interval, 1
        else:  # roll up the coarsest venue timeframe that divides the interval
            finer = [(s, tf) for tf, s in timeframes.items() if s and s < seconds and seconds % s == 0]
            if not finer:
                return
            source_seconds, source_tf = max(finer)
            per_bucket = seconds // source_seconds
            count = max(1, min(count, 300 // per_bucket))
        start = bucket_start(now - timedelta(seconds=seconds * (count - 1)), interval)
        candles: list[VenueCandle] = await asyncio.wait_for(
            adapter.get_candles(symbol, source_tf, start=start, end=now, limit=min(300, count * per_bucket)),
            self.config.venue_timeout,
        )
        watermark = _now()
        if per_bucket > 1:
            candles = aggregate(candles, interval)
        await database_sync_to_async(services.candles_store_venue)(
            instrument_id=self.instrument_ids[symbol], interval=interval, candles=candles, watermark=watermark
        )


# ---- helpers --------------------------------------------------------------------------------


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _until_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it ends (its exception propagates) or `stop` is set (then cancel it)."""
    task = asyncio.create_task(work)
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(stopper, task)
    if not task.cancelled():
        task.result()
