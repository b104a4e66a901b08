"""Market data fixtures: the Crypto.com simulator (shared with tests/exchanges), settings pointing
at it, feeds running against it with test-sized timeouts, a live ASGI server (uvicorn on a free
127.0.0.1 port) and real users with real access tokens.

Everything runs for real: PostgreSQL, Redis, the simulator over sockets, the web server over
sockets. Waits are bounded (`eventually`, `recv_until`)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.exchanges.venues import venue_spec
from apps.marketdata.feed.runner import FeedConfig, VenueFeed
from k2.aio import cancel_and_wait
from tests.exchanges.conftest import (  # noqa: F401 - fixtures
    FAST,
    SIM_CONFIG,
    SimHandle,
    cryptocom_sim,
    cryptocom_sim_thread,
)
from tests.exchanges.kalshi_fixtures import (  # noqa: F401 - fixtures
    KALSHI_FAST,
    KalshiSimHandle,
    kalshi_sim,
    kalshi_sim_thread,
)

TEST_ADAPTER_SETTINGS: dict[str, Any] = {"cryptocom": FAST, "kalshi": KALSHI_FAST}

PASSWORD = "market-data-Passw0rd!"
ORIGIN = "http://app.k2.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- settings and adapters -------------------------------------------------------------------


def point_at_sim(settings: Any, sim: SimHandle) -> None:
    ws = sim.base_url.replace("http://", "ws://")
    settings.K2_CRYPTOCOM_REST_URL = sim.rest_url
    settings.K2_CRYPTOCOM_MARKET_WS_URL = f"{ws}/exchange/v1/market"
    settings.K2_CRYPTOCOM_USER_WS_URL = f"{ws}/exchange/v1/user"


@pytest.fixture
def md_settings(settings: Any) -> Any:
    settings.K2_MARKETDATA_LEASE_SECONDS = 1.0
    settings.K2_MARKETDATA_BACKFILL_CANDLES = 30
    settings.K2_WS_ALLOWED_ORIGINS = [ORIGIN]
    settings.K2_WS_ALLOW_NO_ORIGIN = True
    settings.K2_WS_MAX_UPDATES_PER_SECOND = 50.0
    settings.K2_WS_HEARTBEAT_SECONDS = 1.0
    settings.K2_WS_AUTH_TIMEOUT_SECONDS = 2.0
    settings.K2_WS_MAX_SUBSCRIPTIONS = 10
    return settings


@pytest.fixture
def sim(cryptocom_sim: SimHandle, md_settings: Any) -> SimHandle:  # noqa: F811
    point_at_sim(md_settings, cryptocom_sim)
    return cryptocom_sim


@pytest.fixture
def ksim(kalshi_sim: KalshiSimHandle, md_settings: Any) -> KalshiSimHandle:  # noqa: F811
    """The Kalshi simulator with the settings and a feed key pointing at it."""
    md_settings.K2_KALSHI_REST_URL = kalshi_sim.rest_url
    md_settings.K2_KALSHI_WS_URL = kalshi_sim.ws_url
    account = kalshi_sim.create_account()
    md_settings.K2_MARKETDATA_FEED_CREDENTIALS = {
        "kalshi": {"api_key": account["api_key_id"], "api_secret": account["private_key_pem"]}
    }
    return kalshi_sim


@asynccontextmanager
async def fast_adapter(venue: str) -> AsyncIterator[Any]:
    """The registry's adapter for `venue` with test-sized timeouts and reconnect backoff."""
    import redis.asyncio as aioredis
    from django.conf import settings
    from django.utils.module_loading import import_string

    from apps.marketdata.feed.runner import feed_credentials

    spec = venue_spec(venue)
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    adapter = import_string(spec.adapter_path)(
        credentials=feed_credentials(venue),
        redis=redis,
        settings=TEST_ADAPTER_SETTINGS[venue],
        **spec.adapter_kwargs(),
    )
    try:
        yield adapter
    finally:
        await adapter.close()
        await redis.aclose()


def feed_config(**overrides: Any) -> FeedConfig:
    values: dict[str, Any] = {
        # short, so crash takeovers are quick; renewed every third of it, so a loaded CI host
        # needs a stall of over a second on the test's loop before a leader loses it
        "lease_seconds": 2.0,
        "backfill_candles": 30,
        "flush_interval": 0.05,
        "retry_base": 0.05,
        "retry_cap": 0.3,
        "venue_timeout": 5.0,
    }
    values.update(overrides)
    return FeedConfig(**values)


