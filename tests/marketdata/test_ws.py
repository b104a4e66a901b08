"""`/ws/prices` end to end: uvicorn serving k2.asgi on a real port, real clients, real tokens,
the feed against the real simulator (or prices published straight into Redis where the test is
about the socket, not the venue)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from apps.marketdata import cache
from apps.marketdata.cache import PriceSnapshot
from apps.marketdata.models import Instrument
from apps.marketdata.push import push_to_user
from tests.marketdata.conftest import (
    ORIGIN,
    eventually,
    in_thread,
    make_user_token,
    recv_json,
    recv_until,
    ws_connect,
)
from tests.marketdata.test_feed import tick

pytestmark = pytest.mark.django_db(transaction=True)


def subscribe(*instruments: str, **extra: Any) -> str:
    return json.dumps({"type": "subscribe", "channel": "prices", "instruments": list(instruments), **extra})


def is_price(symbol: str, *, snapshot: bool | None = None):
    def check(m: dict[str, Any]) -> bool:
        return (
            m.get("type") == "price"
            and m.get("instrument") == symbol
            and (snapshot is None or m.get("snapshot") is snapshot)
        )

    return check


async def authed(asgi_server, token: str) -> Any:
    ws = await ws_connect(asgi_server.ws_url, token)
    hello = await recv_json(ws)
    assert hello["type"] == "authenticated"
    assert hello["channel"] == "system"
    return ws


def make_instruments(*symbols: str, venue: str = "cryptocom") -> None:
    for symbol in symbols:
        Instrument.objects.create(
            symbol=symbol,
            venue=venue,
            venue_symbol=symbol.replace("-", "_"),
            instrument_type="crypto",
            tick_size=Decimal("0.01"),
            quantity_step=Decimal("0.0001"),
            min_quantity=Decimal("0.0001"),
        )


class FakeFeed:
    """Publishes prices through the same fenced script the feed uses (for socket-only tests)."""

    def __init__(self, venue: str = "cryptocom") -> None:
        self.venue = venue
        self.client = cache.sync_client()
        self.client.set(cache.lease_key(venue), "fake-feed", px=600_000)
        self.publish_script = self.client.register_script(cache.PUBLISH_PRICE)
        self.client.set(cache.venue_key(venue), json.dumps({"venue": venue, "state": "live", "since": ""}))

    def publish(self, symbol: str, price: str) -> int:
        snap = PriceSnapshot(
            instrument=symbol,
            venue=self.venue,
            price=price,
            bid=price,
            ask=str(Decimal(price) + 1),
            bid_size="1",
            ask_size="1",
            change_24h="0.10",
            volume_24h="10",
            high_24h=None,
            low_24h=None,
            timestamp=f"{time.time():.6f}",
        )
        return int(
            self.publish_script(
                keys=[cache.lease_key(self.venue), cache.seq_key(symbol), cache.price_key(symbol)],
                args=["fake-feed", snap.body_json(), cache.EVENTS_CHANNEL],
            )
        )


def assert_gapless(messages: list[dict[str, Any]]) -> None:
    by_channel: dict[str, list[int]] = {}
    for m in messages:
        by_channel.setdefault(m["channel"], []).append(m["seq"])
    for channel, seqs in by_channel.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), channel


# ---- the happy path, against the simulator ---------------------------------------------------


async def test_subscribe_gets_a_snapshot_then_live_prices_as_the_simulator_moves(sim, feeds, asgi_server):
    sim.configure(market_auto=False)
    _user, token = await in_thread(make_user_token, "alice@example.com")
    feed = feeds()
    await eventually(lambda: cache.sync_client().get(cache.price_key("BTC-USD")), what="feed price")
    ws = await authed(asgi_server, token)
    seen: list[dict[str, Any]] = []
    await ws.send(subscribe("BTC-USD", id="req-1"))
    ack = await recv_until(ws, lambda m: m["type"] == "subscribed", seen=seen)
    assert ack == {
        "channel": "prices",
        "seq": 1,
        "type": "subscribed",
        "instruments": ["BTC-USD"],
        "id": "req-1",
    }
    snap = await recv_until(ws, is_price("BTC-USD"), seen=seen)
    assert snap["snapshot"] is True
    assert snap["stale"] is False
    assert Decimal(snap["bid"]) < Decimal(snap["ask"])
    first_feed_seq = snap["feed_seq"]
    await tick(sim, 10)
    live = await recv_until(ws, is_price("BTC-USD", snapshot=False), seen=seen)
    assert live["feed_seq"] > first_feed_seq
    state = sim.http.get("/_sim/state").json()["instruments"]["BTC_USD"]

    async def converged() -> bool:
        m = await recv_until(ws, is_price("BTC-USD"), seen=seen)
        return m["bid"] == state["best_bid"] and m["ask"] == state["best_ask"]

    await eventually(converged, timeout=10, what="socket shows the simulator's book")
    assert_gapless(seen)
    assert feed.feed.stats.published > 0
    await ws.close()


# ---- authentication and origin ---------------------------------------------------------------


async def test_header_token_refused_and_origin_allowlist(asgi_server, user_token):
    _, token = user_token
    with pytest.raises(InvalidStatus) as bad_token:
        await ws_connect(asgi_server.ws_url, "not-a-jwt")
    assert bad_token.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as bad_origin:
        await ws_connect(asgi_server.ws_url, token, origin="http://evil.example")
    assert bad_origin.value.response.status_code == 403
    for origin in (ORIGIN, None):  # the allowlisted origin, and a non-browser client
        ws = await ws_connect(asgi_server.ws_url, token, origin=origin)
        assert (await recv_json(ws))["type"] == "authenticated"
        await ws.close()


async def test_first_message_auth_and_refusals(asgi_server, user_token):
    _, token = user_token
    ws = await ws_connect(asgi_server.ws_url)
    await ws.send(subscribe("BTC-USD"))
    error = await recv_json(ws)
    assert (error["type"], error["code"]) == ("error", "UNAUTHENTICATED")  # and still open
    await ws.send(json.dumps({"type": "auth", "token": token, "id": 7}))
    ok = await recv_json(ws)
    assert ok["type"] == "authenticated"
    assert ok["id"] == 7
    assert ok["expires_at"]
    await ws.close()

    ws = await ws_connect(asgi_server.ws_url)
    await ws.send(json.dumps({"type": "auth", "token": token + "x"}))
    error = await recv_json(ws)
    assert error["type"] == "error"
    assert error["code"] in {"TOKEN_INVALID", "UNAUTHENTICATED"}
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_unauthenticated_socket_is_closed_after_the_auth_timeout(asgi_server):
    ws = await ws_connect(asgi_server.ws_url)
    error = await recv_until(ws, lambda m: m["type"] == "error", timeout=5)
    assert error["code"] == "AUTH_TIMEOUT"
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(ws, timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


# ---- errors without disconnect ---------------------------------------------------------------


async def test_bad_messages_get_errors_and_the_socket_stays_open(asgi_server, user_token):
    _, token = user_token
    await in_thread(make_instruments, *[f"C{i}-USD" for i in range(12)])
    FakeFeed()
    ws = await authed(asgi_server, token)
    cases = [
        ("{not json", "MALFORMED_MESSAGE"),
        ("[1, 2]", "MALFORMED_MESSAGE"),
        (json.dumps({"type": "dance"}), "UNKNOWN_MESSAGE_TYPE"),
        (
            json.dumps({"type": "subscribe", "channel": "prices", "instruments": "BTC-USD"}),
            "VALIDATION_ERROR",
        ),
        (json.dumps({"type": "subscribe", "channel": "prices", "instruments": []}), "VALIDATION_ERROR"),
        (json.dumps({"type": "subscribe", "channel": "system"}), "UNKNOWN_CHANNEL"),
        (subscribe("NOPE-USD"), "UNKNOWN_INSTRUMENT"),
        (subscribe(*[f"C{i}-USD" for i in range(11)]), "TOO_MANY_SUBSCRIPTIONS"),
    ]
    for raw, code in cases:
        await ws.send(raw)
        message = await recv_until(ws, lambda m: m["type"] == "error")
        assert message["code"] == code, (raw, message)
    # a partly unknown request subscribes the known ones and names the unknown ones
    await ws.send(subscribe("C1-USD", "NOPE-USD"))
    error = await recv_until(ws, lambda m: m["type"] == "error")
    assert error["details"] == {"instruments": ["NOPE-USD"]}
    ack = await recv_until(ws, lambda m: m["type"] == "subscribed")
    assert ack["instruments"] == ["C1-USD"]
    # the limit counts existing subscriptions
    await ws.send(subscribe(*[f"C{i}-USD" for i in range(2, 12)]))
    error = await recv_until(ws, lambda m: m["type"] == "error")
    assert error["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert error["details"]["current"] == 1
    await ws.send(json.dumps({"type": "ping", "id": "p"}))
    pong = await recv_until(ws, lambda m: m["type"] == "pong")
    assert pong["id"] == "p"
    await ws.close()


# ---- fan-out behaviour -----------------------------------------------------------------------


async def test_conflation_caps_the_rate_and_always_ends_on_the_latest(asgi_server, user_token, settings):
    settings.K2_WS_MAX_UPDATES_PER_SECOND = 5.0
    _, token = user_token
    await in_thread(make_instruments, "BTC-USD")
    feed = FakeFeed()
    feed.publish("BTC-USD", "100.00")
    ws = await authed(asgi_server, token)
    await ws.send(subscribe("BTC-USD"))
    snap = await recv_until(ws, is_price("BTC-USD"))
    assert snap["price"] == "100.00"
    assert snap["snapshot"] is True
    started = time.monotonic()
    for i in range(200):  # 200 updates in ~1 s
        await asyncio.to_thread(feed.publish, "BTC-USD", f"{101 + i}.00")
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - started
    received: list[dict[str, Any]] = []
    while True:
        try:
            message = await recv_json(ws, timeout=0.6)
        except TimeoutError:
            break
        if is_price("BTC-USD")(message):
            received.append(message)
    assert received[-1]["price"] == "300.00"  # the newest always arrives
    assert len(received) <= 5 * (elapsed + 0.6) + 2, (len(received), elapsed)
    assert len(received) >= 3
    feed_seqs = [m["feed_seq"] for m in received]
    assert feed_seqs == sorted(feed_seqs)
    await ws.close()


def raw_ws_client(port: int, token: str) -> socket.socket:
    """A WebSocket client that never reads: tiny receive buffer, hand-made frames."""
    import base64
    import os
    import struct

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/prices HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head

    def frame(text: str) -> bytes:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if len(payload) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(payload))
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        return header + mask + masked

    sock.sendall(frame(subscribe(*[f"S{i}-USD" for i in range(10)])))
    return sock


async def test_a_slow_client_is_bounded_and_never_slows_the_others(asgi_server, user_token, settings):
    settings.K2_WS_MAX_UPDATES_PER_SECOND = 1000.0
    settings.K2_WS_SEND_TIMEOUT_SECONDS = 1.0
    settings.K2_WS_MAX_QUEUED_MESSAGES = 16
    _, token = user_token
    symbols = [f"S{i}-USD" for i in range(10)]
    await in_thread(make_instruments, *symbols)
    feed = FakeFeed()
    for symbol in symbols:
        feed.publish(symbol, "1.00")
    slow = await asyncio.to_thread(raw_ws_client, asgi_server.port, token)
    fast = await authed(asgi_server, token)
    await fast.send(subscribe(*symbols))
    await recv_until(fast, lambda m: m["type"] == "subscribed")
    fast_prices: list[float] = []

    async def read_fast() -> None:
        async for raw in fast:
            if '"type":"price"' in raw:
                fast_prices.append(time.monotonic())

    reader = asyncio.create_task(read_fast())
    padding = "9" * 4000  # big messages fill the slow socket's buffers quickly

    def publish_round(n: int) -> None:
        for symbol in symbols:
            feed.publish(symbol, f"{n}.{padding}")

    max_buffered = 0
    slow_closed_at = None
    started = time.monotonic()
    for round_ in range(600):
        await asyncio.to_thread(publish_round, round_)
        await asyncio.sleep(0.005)
        if round_ % 5:
            continue
        sessions = await asyncio.to_thread(asgi_server.hub_sessions)
        max_buffered = max([max_buffered, *(s.buffered() for s in sessions)])
        if len(sessions) == 1:
            slow_closed_at = time.monotonic() - started
            break
        assert time.monotonic() - started < 30
    assert slow_closed_at is not None, "the slow client was never cut off"
    assert max_buffered <= len(symbols) + 16  # one pending price per instrument + the bounded queue
    assert len(fast_prices) >= 100  # the fast client kept getting prices meanwhile
    # the fast client still receives promptly after the slow one was dropped
    before = len(fast_prices)
    feed.publish("S0-USD", "4242.00")
    await eventually(lambda: len(fast_prices) > before, timeout=3, what="fresh price after the cut")
    reader.cancel()
    slow.close()
    await fast.close()


async def test_unsubscribe_stops_prices(asgi_server, user_token):
    _, token = user_token
    await in_thread(make_instruments, "BTC-USD", "ETH-USD")
    feed = FakeFeed()
    ws = await authed(asgi_server, token)
    await ws.send(subscribe("BTC-USD", "ETH-USD"))
    await recv_until(ws, lambda m: m["type"] == "subscribed")
    await ws.send(json.dumps({"type": "unsubscribe", "channel": "prices", "instruments": ["btc-usd"]}))
    ack = await recv_until(ws, lambda m: m["type"] == "unsubscribed")
    assert ack["instruments"] == ["ETH-USD"]
    feed.publish("BTC-USD", "1.00")
    feed.publish("ETH-USD", "2.00")
    message = await recv_until(ws, lambda m: m["type"] == "price" and m["price"] == "2.00")
    assert message["instrument"] == "ETH-USD"
    with pytest.raises(TimeoutError):
        await recv_until(ws, is_price("BTC-USD"), timeout=0.5)
    await ws.close()


# ---- other apps push to a user's sockets -----------------------------------------------------


async def test_push_to_user_reaches_only_that_users_sockets(asgi_server):
    alice, alice_token = await in_thread(make_user_token, "alice@example.com")
    _, bob_token = await in_thread(make_user_token, "bob@example.com")
    alice_ws = await authed(asgi_server, alice_token)
    alice_ws2 = await authed(asgi_server, alice_token)
    bob_ws = await authed(asgi_server, bob_token)
    message = {"type": "order_update", "order_id": "o-1", "status": "filled", "filled_quantity": "0.1"}
    await asyncio.to_thread(push_to_user, alice.id, message, channel="orders")
    for ws in (alice_ws, alice_ws2):
        got = await recv_until(ws, lambda m: m["type"] == "order_update")
        assert got == {"channel": "orders", "seq": 1, **message}
    with pytest.raises(TimeoutError):
        await recv_until(bob_ws, lambda m: m["type"] == "order_update", timeout=0.5)
    # a client can mute a user channel
    await alice_ws.send(json.dumps({"type": "unsubscribe", "channel": "orders"}))
    await recv_until(alice_ws, lambda m: m["type"] == "unsubscribed")
    await asyncio.to_thread(push_to_user, alice.id, {**message, "status": "cancelled"}, channel="orders")
    assert (await recv_until(alice_ws2, lambda m: m["type"] == "order_update"))["status"] == "cancelled"
    with pytest.raises(TimeoutError):
        await recv_until(alice_ws, lambda m: m["type"] == "order_update", timeout=0.5)
    with pytest.raises(ValueError):
        push_to_user(alice.id, {"type": "x"}, channel="prices")
    for ws in (alice_ws, alice_ws2, bob_ws):
        await ws.close()


# ---- both venues on one socket ---------------------------------------------------------------


async def test_one_socket_streams_btc_and_a_kalshi_market(sim, ksim, feeds, asgi_server):
    sim.configure(market_auto=False)
    _, token = await in_thread(make_user_token, "both@example.com")
    feeds("cryptocom")
    kalshi_feed = feeds("kalshi")
    await eventually(lambda: kalshi_feed.feed.stats.backfills >= 1, timeout=15, what="kalshi feed up")
    market = await in_thread(
        lambda: Instrument.objects.filter(venue="kalshi", status="open").order_by("symbol").first()
    )
    assert market is not None
    assert market.instrument_type == "event"
    await eventually(lambda: cache.sync_client().get(cache.price_key(market.symbol)), what="kalshi price")
    # both feeds must have published before the snapshot can carry a price (a slow CI box lags)
    await eventually(lambda: cache.sync_client().get(cache.price_key("BTC-USD")), what="btc price")
    ws = await authed(asgi_server, token)
    await ws.send(subscribe("BTC-USD", market.symbol))
    seen: list[dict[str, Any]] = []
    for symbol in ("BTC-USD", market.symbol):  # the two snapshots may arrive in either order
        snap = next((m for m in seen if is_price(symbol, snapshot=True)(m)), None)
        if snap is None:
            snap = await recv_until(ws, is_price(symbol, snapshot=True), seen=seen, timeout=15)
        assert snap["stale"] is False
    kalshi_snap = next(m for m in seen if is_price(market.symbol)(m))
    assert kalshi_snap["venue"] == "kalshi"
    for field in ("bid", "ask"):  # event contracts are priced in dollars between 0 and 1
        if kalshi_snap[field] is not None:
            assert Decimal("0") < Decimal(kalshi_snap[field]) < Decimal("1")
    # both venues keep moving: live prices for each arrive on the same socket
    # (ten simulator ticks do not always move BTC's top of book: tick until it moves, bounded)
    for _ in range(10):
        await tick(sim, 10)
        try:
            await recv_until(ws, is_price("BTC-USD", snapshot=False), seen=seen, timeout=2)
            break
        except (AssertionError, TimeoutError):
            continue
    else:
        raise AssertionError("no live BTC-USD price after 100 simulator ticks")
    await recv_until(ws, is_price(market.symbol, snapshot=False), seen=seen, timeout=15)
    assert_gapless(seen)
    await ws.close()


# ---- venue down: stale, told, recovered ------------------------------------------------------


async def test_killing_the_simulator_marks_prices_stale_and_the_feed_recovers(
    md_settings, feeds, asgi_server
):
    import dataclasses

    from apps.exchanges.simulators.cryptocom import CryptocomSimulator
    from apps.exchanges.simulators.harness import SimulatorThread
    from apps.marketdata.selectors import instrument_get, prices_get
    from tests.marketdata.conftest import SIM_CONFIG, SimHandle, free_port, point_at_sim

    port = free_port()

    def start_sim() -> SimulatorThread:
        return SimulatorThread(CryptocomSimulator(dataclasses.replace(SIM_CONFIG, port=port))).start()

    thread = await asyncio.to_thread(start_sim)
    point_at_sim(md_settings, SimHandle(thread))
    _, token = await in_thread(make_user_token, "watcher@example.com")
    feed = feeds()
    await eventually(lambda: cache.sync_client().get(cache.price_key("BTC-USD")), what="feed price")
    ws = await authed(asgi_server, token)
    await ws.send(subscribe("BTC-USD"))
    snap = await recv_until(ws, is_price("BTC-USD", snapshot=True))
    assert snap["stale"] is False

    def rest_stale() -> bool:
        instrument = instrument_get(symbol="BTC-USD")
        price = prices_get(instruments=[instrument])["BTC-USD"]
        return price is not None and price.stale

    try:
        await asyncio.to_thread(thread.stop)  # the venue goes away
        status = await recv_until(ws, lambda m: m["type"] == "status", timeout=10)
        assert status["channel"] == "prices"
        assert (status["venue"], status["state"], status["stale"]) == ("cryptocom", "stale", True)
        assert status["instruments"] == ["BTC-USD"]
        assert await in_thread(rest_stale)
        thread = await asyncio.to_thread(start_sim)  # and comes back on the same address
        live = await recv_until(ws, lambda m: m["type"] == "status", timeout=15)
        assert (live["state"], live["stale"]) == ("live", False)
        fresh = await recv_until(ws, is_price("BTC-USD"), timeout=10)
        assert fresh["stale"] is False
        assert not await in_thread(rest_stale)
        assert feed.feed.stats.disconnects >= 1
        assert feed.feed.stats.connects >= 2
    finally:
        await asyncio.to_thread(thread.stop)
        await ws.close()
