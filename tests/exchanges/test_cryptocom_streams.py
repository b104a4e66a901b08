"""Market and user streams over real WebSockets: data, book sequencing, reconnects, heartbeats."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    BalanceUpdate,
    BookUpdate,
    Candle,
    Credentials,
    Fill,
    LocalOrderBook,
    MarketChannel,
    MarketSubscription,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Side,
    StreamStatus,
    Ticker,
    Trade,
)

DEADLINE = 5.0


async def next_matching(stream_iter, predicate: Callable[[Any], bool], timeout: float = DEADLINE) -> Any:
    async def scan() -> Any:
        async for event in stream_iter:
            if predicate(event):
                return event
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), timeout)


async def drain_into(local: LocalOrderBook, events) -> None:
    """Apply book updates until none arrives for 0.5 s (raises TimeoutError then)."""
    while True:
        local.apply(await next_matching(events, lambda e: isinstance(e, BookUpdate), timeout=0.5))


def book_sub(depth: int = 10) -> MarketSubscription:
    return MarketSubscription(MarketChannel.BOOK, "BTC-USD", depth=depth)


async def test_market_stream_ticker_trades_candles(cryptocom_adapter):
    subs = [
        MarketSubscription(MarketChannel.TICKER, "ETH-USD"),
        MarketSubscription(MarketChannel.TRADES, "ETH-USD"),
        MarketSubscription(MarketChannel.CANDLES, "ETH-USD", timeframe="1m"),
    ]
    seen: dict[type, list[Any]] = {Ticker: [], Trade: [], Candle: []}
    async with cryptocom_adapter.market_stream(subs) as stream:
        events = aiter(stream)
        status = await next_matching(events, lambda e: isinstance(e, StreamStatus))
        assert status.state == "connected"
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and (
            len(seen[Trade]) < 55 or not seen[Ticker] or len(seen[Candle]) < 2
        ):
            event = await asyncio.wait_for(anext(events), DEADLINE)
            if type(event) in seen:
                seen[type(event)].append(event)
    assert seen[Ticker][0].instrument == "ETH-USD"
    assert seen[Ticker][-1].bid < seen[Ticker][-1].ask
    assert len(seen[Trade]) >= 55  # 50 on subscribe, then live prints
    assert all(isinstance(t.price, Decimal) and t.time.tzinfo is UTC for t in seen[Trade])
    assert seen[Candle][-1].timeframe == "1m"


async def test_book_snapshot_then_deltas_rebuild_the_venue_book(cryptocom_sim, cryptocom_adapter):
    local = LocalOrderBook("BTC-USD")
    updates: list[BookUpdate] = []
    async with cryptocom_adapter.market_stream([book_sub()]) as stream:
        events = aiter(stream)
        first = await next_matching(events, lambda e: isinstance(e, BookUpdate))
        assert first.is_snapshot
        assert len(first.bids) == 10
        local.apply(first)
        while len(updates) < 5:
            event = await next_matching(events, lambda e: isinstance(e, BookUpdate))
            assert not event.is_snapshot
            local.apply(event)
            updates.append(event)
        cryptocom_sim.configure(market_auto=False)  # freeze the market, then drain
        with pytest.raises(TimeoutError):
            await drain_into(local, events)
    venue = await cryptocom_adapter.get_order_book("BTC-USD", depth=10)
    mine = local.snapshot(10, venue.time)
    assert [(lv.price, lv.quantity) for lv in mine.bids] == [(lv.price, lv.quantity) for lv in venue.bids]
    assert [(lv.price, lv.quantity) for lv in mine.asks] == [(lv.price, lv.quantity) for lv in venue.asks]


async def test_sequence_gap_triggers_a_fresh_snapshot(cryptocom_sim, cryptocom_adapter):
    stream = cryptocom_adapter.market_stream([book_sub()])
    async with stream:
        events = aiter(stream)
        await next_matching(events, lambda e: isinstance(e, BookUpdate) and e.is_snapshot)
        await next_matching(events, lambda e: isinstance(e, BookUpdate) and not e.is_snapshot)
        cryptocom_sim.fault("sequence_gap", count=1, method="book.BTC_USD")
        resync = await next_matching(events, lambda e: isinstance(e, StreamStatus))
        assert resync.state == "resync"
        snapshot = await next_matching(events, lambda e: isinstance(e, BookUpdate))
        assert snapshot.is_snapshot
        assert stream.stats.resyncs == 1
        assert stream.stats.reconnects == 0


async def test_user_stream_orders_fills_balances(cryptocom_adapter):
    async with cryptocom_adapter.user_stream() as stream:
        events = aiter(stream)
        assert (await next_matching(events, lambda e: isinstance(e, StreamStatus))).state == "connected"
        request = OrderRequest(
            "SOL-USD", Side.BUY, OrderType.MARKET, Decimal("2"), f"u-{uuid.uuid4().hex[:12]}"
        )
        ack = await cryptocom_adapter.place_order(request)
        got: dict[str, Any] = {}
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline and len(got) < 3:
            event = await asyncio.wait_for(anext(events), DEADLINE)
            if isinstance(event, OrderState) and event.status is OrderStatus.FILLED:
                got["order"] = event
            elif isinstance(event, Fill):
                got.setdefault("fill", event)
            elif isinstance(event, BalanceUpdate) and "order" in got:
                got["balance"] = event
    assert got["order"].venue_order_id == ack.venue_order_id
    assert got["order"].client_order_id == request.client_order_id
    assert got["fill"].venue_order_id == ack.venue_order_id
    assert got["fill"].fee > 0
    sol = {b.currency: b for b in got["balance"].balances}["SOL"]
    assert sol.total == Decimal("1002")


def usd_of(event: Any) -> Any:
    """The USD balance a `BalanceUpdate` carries; None for any other event."""
    return {b.currency: b for b in event.balances}["USD"] if isinstance(event, BalanceUpdate) else None


async def test_user_stream_pushes_the_balance_a_resting_order_holds(cryptocom_adapter):
    """A limit order that rests changes no total but makes less available (the venue's
    `reserved_qty`): the venue pushes that balance too, not only those a fill changes."""
    async with cryptocom_adapter.user_stream() as stream:
        events = aiter(stream)
        assert (await next_matching(events, lambda e: isinstance(e, StreamStatus))).state == "connected"
        before = {b.currency: b for b in await cryptocom_adapter.get_balances()}["USD"]
        assert before.available == before.total
        bid = (await cryptocom_adapter.get_ticker("SOL-USD")).bid
        assert bid is not None
        price = (bid * Decimal("0.8")).quantize(Decimal("0.01"))
        request = OrderRequest(
            "SOL-USD", Side.BUY, OrderType.LIMIT, Decimal("1"), f"u-{uuid.uuid4().hex[:12]}", price=price
        )
        await cryptocom_adapter.place_order(request)
        # the subscription's first push is the balance as it was; the hold's comes after
        usd = usd_of(await next_matching(events, lambda e: (u := usd_of(e)) and u.available < before.total))
    assert usd.total == before.total
    assert before.total - usd.available >= price  # held: price x quantity, and the fee


async def test_user_stream_reconnects_reauths_and_resubscribes_after_drop(cryptocom_sim, cryptocom_adapter):
    stream = cryptocom_adapter.user_stream(["BTC-USD"])
    async with stream:
        events = aiter(stream)
        assert (await next_matching(events, lambda e: isinstance(e, StreamStatus))).state == "connected"
        assert cryptocom_sim.fault("drop_ws", count=1, method="user")["dropped"] == 1
        assert (await next_matching(events, lambda e: isinstance(e, StreamStatus))).state == "disconnected"
        again = await next_matching(events, lambda e: isinstance(e, StreamStatus))
        assert (again.state, again.attempt) == ("connected", 1)
        assert stream.auth_count == 2
        ticker = await cryptocom_adapter.get_ticker("BTC-USD")
        price = (ticker.bid * Decimal("0.9")).quantize(Decimal("0.01"))
        request = OrderRequest(
            "BTC-USD", Side.BUY, OrderType.LIMIT, Decimal("0.001"), "after-drop", price=price
        )
        await cryptocom_adapter.place_order(request)
        update = await next_matching(
            events, lambda e: isinstance(e, OrderState) and e.client_order_id == "after-drop"
        )
        assert update.status is OrderStatus.OPEN


async def test_market_stream_answers_heartbeats_and_detects_silence(cryptocom_sim, cryptocom_adapter):
    stream = cryptocom_adapter.market_stream([MarketSubscription(MarketChannel.TICKER, "SOL-USD")])
    async with stream:
        events = aiter(stream)
        await next_matching(events, lambda e: isinstance(e, StreamStatus))
        await asyncio.sleep(1.5)  # 5 server heartbeats at 0.3 s; 3 missed would close the socket
        assert stream.stats.heartbeats >= 3
        assert stream.stats.reconnects == 0
        cryptocom_sim.configure(market_auto=False, heartbeat_interval=30)  # the server goes quiet
        gone = await next_matching(events, lambda e: isinstance(e, StreamStatus), timeout=6)
        assert (gone.state, gone.detail) == ("disconnected", "Reconnect: silent stream")


async def test_user_stream_with_wrong_secret_fails_fatally(cryptocom_account, make_cryptocom_adapter):
    adapter = make_cryptocom_adapter(Credentials(cryptocom_account["api_key"], "wrong"))
    async with adapter.user_stream() as stream:
        with pytest.raises(ex.AuthFailed):
            await next_matching(aiter(stream), lambda e: False)


async def test_server_closes_a_socket_that_ignores_heartbeats(cryptocom_sim):
    url = cryptocom_sim.base_url.replace("http", "ws") + "/exchange/v1/market"
    beats: list[dict] = []

    async def listen(ws) -> None:
        started = time.monotonic()
        while time.monotonic() - started < 5:
            beats.append(json.loads(await asyncio.wait_for(ws.recv(), 3)))

    async with connect(url) as ws:
        with pytest.raises(ConnectionClosedOK, match="1000"):
            await listen(ws)
    assert [b["method"] for b in beats] == ["public/heartbeat"] * 3


async def test_raw_subscribe_errors_and_acks(cryptocom_sim):
    url = cryptocom_sim.base_url.replace("http", "ws") + "/exchange/v1/market"
    async with connect(url) as ws:
        await ws.send(json.dumps({"id": 5, "method": "subscribe", "params": {"channels": ["book.BTC_USD"]}}))
        error = json.loads(await ws.recv())
        assert (error["id"], error["code"]) == (5, 10004)
        await ws.send(json.dumps({"method": "subscribe", "params": {"channels": ["ticker.BTC_USD"]}}))
        ack = json.loads(await ws.recv())
        assert (ack["id"], ack["code"]) == (-1, 0)  # ccxt sends no id
        push = json.loads(await ws.recv())
        assert push["result"]["subscription"] == "ticker.BTC_USD"
        assert list(push)[:3] == ["id", "method", "code"]
        await ws.send(json.dumps({"id": 6, "method": "subscribe", "params": {"channels": ["user.order"]}}))
        # the ticker's next pushes (or a heartbeat) may come first: the answer is the one with id 6
        answers = []
        for _ in range(20):
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message.get("id") == 6:
                answers.append(message)
                break
        assert [a["code"] for a in answers] == [10004]  # user channels need the user socket and auth
    _ = datetime.now(UTC)
