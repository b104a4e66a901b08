"""The portfolio API against the Crypto.com simulator over real sockets: what it shows agrees with
the simulator's own books, P&L follows the simulator's price, the cache is dropped on fills, and
users only ever see their own portfolio."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from apps.accounts.models import User
from apps.portfolio.services import portfolio_invalidate
from apps.trading.models import OrderExecution
from k2.audit.models import AuditEntry
from tests.portfolio.conftest import CENT, get, market_buy, sim_balances, sim_last, sim_move_price
from tests.trading.conftest import Trader

pytestmark = pytest.mark.django_db(transaction=True)


def money(value: str | None) -> Decimal:
    assert value is not None
    return Decimal(value)


def test_no_linked_venue_is_an_empty_portfolio(api_client: Any, portfolio_settings: Any) -> None:
    user = User.objects.create_user("empty@example.com", "correct horse battery staple")
    api_client.force_authenticate(user)
    summary = api_client.get("/v1/portfolio/summary").json()
    assert set(summary) == {"data", "meta"}
    data = summary["data"]
    assert data["total_value"] == "0"
    assert data["currency"] == "USD"
    assert data["venues"] == []
    assert data["allocation"] == {"by_venue": [], "by_asset": [], "by_instrument_type": []}
    assert api_client.get("/v1/portfolio/balances").json()["data"] == {"balances": [], "venues": []}
    assert api_client.get("/v1/portfolio/positions").json()["data"] == {"positions": [], "venues": []}
    performance = api_client.get("/v1/portfolio/performance?range=1w").json()["data"]
    assert performance["end_value"] == "0"
    assert {p["value"] for p in performance["points"]} == {"0"}
    missing = api_client.get("/v1/portfolio/positions/BTC-USD")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "POSITION_NOT_FOUND"


def test_bad_input_is_a_400(api_client: Any, portfolio_settings: Any) -> None:
    user = User.objects.create_user("bad@example.com", "correct horse battery staple")
    api_client.force_authenticate(user)
    for query in ("range=2d", "range=", "range=ALL", "range=1d%00"):
        response = api_client.get(f"/v1/portfolio/performance?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["code"] == "VALIDATION_ERROR"
        assert "range" in response.json()["error"]["details"]["fields"]
    response = api_client.get("/v1/portfolio/positions?method=lifo")
    assert response.status_code == 400
    assert api_client.get("/v1/portfolio/performance?range=all").status_code == 200


def test_unauthenticated_is_refused(api_client: Any) -> None:
    for path in ("summary", "balances", "positions", "positions/BTC-USD", "performance"):
        response = api_client.get(f"/v1/portfolio/{path}")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def test_after_a_buy_everything_agrees_with_the_simulator_to_the_cent(trader_usd: Trader) -> None:
    order = market_buy(trader_usd, "0.01")
    executions = list(OrderExecution.objects.filter(order=order))
    assert executions
    venue = sim_balances(trader_usd)
    last = sim_last(trader_usd.sim)

    balances = get(trader_usd, "/v1/portfolio/balances")
    assert balances["venues"][0]["status"] == "ok"
    shown = {(b["venue"], b["currency"]): b for b in balances["balances"]}
    assert set(shown) == {("cryptocom", c) for c in venue}
    for currency, row in venue.items():
        mine = shown[("cryptocom", currency)]
        for field in ("total", "available", "on_hold"):
            assert money(mine[field]) == row[field], (currency, field)

    expected_total = venue["USD"]["total"] + venue["USDT"]["total"] + venue["BTC"]["total"] * last
    summary = get(trader_usd, "/v1/portfolio/summary")
    assert abs(money(summary["total_value"]) - expected_total) < CENT
    by_asset = {a["asset"]: money(a["value"]) for a in summary["allocation"]["by_asset"]}
    assert abs(by_asset["BTC"] - venue["BTC"]["total"] * last) < CENT
    assert abs(by_asset["USD"] - venue["USD"]["total"]) < CENT
    by_type = {a["instrument_type"]: money(a["value"]) for a in summary["allocation"]["by_instrument_type"]}
    assert set(by_type) == {"cash", "crypto"}
    assert sum(money(a["percent"]) for a in summary["allocation"]["by_venue"]) == 100

    cost = sum((e.quantity * e.price + e.fee for e in executions), Decimal(0))
    fees = sum((e.fee for e in executions), Decimal(0))
    position = get(trader_usd, "/v1/portfolio/positions/BTC-USD")
    assert position["status"] == "open"
    assert money(position["quantity"]) == venue["BTC"]["total"] == Decimal("0.01")
    assert abs(money(position["cost_basis"]) - cost) < CENT
    assert abs(money(position["average_price"]) - cost / Decimal("0.01")) < CENT
    assert abs(money(position["fees"]) - fees) < CENT
    assert money(position["price"]) == last
    assert abs(money(position["market_value"]) - Decimal("0.01") * last) < CENT
    assert abs(money(position["unrealized_pnl"]) - (Decimal("0.01") * last - cost)) < CENT
    assert money(position["realized_pnl"]) == 0
    # The venue's own read of the books: USD spent = cost basis (fees included).
    assert abs((Decimal("100000") - venue["USD"]["total"]) - cost) < CENT
    listed = get(trader_usd, "/v1/portfolio/positions")["positions"]
    assert [p["instrument"] for p in listed] == ["BTC-USD"]
    # Every venue request the portfolio made is in the audit log, attributed to the user.
    calls = AuditEntry.objects.filter(action="exchange.call", actor_id=trader_usd.user.id)
    assert {c.details["method"] for c in calls} >= {"private/user-balance", "public/get-tickers"}


def test_pnl_moves_with_the_simulator_price_and_a_sell_realises_it(trader_usd: Trader) -> None:
    market_buy(trader_usd, "0.02")
    before = get(trader_usd, "/v1/portfolio/positions/BTC-USD")
    cost = money(before["cost_basis"])

    new_last = sim_move_price(trader_usd.sim, "1.10")
    # A price move is not a fill: the cache still answers until it expires or is dropped.
    assert get(trader_usd, "/v1/portfolio/positions/BTC-USD")["price"] == before["price"]
    portfolio_invalidate(user_id=trader_usd.user.pk)
    after = get(trader_usd, "/v1/portfolio/positions/BTC-USD")
    assert money(after["price"]) == new_last != money(before["price"])
    assert abs(money(after["unrealized_pnl"]) - (Decimal("0.02") * new_last - cost)) < CENT
    assert money(after["unrealized_pnl"]) > money(before["unrealized_pnl"])

    response = trader_usd.place(side="sell", order_type="market", quantity="0.01", price=None)
    assert response.status_code == 201, response.content
    from apps.trading.services import order_reconcile
    from tests.trading.conftest import order_of

    sell = order_of(response)
    order_reconcile(order_id=sell.pk)
    sells = list(OrderExecution.objects.filter(order=sell))
    proceeds = sum((e.quantity * e.price - e.fee for e in sells), Decimal(0))
    closed = get(trader_usd, "/v1/portfolio/positions/BTC-USD")
    assert money(closed["quantity"]) == sim_balances(trader_usd)["BTC"]["total"] == Decimal("0.01")
    assert abs(money(closed["realized_pnl"]) - (proceeds - cost / 2)) < CENT
    assert abs(money(closed["cost_basis"]) - cost / 2) < CENT
    assert money(closed["realized_pnl"]) > 0


def test_cache_serves_repeats_and_fills_drop_it(trader_usd: Trader, settings: Any) -> None:
    settings.K2_PORTFOLIO_CACHE_SECONDS = 60
    first = get(trader_usd, "/v1/portfolio/balances")
    calls = AuditEntry.objects.filter(action="exchange.call", actor_id=trader_usd.user.id).count()
    again = get(trader_usd, "/v1/portfolio/balances")
    assert again["venues"][0]["as_of"] == first["venues"][0]["as_of"]
    assert AuditEntry.objects.filter(action="exchange.call", actor_id=trader_usd.user.id).count() == calls

    market_buy(trader_usd, "0.01")  # the fill (and order updates) invalidate on commit
    after = get(trader_usd, "/v1/portfolio/balances")
    assert after["venues"][0]["as_of"] != first["venues"][0]["as_of"]
    btc = {b["currency"]: b for b in after["balances"]}["BTC"]
    assert money(btc["total"]) == Decimal("0.01")


def test_other_users_see_nothing_of_yours(trader_usd: Trader, make_trader: Callable[..., Trader]) -> None:
    market_buy(trader_usd, "0.01")
    other = make_trader({"USD": "5"})
    summary = get(other, "/v1/portfolio/summary")
    assert money(summary["total_value"]) == Decimal(5)
    assert get(other, "/v1/portfolio/positions")["positions"] == []
    assert {b["currency"] for b in get(other, "/v1/portfolio/balances")["balances"]} == {"USD"}
    assert other.client.get("/v1/portfolio/positions/BTC-USD").status_code == 404
    mine = get(trader_usd, "/v1/portfolio/positions/BTC-USD")
    assert money(mine["quantity"]) == Decimal("0.01")


def test_a_balance_worth_more_than_1e20_is_shown_not_a_500(
    make_trader: Callable[..., Trader], frozen: Any
) -> None:
    """Amounts are strings at 8 decimal places; a holding worth more than 1e20 USD needs more
    than the 28 digits Python's default decimal context gives, and was a 500."""
    trader = make_trader({"USD": "1", "BTC": "1000000000000000000"})  # 1e18 BTC
    balances = get(trader, "/v1/portfolio/balances")["balances"]
    btc = next(b for b in balances if b["currency"] == "BTC")
    assert btc["total"] == "1000000000000000000"
    assert money(btc["value"]) == Decimal(btc["total"]) * money(btc["price"]) > Decimal("1e20")
    summary = get(trader, "/v1/portfolio/summary")
    assert money(summary["total_value"]) > Decimal("1e20")
