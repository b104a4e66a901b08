"""Live tracking: the user-stream follower records fills and order changes, and every change
reaches the user's `/ws/prices` socket as an `order_update` after commit."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from apps.trading.models import Order, OrderExecution
from tests.trading.conftest import StreamRunner, Trader, eventually, order_of


@pytest.fixture
def pubsub(settings: Any) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Everything published to users' sockets (the push transport the web processes fan out)."""
    import redis

    from apps.marketdata import cache

    client = redis.Redis.from_url(settings.K2_MARKETDATA_REDIS_URL)
    sub = client.pubsub()
    sub.subscribe(cache.USER_CHANNEL)
    seen: list[dict[str, Any]] = []

    def drain() -> list[dict[str, Any]]:
        while (message := sub.get_message(timeout=0.05)) is not None:
            if message["type"] == "message":
                seen.append(json.loads(message["data"]))
        return seen

    yield drain
    sub.close()
    client.close()


@pytest.mark.django_db(transaction=True)
def test_user_stream_records_fills_and_pushes_order_updates(
    trader: Trader, user_streams: Callable[[], StreamRunner], pubsub: Callable[[], list[dict[str, Any]]]
) -> None:
    runner = user_streams()
    eventually(lambda: runner.supervisor.connects >= 1)
    resting = order_of(trader.place(quantity="0.01"))
    response = trader.place(order_type="market", quantity="0.02", price=None)
    order = order_of(response)
    # The stream alone records the fills (no reconciliation runs here).
    eventually(lambda: sum(e.quantity for e in OrderExecution.objects.filter(order=order)) == Decimal("0.02"))
    order.refresh_from_db()
    assert order.status == "filled"
    assert order.fees == sum(e.fee for e in order.executions.all())
    assert trader.client.get("/v1/trades").json()["data"][0]["order_id"] == str(order.pk)

    # A cancel made at the venue directly (not through K2) arrives through the stream too.
    from apps.exchanges.adapters.base import Credentials
    from apps.trading.venue import venue_call

    creds = Credentials(trader.account["api_key"], trader.account["api_secret"])

    async def cancel(adapter: Any) -> None:
        await adapter.cancel_order(client_order_id=resting.venue_client_order_id)

    venue_call("cryptocom", cancel, credentials=creds, timeout=5)
    eventually(lambda: Order.objects.get(pk=resting.pk).status == "cancelled")

    def updates_for(o: Order) -> list[dict[str, Any]]:
        return [
            m["message"]
            for m in pubsub()
            if m["channel"] == "orders" and m["message"]["order_id"] == str(o.pk)
        ]

    eventually(lambda: updates_for(order) and updates_for(order)[-1]["status"] == "filled")
    statuses = [m["status"] for m in updates_for(order)]
    assert statuses[:2] == ["pending", "submitted"]
    assert statuses[-1] == "filled"
    # The venue's answer (open) and the stream's fills race: the fills may land first, and then
    # the late "open" is a regression the state machine ignores, so it is never announced. Once
    # filled, later updates (fees, the average price) still say filled: nothing goes back.
    assert set(statuses[2:]) <= {"open", "partial", "filled"}
    assert set(statuses[statuses.index("filled") :]) == {"filled"}
    last = updates_for(order)[-1]
    assert last["type"] == "order_update"
    assert last["filled_quantity"] == "0.02"
    assert Decimal(last["avg_price"]) > 0
    assert all(m["user_id"] == str(trader.user.pk) for m in pubsub())
    eventually(lambda: updates_for(resting)[-1]["status"] == "cancelled")


