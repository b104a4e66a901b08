"""Trading fixtures: the Crypto.com simulator (shared with tests/exchanges) with settings pointing
at it, the instrument registry synced from it, and users with linked simulator accounts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.trading.models import Order
from tests.exchanges.conftest import SimHandle, cryptocom_sim, cryptocom_sim_thread  # noqa: F401
from tests.procfile import procfile_conn_max_age

BTC = "BTC-USD"


@pytest.fixture
def venue(settings: Any, cryptocom_sim: SimHandle) -> SimHandle:  # noqa: F811
    """Settings at the simulator, test-sized timeouts; the registry synced from the venue."""
    ws = cryptocom_sim.base_url.replace("http://", "ws://")
    settings.K2_CRYPTOCOM_REST_URL = cryptocom_sim.rest_url
    settings.K2_CRYPTOCOM_MARKET_WS_URL = f"{ws}/exchange/v1/market"
    settings.K2_CRYPTOCOM_USER_WS_URL = f"{ws}/exchange/v1/user"
    settings.K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS = 5
    settings.K2_TRADING_SUBMIT_TIMEOUT_SECONDS = 3
    settings.K2_TRADING_VENUE_TIMEOUT_SECONDS = 3
    settings.K2_TRADING_RECONCILE_GRACE_SECONDS = 0
    settings.K2_TRADING_STREAM_REFRESH_SECONDS = 0.2
    # A stale balance is re-read on a background thread, whose writes (the venue call's audit)
    # would commit outside a test's transaction: the tests of that path turn it on themselves.
    settings.K2_TRADING_BALANCE_STALE_SECONDS = 0
    from apps.marketdata.services import instruments_sync

    results = instruments_sync(venue="cryptocom")
    assert not isinstance(results["cryptocom"], str), results
    return cryptocom_sim


class Trader:
    """A user with a linked simulator account and an authenticated API client."""

    def __init__(self, sim: SimHandle, email: str, balances: dict[str, str] | None = None) -> None:
        self.sim = sim
        self.user = User.objects.create_user(email, "correct horse battery staple")
        self.account = sim.create_account(balances)
        self.client = APIClient()
        self.client.force_authenticate(self.user)
        state = self.client.get("/v1/auth/link/cryptocom/initiate").json()["data"]["state"]
        body = {"state": state, "api_key": self.account["api_key"], "api_secret": self.account["api_secret"]}
        response = self.client.post("/v1/auth/link/cryptocom/callback", body, format="json")
        assert response.status_code == 201, response.content

    def place(self, headers: dict[str, str] | None = None, **body: Any) -> Any:
        body.setdefault("instrument", BTC)
        body.setdefault("side", "buy")
        body.setdefault("order_type", "limit")
        body.setdefault("quantity", "0.01")
        if body["order_type"] == "limit":
            body.setdefault("price", str(self.below_market()))
        body = {k: v for k, v in body.items() if v is not None}
        return self.client.post("/v1/orders", body, format="json", headers=headers or {})

    def venue_state(self) -> dict[str, Any]:
        return self.sim.account_state(self.account["api_key"])

    def fair(self) -> Decimal:
        state = self.sim.http.get("/_sim/state").json()
        return Decimal(state["instruments"]["BTC_USD"]["fair_price"])

    def below_market(self, fraction: str = "0.95") -> Decimal:
        """A resting buy price: inside the fat-finger band, far enough not to fill."""
        return (self.fair() * Decimal(fraction)).quantize(Decimal("0.01"))


@pytest.fixture
def make_trader(venue: SimHandle) -> Callable[..., Trader]:
    count = iter(range(1000))

    def make(balances: dict[str, str] | None = None) -> Trader:
        return Trader(venue, f"trader{next(count)}@example.com", balances)

    return make


@pytest.fixture
def trader(make_trader: Callable[..., Trader]) -> Trader:
    return make_trader()


def eventually(check: Callable[[], Any], timeout: float = 8.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def order_of(response: Any) -> Order:
    body = response.json()
    order_id = body["data"]["id"] if "data" in body else body["error"]["details"]["order_id"]
    return Order.objects.get(pk=order_id)


class StreamRunner:
    """`run_user_streams`'s supervisor on its own thread and event loop (as the process runs it)."""

    def __init__(self, refresh_seconds: float = 0.2) -> None:
        from apps.trading.streams import UserStreamSupervisor

        self.supervisor: Any = None
        self._factory = UserStreamSupervisor
        self.refresh_seconds = refresh_seconds
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.supervisor = self._factory(refresh_seconds=self.refresh_seconds)
            self.started.set()
            await self.supervisor.run()

        self.loop.run_until_complete(main())
        from django.db import connections

        connections.close_all()

    def __enter__(self) -> StreamRunner:
        self.thread.start()
        assert self.started.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.supervisor.stop)
        self.thread.join(10)


@pytest.fixture
def user_streams(transactional_db: Any) -> Iterator[Callable[..., StreamRunner]]:
    """Start followers (links re-read every `refresh_seconds`, 0.2 by default); their connections
    are kept between events, as the Procfile's streams process keeps them
    (`DATABASE_CONN_MAX_AGE`; the setting is read when one connects)."""
    from django.db import connection

    kept = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = int(procfile_conn_max_age("streams"))
    runners: list[StreamRunner] = []

    def start(refresh_seconds: float = 0.2) -> StreamRunner:
        runner = StreamRunner(refresh_seconds).__enter__()
        runners.append(runner)
        return runner

    try:
        yield start
    finally:
        for runner in runners:
            runner.__exit__(None, None, None)
        connection.settings_dict["CONN_MAX_AGE"] = kept
