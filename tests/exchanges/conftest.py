"""Shared exchange fixtures: a Crypto.com simulator on a free 127.0.0.1 port (one per session, reset
before each test), funded accounts, and adapters with test-sized timeouts.

Reuse from other test packages with `pytest_plugins = ["tests.exchanges.conftest"]` or import the
fixtures: `cryptocom_sim`, `cryptocom_account`, `cryptocom_credentials`, `cryptocom_adapter`,
`make_cryptocom_adapter`, `aioredis`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from apps.exchanges.adapters.base import Credentials
from apps.exchanges.adapters.cryptocom import (
    CryptocomAdapter,
    CryptocomSettings,
    RestSettings,
    StreamSettings,
)
from apps.exchanges.simulators.cryptocom import CryptocomSimulator
from apps.exchanges.simulators.harness import SimulatorThread
from apps.exchanges.simulators.server import SimConfig

SIM_CONFIG = SimConfig(
    tick_interval=0.05,
    history_minutes=120,
    heartbeat_interval=0.3,
    book_update_interval=0.03,
    book_heartbeat_interval=0.3,
)
FAST = CryptocomSettings(
    rest=RestSettings(
        connect_timeout=1.0, read_timeout=1.5, max_attempts=4, backoff_base=0.02, backoff_cap=0.2
    ),
    stream=StreamSettings(
        connect_delay=0, silence_timeout=1.5, open_timeout=2, reconnect_base=0.05, reconnect_cap=0.3
    ),
)


class SimHandle:
    """A running simulator plus small helpers for its `/_sim/` control API."""

    def __init__(self, thread: SimulatorThread) -> None:
        self.thread = thread
        self.base_url = thread.base_url
        self.rest_url = f"{thread.base_url}/exchange/v1"
        self.http = httpx.Client(base_url=thread.base_url, timeout=5)

    @property
    def server(self) -> CryptocomSimulator:
        return self.thread.server  # type: ignore[return-value]

    def create_account(self, balances: dict[str, str] | None = None) -> dict[str, Any]:
        response = self.http.post("/_sim/accounts", json={"balances": balances} if balances else {})
        assert response.status_code == 201, response.text
        return response.json()

    def fault(
        self, kind: str, count: int = 1, method: str | None = None, latency_ms: float = 0
    ) -> dict[str, Any]:
        body = {"kind": kind, "count": count, "method": method, "latency_ms": latency_ms}
        response = self.http.post("/_sim/faults", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def configure(self, **values: Any) -> None:
        response = self.http.post("/_sim/config", json=values)
        assert response.status_code == 200, response.text

    def account_state(self, api_key: str) -> dict[str, Any]:
        return self.http.get(f"/_sim/accounts/{api_key}").json()


def _reset(server: CryptocomSimulator) -> None:
    for f in dataclasses.fields(SIM_CONFIG):
        setattr(
            server.config, f.name, getattr(SIM_CONFIG, f.name) if f.name != "port" else server.config.port
        )
    server.reset_state()


@pytest.fixture(scope="session")
def cryptocom_sim_thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(CryptocomSimulator(dataclasses.replace(SIM_CONFIG))) as thread:
        yield thread


@pytest.fixture
def cryptocom_sim(cryptocom_sim_thread: SimulatorThread) -> Iterator[SimHandle]:
    server: CryptocomSimulator = cryptocom_sim_thread.server  # type: ignore[assignment]
    cryptocom_sim_thread.call(lambda: _reset(server))
    handle = SimHandle(cryptocom_sim_thread)
    yield handle
    handle.http.close()


@pytest.fixture
def cryptocom_account(cryptocom_sim: SimHandle) -> dict[str, Any]:
    return cryptocom_sim.create_account()


@pytest.fixture
def cryptocom_credentials(cryptocom_account: dict[str, Any]) -> Credentials:
    return Credentials(api_key=cryptocom_account["api_key"], api_secret=cryptocom_account["api_secret"])


@pytest.fixture
async def aioredis(settings: Any) -> AsyncIterator[Any]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def make_cryptocom_adapter(
    cryptocom_sim: SimHandle, aioredis: Any
) -> AsyncIterator[Callable[..., CryptocomAdapter]]:
    made: list[CryptocomAdapter] = []

    def make(credentials: Credentials | None = None, **kwargs: Any) -> CryptocomAdapter:
        kwargs.setdefault("settings", FAST)
        kwargs.setdefault("redis", aioredis)
        adapter = CryptocomAdapter(credentials=credentials, base_url=cryptocom_sim.rest_url, **kwargs)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


@pytest.fixture
async def cryptocom_adapter(
    make_cryptocom_adapter: Callable[..., CryptocomAdapter], cryptocom_credentials: Credentials
) -> CryptocomAdapter:
    return make_cryptocom_adapter(cryptocom_credentials)