@pytest.mark.django_db(transaction=True)
def test_order_update_arrives_on_the_websocket(trader: Trader, settings: Any) -> None:
    """End to end: a real ASGI server, a socket authenticated with a real JWT, an order placed
    over HTTP; the socket receives the order's updates (channel `orders`)."""
    import httpx
    import uvicorn
    from websockets.sync.client import connect

    from apps.accounts.services import ClientInfo, auth_login

    settings.K2_WS_ALLOW_NO_ORIGIN = True
    trader.user.set_password("correct horse battery staple 2")
    trader.user.save()
    login = auth_login(
        email=trader.user.email, password="correct horse battery staple 2", client=ClientInfo(ip="127.0.0.1")
    )
    assert login.tokens is not None
    token = login.tokens.access_token

    config = uvicorn.Config(
        "k2.asgi:application", host="127.0.0.1", port=0, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())
        from apps.marketdata.ws.hub import reset_hub

        loop.run_until_complete(reset_hub())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    eventually(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with connect(
            f"ws://127.0.0.1:{port}/ws/prices", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            ws.recv(timeout=5)  # authenticated
            # A client subscribes to prices as well (this also starts the web process's fan-out).
            ws.send(json.dumps({"type": "subscribe", "channel": "prices", "instruments": ["BTC-USD"]}))
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                body = {"instrument": "BTC-USD", "side": "buy", "order_type": "market", "quantity": "0.01"}
                response = http.post("/v1/orders", json=body, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 201, response.text
            order_id = response.json()["data"]["id"]
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 10
            while not any(m.get("status") == "filled" for m in seen):
                assert time.monotonic() < deadline, seen
                message = json.loads(ws.recv(timeout=5))
                if message.get("type") == "order_update":
                    seen.append(message)
    finally:
        server.should_exit = True
        thread.join(10)
    assert {m["order_id"] for m in seen} == {order_id}
    assert all(m["channel"] == "orders" for m in seen)
    filled = next(m for m in seen if m["status"] == "filled")
    assert filled["filled_quantity"] == "0.01"
    assert Decimal(filled["avg_price"]) > 0


@pytest.mark.django_db(transaction=True)
def test_a_balance_push_becomes_the_risk_engines_snapshot(
    trader: Trader, user_streams: Callable[[], StreamRunner], settings: Any
) -> None:
    """The venue pushes the account's balances whenever they change: they replace the cached
    snapshot, so the next order is checked against them without asking the venue."""
    from django.core.cache import cache

    from apps.exchanges.adapters.base import Credentials
    from apps.trading.risk import _account_keys
    from apps.trading.venue import venue_call
    from k2.audit.models import AuditEntry

    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 30  # within the test only a push renews it
    runner = user_streams()
    eventually(lambda: runner.supervisor.connects >= 1)
    key = _account_keys(trader.user.exchange_links.get().pk)[0]

    def balance_reads() -> int:
        calls = AuditEntry.objects.filter(action="exchange.call")
        return sum(1 for c in calls if c.details.get("method") == "private/user-balance")

    resting = order_of(trader.place(quantity="0.01"))
    reads = balance_reads()  # the link's check, and this order's unless a push came first
    placed_at = time.time()

    # Cancelled at the venue directly: the hold comes back, and the push says so.
    creds = Credentials(trader.account["api_key"], trader.account["api_secret"])

    async def cancel(adapter: Any) -> None:
        await adapter.cancel_order(client_order_id=resting.venue_client_order_id)

    venue_call("cryptocom", cancel, credentials=creds, timeout=5)
    venue_usd = Decimal(trader.venue_state()["balances"]["USD"]["available"])
    eventually(lambda: cache.get(key)[2] > placed_at and cache.get(key)[0]["USD"].available == venue_usd)

    assert trader.place(quantity="0.01").status_code == 201
    assert balance_reads() == reads  # checked against the pushed balances


@pytest.mark.django_db(transaction=True)
def test_order_updates_batched_hold_pushes_until_sent_then_send_them_in_order(
    trader: Trader, pubsub: Callable[[], list[dict[str, Any]]]
) -> None:
    from apps.trading.events import order_announce, order_updates_batched

    order = order_of(trader.place(quantity="0.01"))
    later = order_of(trader.place(quantity="0.01"))
    pubsub()

    def statuses() -> list[tuple[str, str]]:
        return [(m["message"]["order_id"], m["message"]["status"]) for m in pubsub()[-4:]]

    pubsub().clear()
    with order_updates_batched() as send:
        for status in ("submitted", "open"):
            order.status = status
            order_announce(order, status_changed_to=status)  # outside a transaction: "committed"
        time.sleep(0.3)
        assert pubsub() == []  # held back
        send()
        eventually(lambda: statuses() == [(str(order.pk), "submitted"), (str(order.pk), "open")])
        later.status = "open"
        order_announce(later, status_changed_to="open")
        time.sleep(0.3)
        assert len(pubsub()) == 2
    # what is still held goes out when the block ends
    eventually(lambda: statuses()[-1:] == [(str(later.pk), "open")])


def _stream_backend_pid(runner: StreamRunner) -> int:
    """The PostgreSQL backend of the thread the follower records events on (as it would)."""
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections, connection

    def pid() -> int:
        close_old_connections()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    return asyncio.run_coroutine_threadsafe(sync_to_async(pid)(), runner.loop).result(10)


@pytest.mark.django_db(transaction=True)
def test_the_stream_keeps_its_database_connection_and_replaces_one_the_server_ended(
    trader: Trader, user_streams: Callable[[], StreamRunner]
) -> None:
    # With CONN_MAX_AGE 0 Django's rule between requests (close_old_connections) opened a new
    # connection for every event; with the Procfile's setting the follower keeps one until it fails.
    runner = user_streams()
    eventually(lambda: runner.supervisor.connects >= 1)
    before, handled = _stream_backend_pid(runner), runner.supervisor.handled
    for _ in range(3):
        trader.place(quantity="0.01")
    eventually(lambda: runner.supervisor.handled >= handled + 3)
    assert _stream_backend_pid(runner) == before

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [before])

    def ended() -> bool:  # the backend has gone, its goodbye sent to the follower's connection
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [before])
            return cursor.fetchone()[0] == 0

    eventually(ended)
    order = order_of(trader.place(order_type="market", quantity="0.02", price=None))
    # The stream alone records fills here: the event after the server ended the connection is
    # recorded on a new one, not lost to the dead one.
    eventually(lambda: sum(e.quantity for e in OrderExecution.objects.filter(order=order)) == Decimal("0.02"))
    eventually(lambda: Order.objects.get(pk=order.pk).status == "filled")
    assert runner.supervisor.failed == 0  # nothing met the dead connection (events, link refreshes)
    assert _stream_backend_pid(runner) != before


@pytest.mark.django_db(transaction=True)
def test_a_link_made_or_revoked_starts_or_stops_its_stream_at_once(
    make_trader: Callable[..., Trader], user_streams: Callable[..., StreamRunner]
) -> None:
    # Links are re-read once a minute here: only the exchanges app's announcement of the change
    # can start the new link's stream (and stop the revoked one's) within seconds.
    runner = user_streams(refresh_seconds=60)
    supervisor = runner.supervisor
    eventually(lambda: supervisor.subscriptions == 1 and supervisor.refreshes >= 1)
    assert supervisor.tasks == {}
    trader = make_trader()  # links a simulator account through the API
    link_id = str(trader.user.exchange_links.get().pk)
    eventually(lambda: link_id in supervisor.tasks, timeout=5)
    eventually(lambda: supervisor.connects >= 1, timeout=5)  # the stream is up
    assert trader.client.delete(f"/v1/exchanges/links/{link_id}").status_code == 204
    eventually(lambda: link_id not in supervisor.tasks, timeout=5)

    # Redis drops the follower's subscription: it subscribes again and hears the next change.
    import redis

    from apps.trading.streams import CLIENT_NAME
    from k2.core.cache import redis_url

    server = redis.Redis.from_url(redis_url())
    (follower,) = [c["id"] for c in server.client_list() if c["name"] == CLIENT_NAME]
    assert server.client_kill_filter(_id=follower) == 1
    server.close()
    eventually(lambda: supervisor.subscriptions == 2, timeout=5)
    second = make_trader()
    second_id = str(second.user.exchange_links.get().pk)
    eventually(lambda: second_id in supervisor.tasks, timeout=5)
    assert supervisor.failed == 0


@pytest.mark.django_db(transaction=True)
def test_each_push_carries_the_updated_at_the_order_was_written_with(
    trader: Trader, pubsub: Callable[[], list[dict[str, Any]]]
) -> None:
    """Clients order updates by `updated_at`: the venue's answer (written in one conditional
    statement) must not go out with the time of the write before it."""
    order = order_of(trader.place())
    order.refresh_from_db()

    def pushes() -> list[dict[str, Any]]:
        return [p["message"] for p in pubsub() if p["message"]["order_id"] == str(order.pk)]

    last = eventually(lambda: [m for m in pushes() if m["status"] == "open"])[-1]
    assert last["updated_at"] == order.updated_at.isoformat()
    times = [m["updated_at"] for m in pushes()]
    assert times == sorted(times)
    assert len(set(times)) == len(times)


@pytest.fixture
def celery_queue(settings: Any) -> Iterator[Callable[[], Callable[[], list[tuple[str, list[Any]]]]]]:
    """Call to empty the workers' queue; it returns what reads the (task, args) queued since."""
    import base64

    import redis

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def queued() -> list[tuple[str, list[Any]]]:
        out = []
        for raw in broker.lrange("celery", 0, -1):
            message = json.loads(raw)
            args = json.loads(base64.b64decode(message["body"]))[0]
            out.append((message["headers"]["task"], args))
        return out

    def empty() -> Callable[[], list[tuple[str, list[Any]]]]:
        broker.delete("celery")
        return queued

    yield empty
    broker.close()


@pytest.mark.django_db(transaction=True)
def test_a_stream_that_connects_queues_a_reconciliation_of_its_live_orders(
    trader: Trader, user_streams: Callable[[], StreamRunner], celery_queue: Callable[[], Any]
) -> None:
    """What a stream missed while down is reconciled by the workers, not in the stream process
    (one link's venue reads there would hold up every other user's messages)."""
    queued = celery_queue()
    resting = order_of(trader.place())
    runner = user_streams()
    eventually(lambda: runner.supervisor.connects >= 1)
    task = ("apps.trading.tasks.order_reconcile_task", [str(resting.pk)])
    assert eventually(lambda: task in queued())


@pytest.mark.django_db(transaction=True)
def test_an_order_update_the_stream_could_not_read_queues_a_reconciliation_of_the_links_orders(
    trader: Trader, user_streams: Callable[[], StreamRunner], celery_queue: Callable[[], Any]
) -> None:
    """The stream skips a message it cannot translate (and keeps its connection): it may have
    been an order update or a fill, so the follower has the link's live orders reconciled, as
    after a reconnect, rather than leave them to the periodic task."""
    runner = user_streams()
    eventually(lambda: runner.supervisor.connects >= 1)
    queued = celery_queue()
    trader.sim.fault("malformed_ws", method="user.order*")
    resting = order_of(trader.place())  # the venue's update of it goes out unreadable
    task = ("apps.trading.tasks.order_reconcile_task", [str(resting.pk)])
    assert eventually(lambda: task in queued())
    assert (runner.supervisor.resyncs, runner.supervisor.connects) == (1, 1)  # the same connection
