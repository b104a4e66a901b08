"""Both venues: a BTC-USD buy on the Crypto.com simulator and a Kalshi YES buy on the Kalshi
simulator, both through the trading API; the portfolio agrees with both simulators, values the
YES contracts at the market's price, turns settlement into realised P&L, and keeps answering
with one venue slow."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from apps.exchanges.calls import run_venue_call
from apps.trading.models import OrderExecution
from apps.trading.services import order_reconcile
from tests.exchanges.kalshi_fixtures import KalshiSimHandle, kalshi_sim, kalshi_sim_thread  # noqa: F401
from tests.portfolio.conftest import CENT, get, market_buy, sim_balances, sim_last
from tests.trading.conftest import Trader, order_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def both(trader_usd: Trader, kalshi_sim: KalshiSimHandle, settings: Any) -> tuple[Trader, Any]:  # noqa: F811
    settings.K2_KALSHI_REST_URL = kalshi_sim.rest_url
    settings.K2_KALSHI_WS_URL = kalshi_sim.ws_url
    kalshi_sim.configure(market_auto=False)
    from apps.marketdata.services import instruments_sync

    result = instruments_sync(venue="kalshi")
    assert not isinstance(result["kalshi"], str), result
    account = kalshi_sim.create_account()
    state = trader_usd.client.get("/v1/auth/link/kalshi/initiate").json()["data"]["state"]
    body = {"state": state, "api_key_id": account["api_key_id"], "private_key": account["private_key_pem"]}
    response = trader_usd.client.post("/v1/auth/link/kalshi/callback", body, format="json")
    assert response.status_code == 201, response.content
    return trader_usd, {"sim": kalshi_sim, "account": account}


def yes_ask(ticker: str) -> Decimal:
    ticker_row = run_venue_call("kalshi", lambda a: a.get_ticker(ticker))
    assert ticker_row.ask is not None
    return ticker_row.ask


def kalshi_buy_yes(trader: Trader, ticker: str, contracts: str = "10") -> Any:
    price = yes_ask(ticker)
    response = trader.place(
        instrument=ticker, side="buy", outcome="yes", order_type="limit", quantity=contracts, price=str(price)
    )
    assert response.status_code == 201, response.content
    order = order_of(response)
    order_reconcile(order_id=order.pk)
    assert OrderExecution.objects.filter(order=order).exists()
    return order


def kalshi_cash(kalshi: dict[str, Any]) -> Decimal:
    state = kalshi["sim"].account_state(kalshi["account"]["api_key_id"])
    return Decimal(str(state["balances"]["USD"]["total"]))


def test_both_venues_agree_with_the_simulators_and_settlement_realises(both: tuple[Trader, Any]) -> None:
    trader, kalshi = both
    ticker = kalshi["sim"].ticker("KXBTC", 1)
    market_buy(trader, "0.01")
    order = kalshi_buy_yes(trader, ticker, "10")
    executions = list(OrderExecution.objects.filter(order=order))
    cost = sum((e.quantity * e.price + e.fee for e in executions), Decimal(0))
    contracts = sum((e.quantity for e in executions), Decimal(0))

    summary = get(trader, "/v1/portfolio/summary")
    assert {v["venue"]: v["status"] for v in summary["venues"]} == {"cryptocom": "ok", "kalshi": "ok"}
    position = get(trader, f"/v1/portfolio/positions/{ticker}")
    assert position["instrument_type"] == "event"
    assert position["outcome"] == "yes"
    assert position["status"] == "open"
    assert Decimal(position["quantity"]) == contracts
    assert Decimal(position["max_payout"]) == contracts
    assert abs(Decimal(position["cost_basis"]) - cost) < CENT
    yes_price = Decimal(position["price"])
    assert 0 < yes_price < 1
    assert abs(Decimal(position["market_value"]) - contracts * yes_price) < CENT

    cash = kalshi_cash(kalshi)
    balances = {(b["venue"], b["currency"]): b for b in get(trader, "/v1/portfolio/balances")["balances"]}
    assert Decimal(balances[("kalshi", "USD")]["total"]) == cash
    crypto = sim_balances(trader)
    expected = (
        crypto["USD"]["total"]
        + crypto["USDT"]["total"]
        + crypto["BTC"]["total"] * sim_last(trader.sim)
        + cash
        + contracts * yes_price
    )
    assert abs(Decimal(summary["total_value"]) - expected) < CENT
    types = {a["instrument_type"] for a in summary["allocation"]["by_instrument_type"]}
    assert types == {"cash", "crypto", "event"}

    kalshi["sim"].settle(ticker, "yes")
    from apps.portfolio.services import portfolio_invalidate

    portfolio_invalidate(user_id=trader.user.pk)  # a settlement is not a K2 fill
    settled = get(trader, f"/v1/portfolio/positions/{ticker}")
    assert settled["status"] == "settled"
    assert settled["result"] == "yes"
    assert Decimal(settled["quantity"]) == 0
    assert abs(Decimal(settled["settlement_pnl"]) - (contracts - cost)) < CENT
    assert abs(Decimal(settled["realized_pnl"]) - (contracts - cost)) < CENT
    # Performance: the settlement is in today's range, and not in a day's range two days on.
    day = get(trader, "/v1/portfolio/performance?range=1d")
    assert abs(Decimal(day["settlement_pnl"]) - (contracts - cost)) < CENT
    from datetime import UTC, datetime, timedelta

    from apps.portfolio import performance, selectors

    later = performance.performance_get(
        portfolio=selectors.portfolio_get(user=trader.user),
        range_name="1d",
        now=datetime.now(UTC) + timedelta(days=2),
    )
    assert (later["realized_pnl"], later["settlement_pnl"]) == (0, 0)
    assert Decimal(settled["market_value"]) == 0
    # The payout is now cash at the venue, and the portfolio says so.
    assert kalshi_cash(kalshi) == cash + contracts
    balances = {(b["venue"], b["currency"]): b for b in get(trader, "/v1/portfolio/balances")["balances"]}
    assert Decimal(balances[("kalshi", "USD")]["total"]) == cash + contracts


def test_one_slow_venue_does_not_hold_the_other(both: tuple[Trader, Any], settings: Any) -> None:
    trader, kalshi = both
    settings.K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS = 0.5
    kalshi["sim"].fault("latency", count=50, latency_ms=3000)
    started = time.monotonic()
    summary = get(trader, "/v1/portfolio/summary")
    assert time.monotonic() - started < 1.0
    status = {v["venue"]: v for v in summary["venues"]}
    assert status["cryptocom"]["status"] == "ok"
    assert status["kalshi"]["status"] == "unavailable"
    assert status["kalshi"]["error_code"] == "EXCHANGE_TIMEOUT"
    assert abs(Decimal(summary["total_value"]) - Decimal("100250.5")) < CENT
