"""Portfolio fixtures: the Crypto.com simulator and linked traders from the trading tests (real
sockets, real PostgreSQL and Redis), plus helpers to read the simulator's own books and to
move its prices."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from apps.trading.services import order_reconcile
from tests.exchanges.conftest import SimHandle, cryptocom_sim, cryptocom_sim_thread  # noqa: F401
from tests.trading.conftest import Trader, make_trader, order_of, venue  # noqa: F401

CENT = Decimal("0.01")


@pytest.fixture
def portfolio_settings(settings: Any) -> Any:
    settings.K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS = 2.0
    settings.K2_PORTFOLIO_CACHE_SECONDS = 30.0
    settings.K2_PORTFOLIO_STALE_SECONDS = 300.0
    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 0
    return settings


@pytest.fixture
def frozen(venue: SimHandle, portfolio_settings: Any) -> SimHandle:  # noqa: F811
    """The simulator with its synthetic market stopped, so prices only move when a test moves them."""
    venue.configure(market_auto=False)
    return venue


def sim_last(sim: SimHandle, venue_symbol: str = "BTC_USD") -> Decimal:
    price = sim.thread.call(lambda: sim.server.engine.last_price(venue_symbol))
    assert price is not None
    return Decimal(price)


def sim_move_price(sim: SimHandle, factor: str, venue_symbol: str = "BTC_USD") -> Decimal:
    """Move the simulator's fair price by `factor`, requote and print a trade there; returns the
    new last trade price."""

    def move() -> Any:
        market = sim.server.market
        inst = sim.server.engine.instruments[venue_symbol]
        market.mid[venue_symbol] = (market.mid[venue_symbol] * Decimal(factor)).quantize(inst.tick_size)
        market._requote(venue_symbol)
        market._noise_trade(inst)
        return sim.server.engine.last_price(venue_symbol)

    return Decimal(sim.thread.call(move))


def sim_balances(trader: Trader) -> dict[str, dict[str, Decimal]]:
    return {c: {k: Decimal(v) for k, v in row.items()} for c, row in trader.venue_state()["balances"].items()}


def market_buy(trader: Trader, quantity: str = "0.01") -> Any:
    """A BTC-USD market buy through the trading API, its executions recorded by reconciliation."""
    response = trader.place(order_type="market", quantity=quantity, price=None)
    assert response.status_code == 201, response.content
    order = order_of(response)
    order_reconcile(order_id=order.pk)
    return order


def get(trader: Trader, path: str) -> dict[str, Any]:
    response = trader.client.get(path)
    assert response.status_code == 200, response.content
    return response.json()["data"]


@pytest.fixture
def trader_usd(make_trader: Callable[..., Trader], frozen: SimHandle) -> Trader:  # noqa: F811
    return make_trader({"USD": "100000", "USDT": "250.5"})
