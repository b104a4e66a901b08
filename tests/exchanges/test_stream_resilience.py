"""A stream never dies silently: a retryable venue error or an unreadable (not JSON) message
drops and reconnects (the consumer sees "disconnected" then "connected", and the follower
reconciles on "connected"), and a full queue does the same. Against the Crypto.com simulator, and small local
servers that speak just enough of a venue's protocol for faults the simulators cannot make.
(Any other error ends the consumer's `async for` with it; nothing here can raise one without
patching K2's own code, so that branch has no test.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from apps.exchanges.adapters.base import (
    Credentials,
    Fill,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
    StreamStatus,
)
from apps.exchanges.adapters.cryptocom.websocket import CryptocomUserStream
from apps.exchanges.adapters.cryptocom.websocket import StreamSettings as CryptocomStreamSettings
from apps.exchanges.adapters.kalshi.signing import generate_private_key_pem
from apps.exchanges.adapters.kalshi.websocket import KalshiUserStream
from apps.exchanges.adapters.kalshi.websocket import StreamSettings as KalshiStreamSettings

DEADLINE = 5.0


async def next_matching(events: AsyncIterator[Any], predicate: Callable[[Any], bool]) -> Any:
    async def scan() -> Any:
        async for event in events:
            if predicate(event):
                return event
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), DEADLINE)


def status(state: str) -> Callable[[Any], bool]:
    return lambda e: isinstance(e, StreamStatus) and e.state == state


# ---- a local Kalshi user socket -------------------------------------------------------------


def kalshi_fill(trade_id: str, **overrides: Any) -> dict[str, Any]:
    """A `fill` message body in the simulator's (current, fixed-point) shape."""
    body = {
        "trade_id": trade_id,
        "order_id": "o-1",
        "market_ticker": "KXTEST-1",
        "outcome_side": "yes",
        "purchased_side": "yes",
        "book_side": "bid",
        "action": "buy",
        "count_fp": "1.00",
        "yes_price_dollars": "0.4200",
        "no_price_dollars": "0.5800",
        "is_taker": True,
        "fee_cost": "0.0100",
        "ts_ms": 1_700_000_000_000,
    }
    return {**body, **overrides}


class KalshiUserSocket:
    """Acks each `subscribe`; once all are acked, sends `script[n]` (raw texts) on connection n
    (0-based; later connections send nothing more)."""

    def __init__(self, script: list[list[str]], channels: int = 2) -> None:
        self.script = script
        self.channels = channels
        self.connections = 0
        self.sent = asyncio.Event()

    async def handler(self, ws: ServerConnection) -> None:
        n, self.connections = self.connections, self.connections + 1
        acked = 0
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("cmd") != "subscribe":
                continue
            acked += 1
            channel = msg["params"]["channels"][0]
            await ws.send(
                json.dumps({"id": msg["id"], "type": "subscribed", "msg": {"channel": channel, "sid": acked}})
            )
            if acked == self.channels:
                for text in self.script[n] if n < len(self.script) else []:
                    await ws.send(text)
                if n == 0:
                    self.sent.set()


def fill_text(trade_id: str, **overrides: Any) -> str:
    return json.dumps({"type": "fill", "sid": 1, "msg": kalshi_fill(trade_id, **overrides)})


async def kalshi_user_stream(server: Any, **settings: Any) -> KalshiUserStream:
    pem, _ = generate_private_key_pem()
    port = next(iter(server.sockets)).getsockname()[1]
    return KalshiUserStream(
        url=f"ws://127.0.0.1:{port}/trade-api/ws/v2",
        credentials=Credentials("key-id-123", pem),
        instruments=None,
        settings=KalshiStreamSettings(open_timeout=2, reconnect_base=0.01, reconnect_cap=0.02, **settings),
        positions=False,
    )


# ---- retryable errors while authenticating --------------------------------------------------


async def test_auth_answered_with_a_retryable_error_reconnects_then_delivers(
    cryptocom_sim, cryptocom_adapter
):
    cryptocom_sim.configure(auth_window_s=-1)  # every nonce is stale: auth answers INVALID_NONCE
    stream = cryptocom_adapter.user_stream(["BTC-USD"])
    async with stream:
        events = aiter(stream)
        dropped = await next_matching(events, lambda e: isinstance(e, StreamStatus))
        assert dropped.state == "disconnected"
        assert "InvalidNonce" in dropped.detail
        assert stream.auth_count == 0
        cryptocom_sim.configure(auth_window_s=60)
        connected = await next_matching(
            events, lambda e: isinstance(e, StreamStatus) and e.state != "disconnected"
        )
        assert connected.state == "connected"
        assert connected.attempt >= 1
        assert stream.auth_count == 1
        ticker = await cryptocom_adapter.get_ticker("BTC-USD")
        price = (ticker.bid * Decimal("0.9")).quantize(Decimal("0.01"))
        client_id = f"r-{uuid.uuid4().hex[:12]}"
        request = OrderRequest("BTC-USD", Side.BUY, OrderType.LIMIT, Decimal("0.001"), client_id, price=price)
        await cryptocom_adapter.place_order(request)
        update = await next_matching(
            events, lambda e: isinstance(e, OrderState) and e.client_order_id == client_id
        )
    assert update.venue_order_id


