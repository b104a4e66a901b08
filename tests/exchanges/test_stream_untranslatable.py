"""A data message a venue stream cannot translate is skipped with a warning, on the same
connection: no reconnect (the venue would send it again, or keep sending its kind, and every
reconnect lost the good messages around it). A book message is resynced instead (a fresh
snapshot), since skipping it would leave the book wrong. The simulators' `malformed_ws` fault
sends the next matching data message with unreadable rows; the channel's later messages are good.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import serve

from apps.exchanges.adapters.base import (
    BalanceUpdate,
    BookUpdate,
    Fill,
    MarketChannel,
    MarketSubscription,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Outcome,
    Side,
    StreamStatus,
)
from tests.exchanges.test_stream_resilience import KalshiUserSocket, fill_text, kalshi_user_stream

D = Decimal
DEADLINE = 5.0


async def until(events: AsyncIterator[Any], predicate: Callable[[Any], bool]) -> list[Any]:
    """Every event up to and including the first that matches."""
    seen: list[Any] = []

    async def scan() -> list[Any]:
        async for event in events:
            seen.append(event)
            if predicate(event):
                return seen
        raise AssertionError(f"stream ended: {seen}")

    return await asyncio.wait_for(scan(), DEADLINE)


def states(events: list[Any]) -> list[str]:
    return [e.state for e in events if isinstance(e, StreamStatus)]


def skipped_warnings(caplog: pytest.LogCaptureFixture, venue: str) -> list[dict[str, Any]]:
    return [
        r.msg
        for r in caplog.records
        if r.levelno == logging.WARNING
        and isinstance(r.msg, dict)
        and r.msg.get("event") == "stream_message_skipped"
        and r.msg.get("venue") == venue
    ]


def faults_left(sim: Any) -> list[Any]:
    return sim.http.get("/_sim/faults").json()["faults"]


# ---- user streams ---------------------------------------------------------------------------


async def place_and_cancel(
    adapter: Any, sim: Any, request: OrderRequest, events: AsyncIterator[Any]
) -> list[Any]:
    """Place `request` (the armed `malformed_ws` fault spends itself on its first update), cancel
    it, and read the stream until the order's cancellation arrives."""
    placed = await adapter.place_order(request)
    assert faults_left(sim) == []
    await adapter.cancel_order(venue_order_id=placed.venue_order_id)
    return await until(
        events,
        lambda e: (
            isinstance(e, OrderState)
            and e.client_order_id == request.client_order_id
            and e.status is OrderStatus.CANCELLED
        ),
    )


async def test_cryptocom_untranslatable_order_update_is_skipped_and_the_next_arrives_on_the_same_connection(
    cryptocom_sim, cryptocom_adapter, caplog
):
    caplog.set_level(logging.WARNING)
    stream = cryptocom_adapter.user_stream(["BTC-USD"])
    async with stream:
        events = aiter(stream)
        seen = await until(events, lambda e: isinstance(e, BalanceUpdate))  # subscribed, snapshots sent
        cryptocom_sim.fault("malformed_ws", method="user.order*")
        price = (await cryptocom_adapter.get_ticker("BTC-USD")).bid * D("0.9")
        request = OrderRequest(
            "BTC-USD", Side.BUY, OrderType.LIMIT, D("0.001"), f"m-{uuid.uuid4().hex[:12]}",
            price=price.quantize(D("0.01")),
        )  # fmt: skip
        # its "active" update goes out malformed
        seen += await place_and_cancel(cryptocom_adapter, cryptocom_sim, request, events)
    # never "disconnected": the same connection throughout; "resync" tells the consumer that an
    # order's update was skipped (the user-stream follower reconciles the link's orders on it)
    assert states(seen) == ["connected", "resync"]
    assert not [e for e in seen if isinstance(e, OrderState) and e.status is OrderStatus.OPEN]
    assert (stream.stats.skipped, stream.stats.connects, stream.stats.reconnects) == (1, 1, 0)
    assert stream.auth_count == 1
    (warning,) = skipped_warnings(caplog, "cryptocom")
    assert warning["channel"] == "user.order.BTC_USD"
    assert "UnexpectedResponse" in warning["error"]
    assert "malformed" in warning["payload"]
    logged = str(warning)
    assert stream.credentials.api_key not in logged
    assert stream.credentials.api_secret not in logged


async def test_cryptocom_a_message_with_several_untranslatable_rows_makes_one_resync(
    cryptocom_sim, cryptocom_adapter, caplog
):
    """The subscription's snapshot of the open orders comes as one message of several rows: the
    consumer is told to resync once for it (the follower reconciles the link's orders once), not
    once per row."""
    caplog.set_level(logging.WARNING)
    price = ((await cryptocom_adapter.get_ticker("BTC-USD")).bid * D("0.9")).quantize(D("0.01"))
    for _ in range(3):
        await cryptocom_adapter.place_order(
            OrderRequest(
                "BTC-USD", Side.BUY, OrderType.LIMIT, D("0.001"), f"r-{uuid.uuid4().hex[:12]}", price=price
            )
        )
    cryptocom_sim.fault("malformed_ws", method="user.order*")  # the snapshot of the three goes out malformed
    stream = cryptocom_adapter.user_stream(["BTC-USD"])
    async with stream:
        events = aiter(stream)
        request = OrderRequest(
            "BTC-USD", Side.BUY, OrderType.LIMIT, D("0.001"), f"m-{uuid.uuid4().hex[:12]}", price=price
        )
        seen = await until(events, lambda e: isinstance(e, BalanceUpdate))  # subscribed, snapshots sent
        seen += await place_and_cancel(cryptocom_adapter, cryptocom_sim, request, events)
    assert sorted(states(seen)) == ["connected", "resync"]
    assert (stream.stats.skipped, stream.stats.connects, stream.stats.reconnects) == (3, 1, 0)
    assert len(skipped_warnings(caplog, "cryptocom")) == 3