class RunningFeed:
    """A `VenueFeed` running as a task of the test's loop; `stop()` is bounded in time."""

    def __init__(self, venue: str = "cryptocom", **config: Any) -> None:
        self.feed = VenueFeed(venue, config=feed_config(**config), adapter_factory=fast_adapter)
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(self.feed.run(self.stop_event))

    async def stop(self) -> None:
        self.stop_event.set()
        try:
            await asyncio.wait_for(self.task, 10)
        except TimeoutError:
            ended = await cancel_and_wait(self.task, timeout=5)
            assert ended, "the feed ignored both its stop event and a cancellation"

    async def kill(self) -> None:
        """Die without stepping down (no lease release, no stale mark): a crashed process."""
        await cancel_and_wait(self.task)


@pytest.fixture
async def feeds() -> AsyncIterator[Callable[..., RunningFeed]]:
    running: list[RunningFeed] = []

    def start(venue: str = "cryptocom", **config: Any) -> RunningFeed:
        feed = RunningFeed(venue, **config)
        running.append(feed)
        return feed

    yield start
    for feed in running:
        if not feed.task.done():
            await feed.stop()


async def eventually(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `predicate` (sync or async) until truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or predicate}: last={last!r}")


# ---- users and tokens -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_keyset() -> Iterator[None]:
    from apps.accounts import tokens

    tokens.keyset.clear()
    yield
    tokens.keyset.clear()


def make_user_token(email: str) -> tuple[Any, str]:
    """A real user and a real access token from the accounts login service."""
    from apps.accounts.models import User
    from apps.accounts.services import ClientInfo, auth_login

    User.objects.create_user(email=email, password=PASSWORD)
    result = auth_login(email=email, password=PASSWORD, client=ClientInfo(ip="127.0.0.1"))
    assert result.tokens is not None
    return result.user, result.tokens.access_token


@pytest.fixture
def user_token(db: Any) -> tuple[Any, str]:
    return make_user_token("trader@example.com")


# ---- live ASGI server -----------------------------------------------------------------------


class LiveServer:
    """uvicorn serving `k2.asgi:application` in a thread on a free port."""

    def __init__(self) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(
            "k2.asgi:application",
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws_ping_interval=None,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())
        self.loop.run_until_complete(self._close_hubs())
        self.loop.close()

    @staticmethod
    async def _close_hubs() -> None:
        from apps.marketdata.ws.hub import reset_hub

        await reset_hub()

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/prices"

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run `fn` on the server's loop (to inspect the hub) and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def hub_sessions(self) -> list[Any]:
        from apps.marketdata.ws.hub import _hubs

        def sessions() -> list[Any]:
            hubs = [h for h in _hubs.values() if h.loop is self.loop]
            return list(hubs[0].sessions) if hubs else []

        return self.call(sessions)


@pytest.fixture
def asgi_server(transactional_db: Any, md_settings: Any) -> Iterator[LiveServer]:
    server = LiveServer().start()
    yield server
    server.stop()


# ---- WebSocket client helpers ---------------------------------------------------------------


async def ws_connect(
    url: str, token: str | None = None, *, origin: str | None = ORIGIN, **kwargs: Any
) -> Any:
    from websockets.asyncio.client import connect

    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return await connect(url, additional_headers=headers, origin=origin, open_timeout=5, **kwargs)  # type: ignore[arg-type]


async def recv_json(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(
    ws: Any,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 10.0,
    seen: list[Any] | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no matching message within {timeout}s; saw {(seen or [])[-5:]}")
        try:
            message = await recv_json(ws, left)
        except TimeoutError:
            # still a TimeoutError (tests assert silence with it), now saying what did arrive
            raise TimeoutError(
                f"nothing matching for {left:.1f}s; first {(seen or [])[:4]}; last {(seen or [])[-2:]}"
            ) from None
        if seen is not None:
            seen.append(message)
        if predicate(message):
            return message


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run sync (ORM) code from an async test."""
    return await sync_to_async(fn)(*args, **kwargs)