async def test_auth_answered_rate_limited_reconnects():
    """Crypto.com answers an early auth burst with TOO_MANY_REQUESTS (42901, `RateLimited`)."""
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        async for raw in ws:
            msg = json.loads(raw)
            if msg.get("method") == "public/auth":
                reply = {"id": msg["id"], "method": "public/auth", "code": 42901 if first else 0}
                await ws.send(json.dumps(reply | ({"message": "TOO_MANY_REQUESTS"} if first else {})))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        settings = CryptocomStreamSettings(
            connect_delay=0, reconnect_base=0.01, reconnect_cap=0.02, open_timeout=2, silence_timeout=5
        )
        stream = CryptocomUserStream(
            url=f"ws://127.0.0.1:{port}",
            credentials=Credentials("k" * 10, "s"),
            instruments=None,
            settings=settings,
        )
        async with stream:
            events = aiter(stream)
            dropped = await next_matching(events, lambda e: isinstance(e, StreamStatus))
            assert dropped.state == "disconnected"
            assert "42901" in dropped.detail
            connected = await next_matching(events, lambda e: isinstance(e, StreamStatus))
            assert (connected.state, connected.attempt) == ("connected", 1)
    assert connections == 2


# ---- a message that cannot be read ----------------------------------------------------------
# (A readable data message that cannot be translated is skipped on the same connection instead:
# tests/exchanges/test_stream_untranslatable.py.)


@pytest.mark.parametrize(
    "bad",
    [pytest.param('{"type": "fill", "sid": 1, "msg": {', id="invalid-json")],
)
async def test_unreadable_message_makes_the_consumer_resync_and_later_messages_arrive(bad: str):
    venue = KalshiUserSocket([[bad, fill_text("lost-with-the-connection")], [fill_text("after")]])
    async with serve(venue.handler, "127.0.0.1", 0) as server:
        stream = await kalshi_user_stream(server)
        async with stream:
            events = aiter(stream)
            assert (await next_matching(events, lambda e: isinstance(e, StreamStatus))).state == "connected"
            dropped = await next_matching(events, lambda e: isinstance(e, StreamStatus))
            assert dropped.state == "disconnected"
            assert "partially_filled" not in dropped.detail  # no message content in the status
            resync = await next_matching(events, lambda e: isinstance(e, StreamStatus))
            assert (resync.state, resync.attempt) == ("connected", 1)  # the follower reconciles here
            fill = await next_matching(events, lambda e: isinstance(e, Fill))
    assert fill.venue_trade_id == "after"
    assert venue.connections == 2


# ---- a consumer too slow for the queue ------------------------------------------------------


async def test_queue_overflow_makes_the_consumer_resync_after_the_lost_events():
    venue = KalshiUserSocket([[fill_text(f"f{i}") for i in range(12)]])
    async with serve(venue.handler, "127.0.0.1", 0) as server:
        stream = await kalshi_user_stream(server, queue_size=4)
        async with stream:
            await asyncio.wait_for(venue.sent.wait(), DEADLINE)
            await asyncio.sleep(0.3)  # the stream reads them all while nobody consumes
            events = aiter(stream)
            seen: list[Any] = []

            async def until_resync_after_fills() -> None:
                async for event in events:
                    seen.append(event)
                    if status("connected")(event) and any(isinstance(e, Fill) for e in seen):
                        return
                raise AssertionError("stream ended")

            await asyncio.wait_for(until_resync_after_fills(), DEADLINE)
    fills = [e.venue_trade_id for e in seen if isinstance(e, Fill)]
    assert fills == ["f0", "f1", "f2"]  # "connected" and three fills filled the queue; f3.. were lost
    assert seen[-1].attempt >= 1  # a reconnect's "connected", after every lost fill: resync
    assert venue.connections >= 2


# ---- the back-off after a connection that held ------------------------------------------------


async def test_the_backoff_starts_afresh_after_a_connection_that_held():
    """Four connections dropped at once push the back-off toward its cap; the fifth holds past
    `stable_seconds`, so the reconnect after its drop waits the first step, not the cap (a stream
    running for days waited 15-30 s after every blip)."""
    held = 0.4

    class Venue(KalshiUserSocket):
        async def handler(self, ws: ServerConnection) -> None:
            n = self.connections
            task = asyncio.create_task(super().handler(ws))
            await asyncio.sleep(held if n == 4 else 0.05)  # acked by then; the fifth is held
            task.cancel()
            await ws.close()

    venue = Venue([])
    async with serve(venue.handler, "127.0.0.1", 0) as server:
        stream = await kalshi_user_stream(server)
        stream.settings = KalshiStreamSettings(
            open_timeout=2, reconnect_base=0.05, reconnect_cap=1.6, stable_seconds=held - 0.1
        )
        async with stream:
            events = aiter(stream)
            for _ in range(5):  # connections 0-4 come and go
                assert (await next_matching(events, status("connected"))).state == "connected"
                await next_matching(events, status("disconnected"))
            dropped_at = asyncio.get_running_loop().time()
            again = await next_matching(events, status("connected"))
            waited = asyncio.get_running_loop().time() - dropped_at
    assert again.attempt >= 1  # still a reconnect: the follower reconciles
    assert waited < 0.5, waited  # the first step (at most 0.1 s), not the cap's 0.8-1.6 s
