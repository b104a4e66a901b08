"""Kalshi WebSocket streams against the simulator: signed upgrade, books with sequence checks and
resync, tickers and trades, user fills/orders/positions, lifecycle, reconnect after a drop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    BookUpdate,
    Credentials,
    Fill,
    LocalOrderBook,
    MarketChannel,
    MarketSubscription,
    OrderRequest,
    OrderState,
    OrderType,
    Outcome,
    Position,
    Side,
    StreamStatus,
    Ticker,
    TimeInForce,
    Trade,
)
from apps.exchanges.adapters.kalshi.types import MarketLifecycle
from apps.exchanges.adapters.kalshi.websocket import KalshiStream

D = Decimal


async def collect(stream: Any, until: Callable[[list[Any]], bool], timeout: float = 5.0) -> list[Any]:
    seen: list[Any] = []

    async def run() -> None:
        async for event in stream:
            seen.append(event)
            if until(seen):
                return

    await asyncio.wait_for(run(), timeout)
    return seen


def statuses(events: list[Any], state: str) -> int:
    return sum(1 for e in events if isinstance(e, StreamStatus) and e.state == state)


async def test_book_snapshot_and_deltas_track_the_venue(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 1)
    subs = [
        MarketSubscription(ch, btc) for ch in (MarketChannel.BOOK, MarketChannel.TICKER, MarketChannel.TRADES)
    ]
    book = LocalOrderBook(btc)
    async with kalshi_adapter.market_stream(subs) as stream:
        events = await collect(
            stream,
            lambda seen: (
                sum(isinstance(e, BookUpdate) and not e.is_snapshot for e in seen) >= 30
                and any(isinstance(e, Ticker) for e in seen)
                and any(isinstance(e, Trade) for e in seen)
            ),
        )
        assert statuses(events, "connected") == 1  # once every subscription is acknowledged
        updates = [e for e in events if isinstance(e, BookUpdate)]
        assert updates[0].is_snapshot
        sequences = [u.sequence or 0 for u in updates]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        for update in updates:
            book.apply(update)
        kalshi_sim.configure(market_auto=False)  # freeze the market, then compare with REST
        await asyncio.sleep(0.15)
        async for event in stream:  # drain what was published before the freeze
            if isinstance(event, BookUpdate):
                book.apply(event)
            if stream._queue.empty():
                break
    rest = await kalshi_adapter.get_order_book(btc, depth=100)
    local = book.snapshot(100, rest.time)
    assert [(lv.price, lv.quantity) for lv in local.bids] == [(lv.price, lv.quantity) for lv in rest.bids]
    assert [(lv.price, lv.quantity) for lv in local.asks] == [(lv.price, lv.quantity) for lv in rest.asks]
    ticker = next(e for e in events if isinstance(e, Ticker))
    assert ticker.instrument == btc
    assert ticker.bid is not None
    assert ticker.ask is not None


async def test_sequence_gap_fetches_a_fresh_snapshot(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 0)
    async with kalshi_adapter.market_stream([MarketSubscription(MarketChannel.BOOK, btc)]) as stream:
        await collect(stream, lambda seen: sum(isinstance(e, BookUpdate) for e in seen) >= 3)
        kalshi_sim.fault("sequence_gap", method=f"orderbook_delta.{btc}")
        events = await collect(
            stream,
            lambda seen: (
                statuses(seen, "resync") == 1
                and any(isinstance(e, BookUpdate) and e.is_snapshot for e in seen[-5:])
            ),
        )
        resync_at = next(
            i for i, e in enumerate(events) if isinstance(e, StreamStatus) and e.state == "resync"
        )
        after = [e for e in events[resync_at:] if isinstance(e, BookUpdate)]
        assert after
        assert after[0].is_snapshot
        assert stream.stats.resyncs == 1


async def test_dropped_socket_reconnects_and_resubscribes(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 0)
    async with kalshi_adapter.market_stream([MarketSubscription(MarketChannel.BOOK, btc)]) as stream:
        await collect(stream, lambda seen: any(isinstance(e, BookUpdate) for e in seen))
        assert kalshi_sim.fault("drop_ws", method="ws")["dropped"] == 1
        events = await collect(
            stream,
            lambda seen: (
                statuses(seen, "connected") == 1
                and any(isinstance(e, BookUpdate) and e.is_snapshot for e in seen)
            ),
        )
        assert statuses(events, "disconnected") >= 1
        assert stream.stats.connects == 2


async def test_silent_server_is_detected(kalshi_adapter, kalshi_sim):
    """A server that stops answering pings: the keepalive drops it and the stream reconnects."""
    btc = kalshi_sim.ticker("KXBTC", 0)
    server = kalshi_sim.server
    async with kalshi_adapter.market_stream([MarketSubscription(MarketChannel.TICKER, btc)]) as stream:
        await collect(stream, lambda seen: statuses(seen, "connected") == 1)
        # Freeze the socket: stop reading it on the server side so our pings go unanswered.
        sock = next(iter(server.sockets))
        kalshi_sim.thread.call(lambda: sock.request.transport.pause_reading())
        events = await collect(stream, lambda seen: statuses(seen, "connected") >= 1, timeout=6)
        assert statuses(events, "disconnected") >= 1


async def test_user_stream_sees_orders_fills_and_positions(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 1)
    async with kalshi_adapter.event_user_stream() as stream:
        await collect(stream, lambda seen: statuses(seen, "connected") == 1)
        request = OrderRequest(
            btc, Side.BUY, OrderType.LIMIT, D(3), uuid.uuid4().hex, price=D("0.99"),
            outcome=Outcome.YES, time_in_force=TimeInForce.IOC,
        )  # fmt: skip
        await kalshi_adapter.place_order(request)
        events = await collect(
            stream,
            lambda seen: (
                sum(e.quantity for e in seen if isinstance(e, Fill)) >= 3
                and any(isinstance(e, Position) and e.quantity == 3 for e in seen)
                and any(isinstance(e, OrderState) and e.status.is_terminal for e in seen)
            ),
        )
    fills = [e for e in events if isinstance(e, Fill)]
    assert all(f.client_order_id == request.client_order_id and f.outcome is Outcome.YES for f in fills)
    position = next(e for e in events if isinstance(e, Position) and e.quantity == 3)
    assert position.outcome is Outcome.YES
    assert position.instrument == btc


async def test_lifecycle_stream_reports_settlement(kalshi_adapter, kalshi_sim):
    fed = kalshi_sim.ticker("FED", 0)
    stream = kalshi_adapter.event_market_stream([MarketSubscription(MarketChannel.TICKER, fed)])
    async with stream:
        await collect(stream, lambda seen: statuses(seen, "connected") == 1)
        kalshi_sim.settle(fed, "no")
        events = await collect(
            stream,
            lambda seen: any(isinstance(e, MarketLifecycle) and e.event_type == "settled" for e in seen),
        )
    kinds = [e.event_type for e in events if isinstance(e, MarketLifecycle)]
    assert kinds == ["close_date_updated", "determined", "settled"]
    settled = next(e for e in events if isinstance(e, MarketLifecycle) and e.event_type == "settled")
    assert settled.result is Outcome.NO
    assert settled.settlement_value == 0
    assert settled.instrument == fed


async def test_upgrade_with_wrong_key_is_refused(make_kalshi_adapter, kalshi_sim, kalshi_account):
    from apps.exchanges.adapters.kalshi.signing import generate_private_key_pem

    stranger = Credentials(api_key=kalshi_account["api_key_id"], api_secret=generate_private_key_pem()[0])
    adapter = make_kalshi_adapter(stranger)
    stream = adapter.market_stream([MarketSubscription(MarketChannel.TICKER, kalshi_sim.ticker("FED"))])
    async with stream:
        with pytest.raises(ex.AuthFailed):
            await collect(stream, lambda seen: False)


async def test_a_subscription_the_venue_refuses_ends_the_stream_with_its_error(kalshi_adapter, kalshi_sim):
    """The venue answers "Unknown channel name": reconnecting would not change that, so the
    consumer gets the error (before, it escaped the connection task and the consumer waited)."""
    stream: KalshiStream[Any] = KalshiStream(
        url=kalshi_adapter.ws_url,
        credentials=kalshi_adapter.credentials,
        channels={"no_such_channel": None},
        settings=kalshi_adapter.settings.stream,
    )
    async with stream:
        with pytest.raises(ex.BadRequest, match="no_such_channel"):
            await collect(stream, lambda seen: False)
