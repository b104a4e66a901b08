"""A slow or failing venue never blocks or breaks the portfolio: the answer comes within its bound,
with whatever is known and a clear status for the venue."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest

from apps.portfolio.services import portfolio_invalidate
from tests.portfolio.conftest import get, market_buy
from tests.trading.conftest import Trader

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 0.5


@pytest.fixture
def bounded(settings: Any) -> Any:
    settings.K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS = BOUND
    return settings


def timed(trader: Trader, path: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    data = get(trader, path)
    return data, time.monotonic() - started


def test_slow_venue_serves_the_last_good_answer_marked_stale(trader_usd: Trader, bounded: Any) -> None:
    market_buy(trader_usd, "0.01")
    good = get(trader_usd, "/v1/portfolio/summary")
    assert good["venues"][0]["status"] == "ok"
    portfolio_invalidate(user_id=trader_usd.user.pk)
    trader_usd.sim.fault("latency", count=50, latency_ms=3000)

    summary, elapsed = timed(trader_usd, "/v1/portfolio/summary")
    assert elapsed < BOUND + 0.5, elapsed
    venue = summary["venues"][0]
    assert venue["status"] == "stale"
    assert venue["error_code"] == "EXCHANGE_TIMEOUT"
    assert venue["as_of"] == good["venues"][0]["as_of"]
    assert summary["total_value"] == good["total_value"]
    position = get(trader_usd, "/v1/portfolio/positions/BTC-USD")
    assert position["venue_status"] == "stale"
    assert Decimal(position["quantity"]) == Decimal("0.01")


def test_slow_venue_without_history_is_unavailable_not_an_error(trader_usd: Trader, bounded: Any) -> None:
    trader_usd.sim.fault("latency", count=50, latency_ms=3000)
    balances, elapsed = timed(trader_usd, "/v1/portfolio/balances")
    assert elapsed < BOUND + 0.5, elapsed
    assert balances["balances"] == []
    assert balances["venues"][0]["status"] == "unavailable"
    assert balances["venues"][0]["error_code"] == "EXCHANGE_TIMEOUT"
    summary = get(trader_usd, "/v1/portfolio/summary")
    assert summary["total_value"] == "0"
    assert summary["venues"][0]["status"] == "unavailable"


def test_venue_down_is_unavailable_with_its_code(trader_usd: Trader, bounded: Any, settings: Any) -> None:
    settings.K2_CRYPTOCOM_REST_URL = "http://127.0.0.1:9/exchange/v1"
    summary, elapsed = timed(trader_usd, "/v1/portfolio/summary")
    assert elapsed < BOUND + 0.5, elapsed
    venue = summary["venues"][0]
    assert venue["status"] == "unavailable"
    assert venue["error_code"] in ("EXCHANGE_UNAVAILABLE", "EXCHANGE_TIMEOUT")
    assert venue["as_of"] is None


def test_venue_errors_mark_only_that_venue(trader_usd: Trader, bounded: Any) -> None:
    trader_usd.sim.fault("http_500", count=50)
    summary = get(trader_usd, "/v1/portfolio/summary")
    assert summary["venues"][0]["status"] == "unavailable"
    assert summary["venues"][0]["error_code"] in ("EXCHANGE_UNAVAILABLE", "EXCHANGE_TIMEOUT")


def test_another_account_linked_never_shows_the_previous_accounts_snapshot(
    trader_usd: Trader, bounded: Any
) -> None:
    """Unlinked, then another account linked at the same venue, which then times out: the venue
    is unavailable, not the previous account's holdings marked stale."""
    from apps.exchanges.models import ExchangeLink
    from tests.trading.test_relink import relink

    market_buy(trader_usd, "0.01")
    assert get(trader_usd, "/v1/portfolio/summary")["venues"][0]["status"] == "ok"  # cached
    link = ExchangeLink.objects.get(user=trader_usd.user)
    assert trader_usd.client.delete(f"/v1/exchanges/links/{link.pk}").status_code == 204
    assert relink(trader_usd, trader_usd.sim.create_account({"USD": "5"})).status_code == 201
    trader_usd.sim.fault("latency", count=50, latency_ms=3000)

    summary = get(trader_usd, "/v1/portfolio/summary")
    assert summary["venues"][0]["status"] == "unavailable"
    assert summary["total_value"] == "0"
