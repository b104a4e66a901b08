"""Kalshi fixtures: a simulator on a free 127.0.0.1 port (one per session, reset before each
test), funded accounts with RSA keys, and adapters with test-sized timeouts.

Import what you use into a test module (they are plain pytest fixtures):
`kalshi_sim` (a `KalshiSimHandle`: `.create_account()`, `.credentials()`, `.settle(ticker, result)`,
`.close_market(ticker)`, `.fault(...)`, `.configure(...)`, `.tickers`), `kalshi_sim_thread`,
`kalshi_account`, `kalshi_credentials`, `make_kalshi_adapter`, `kalshi_adapter`. `aioredis`
comes from `tests/exchanges/conftest.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from apps.exchanges.adapters.base import Credentials
from apps.exchanges.adapters.kalshi import KalshiAdapter, KalshiSettings, RestSettings, StreamSettings
from apps.exchanges.simulators.harness import SimulatorThread
from apps.exchanges.simulators.kalshi import KalshiSimConfig, KalshiSimulator

KALSHI_SIM_CONFIG = KalshiSimConfig(
    tick_interval=0.05,
    history_minutes=60,
    heartbeat_interval=0.5,
    book_update_interval=0.03,
    legacy_cents=False,  # the current (fixed-point) shape; tests that need era A switch it on
)
KALSHI_FAST = KalshiSettings(
    rest=RestSettings(
        connect_timeout=1.0, read_timeout=1.5, max_attempts=4, backoff_base=0.02, backoff_cap=0.2
    ),
    stream=StreamSettings(
        open_timeout=2, ping_interval=0.5, ping_timeout=0.5, reconnect_base=0.05, reconnect_cap=0.3
    ),
)


class KalshiSimHandle:
    """A running Kalshi simulator plus helpers for its `/_sim/` control API."""

    def __init__(self, thread: SimulatorThread) -> None:
        self.thread = thread
        self.base_url = thread.base_url
        self.rest_url = f"{thread.base_url}/trade-api/v2"
        self.ws_url = f"{thread.ws_url}/trade-api/ws/v2"
        self.http = httpx.Client(base_url=thread.base_url, timeout=5)

    @property
    def server(self) -> KalshiSimulator:
        return self.thread.server  # type: ignore[return-value]

    @property
    def tickers(self) -> list[str]:
        return self.thread.call(self.server.tickers)

    def ticker(self, series: str, index: int = 0) -> str:
        return [t for t in self.tickers if t.startswith(series + "-")][index]

    def create_account(
        self, balances: dict[str, str] | None = None, tier: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if balances:
            body["balances"] = balances
        if tier:
            body["tier"] = tier
        response = self.http.post("/_sim/accounts", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    @staticmethod
    def credentials(account: dict[str, Any]) -> Credentials:
        return Credentials(api_key=account["api_key_id"], api_secret=account["private_key_pem"])

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

    def settle(self, ticker: str, result: str) -> dict[str, Any]:
        response = self.http.post(f"/_sim/markets/{ticker}/settle", json={"result": result})
        assert response.status_code == 200, response.text
        return response.json()

    def close_market(self, ticker: str) -> dict[str, Any]:
        response = self.http.post(f"/_sim/markets/{ticker}/close")
        assert response.status_code == 200, response.text
        return response.json()

    def account_state(self, api_key_id: str) -> dict[str, Any]:
        return self.http.get(f"/_sim/accounts/{api_key_id}").json()


def _reset(server: KalshiSimulator) -> None:
    for f in dataclasses.fields(KALSHI_SIM_CONFIG):
        if f.name != "port":
            setattr(server.config, f.name, getattr(KALSHI_SIM_CONFIG, f.name))
    server.reset_state()


@pytest.fixture(scope="session")
def kalshi_sim_thread() -> Iterator[SimulatorThread]:
    with SimulatorThread(KalshiSimulator(dataclasses.replace(KALSHI_SIM_CONFIG))) as thread:
        yield thread


@pytest.fixture
def kalshi_sim(kalshi_sim_thread: SimulatorThread) -> Iterator[KalshiSimHandle]:
    server: KalshiSimulator = kalshi_sim_thread.server  # type: ignore[assignment]
    kalshi_sim_thread.call(lambda: _reset(server))
    handle = KalshiSimHandle(kalshi_sim_thread)
    yield handle
    handle.http.close()


@pytest.fixture
def kalshi_account(kalshi_sim: KalshiSimHandle) -> dict[str, Any]:
    return kalshi_sim.create_account()


@pytest.fixture
def kalshi_credentials(kalshi_account: dict[str, Any]) -> Credentials:
    return KalshiSimHandle.credentials(kalshi_account)


@pytest.fixture
async def make_kalshi_adapter(
    kalshi_sim: KalshiSimHandle, aioredis: Any
) -> AsyncIterator[Callable[..., KalshiAdapter]]:
    made: list[KalshiAdapter] = []

    def make(credentials: Credentials | None = None, **kwargs: Any) -> KalshiAdapter:
        kwargs.setdefault("settings", KALSHI_FAST)
        kwargs.setdefault("redis", aioredis)
        kwargs.setdefault("ws_url", kalshi_sim.ws_url)
        adapter = KalshiAdapter(credentials=credentials, base_url=kalshi_sim.rest_url, **kwargs)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        await adapter.close()


@pytest.fixture
async def kalshi_adapter(
    make_kalshi_adapter: Callable[..., KalshiAdapter], kalshi_credentials: Credentials
) -> KalshiAdapter:
    return make_kalshi_adapter(kalshi_credentials)