async def test_kalshi_untranslatable_order_update_is_skipped_and_the_next_arrives_on_the_same_connection(
    kalshi_adapter, kalshi_sim, caplog
):
    caplog.set_level(logging.WARNING)
    ticker = kalshi_sim.ticker("KXBTC", 2)
    stream = kalshi_adapter.user_stream()
    async with stream:
        events = aiter(stream)
        seen = await until(events, lambda e: isinstance(e, StreamStatus))
        kalshi_sim.fault("malformed_ws", method="user_order.*")
        request = OrderRequest(
            ticker, Side.BUY, OrderType.LIMIT, D(2), f"m-{uuid.uuid4().hex[:12]}",
            price=D("0.01"), outcome=Outcome.YES,
        )  # fmt: skip
        # its "resting" update goes out malformed
        seen += await place_and_cancel(kalshi_adapter, kalshi_sim, request, events)
    assert states(seen) == ["connected", "resync"]
    assert not [e for e in seen if isinstance(e, OrderState) and e.status is OrderStatus.OPEN]
    assert (stream.stats.skipped, stream.stats.connects, stream.stats.reconnects) == (1, 1, 0)
    (warning,) = skipped_warnings(caplog, "kalshi")
    assert warning["channel"] == "user_order"
    assert "UnexpectedResponse" in warning["error"]
    assert ticker in warning["payload"]
    assert "BEGIN" not in str(warning)  # nothing of the private key


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(
            '{"type": "user_order", "sid": 2, "msg": {"order_id": "o1", "ticker": "KXTEST-1",'
            ' "status": "partially_filled", "outcome_side": "yes", "book_side": "bid"}}',
            id="unknown-order-status",
        ),
        pytest.param(
            fill_text("no-price", yes_price_dollars=None, no_price_dollars=None), id="fill-without-price"
        ),
        pytest.param('{"type": "fill", "sid": 1, "msg": ["not", "an", "object"]}', id="not-an-object"),
    ],
)
async def test_kalshi_untranslatable_shapes_are_skipped_on_the_same_connection(bad: str, caplog):
    """Shapes the simulator does not make, from a small local Kalshi socket."""
    caplog.set_level(logging.WARNING)
    venue = KalshiUserSocket([[bad, fill_text("after")]])
    async with serve(venue.handler, "127.0.0.1", 0) as server:
        stream = await kalshi_user_stream(server)
        async with stream:
            seen = await until(aiter(stream), lambda e: isinstance(e, Fill))
    assert states(seen) == ["connected", "resync"]
    assert seen[-1].venue_trade_id == "after"
    assert venue.connections == 1
    assert stream.stats.skipped == 1
    assert len(skipped_warnings(caplog, "kalshi")) == 1


# ---- books ----------------------------------------------------------------------------------


async def test_cryptocom_untranslatable_book_snapshot_resyncs_the_book_on_the_same_connection(
    cryptocom_sim, cryptocom_adapter, caplog
):
    caplog.set_level(logging.WARNING)
    cryptocom_sim.fault("malformed_ws", method="book.BTC_USD.10")  # the snapshot sent on subscribing
    stream = cryptocom_adapter.market_stream([MarketSubscription(MarketChannel.BOOK, "BTC-USD", depth=10)])
    async with stream:
        events = aiter(stream)
        seen = await until(events, lambda e: isinstance(e, BookUpdate) and e.is_snapshot)
        seen += await until(events, lambda e: isinstance(e, BookUpdate) and not e.is_snapshot)
    assert states(seen) == ["connected", "resync"]  # the consumer drops that book until...
    assert seen.index(next(e for e in seen if isinstance(e, BookUpdate))) > 1  # ...its fresh snapshot
    assert (stream.stats.skipped, stream.stats.resyncs, stream.stats.reconnects) == (1, 1, 0)
    (warning,) = skipped_warnings(caplog, "cryptocom")
    assert warning["channel"] == "book.BTC_USD.10"


async def test_kalshi_untranslatable_book_delta_resyncs_the_book_on_the_same_connection(
    kalshi_adapter, kalshi_sim, caplog
):
    """Before, a delta without a readable price or size was applied as a zero change at price 0
    (the book kept going, silently); now that book gets a fresh snapshot."""
    caplog.set_level(logging.WARNING)
    btc = kalshi_sim.ticker("KXBTC", 0)
    stream = kalshi_adapter.market_stream([MarketSubscription(MarketChannel.BOOK, btc)])
    async with stream:
        events = aiter(stream)
        seen = await until(events, lambda e: isinstance(e, BookUpdate) and not e.is_snapshot)
        kalshi_sim.fault("malformed_ws", method=f"orderbook_delta.{btc}")
        seen += await until(events, lambda e: isinstance(e, StreamStatus))
        seen += await until(events, lambda e: isinstance(e, BookUpdate))
    assert states(seen) == ["connected", "resync"]
    assert seen[-1].is_snapshot  # the first book update after the resync is a fresh snapshot
    assert (stream.stats.skipped, stream.stats.resyncs, stream.stats.reconnects) == (1, 1, 0)
    (warning,) = skipped_warnings(caplog, "kalshi")
    assert warning["channel"] == "orderbook_delta"
    assert "without a price" in warning["error"]
