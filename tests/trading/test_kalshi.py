"""Event contracts on Kalshi (its simulator), through the same API: a YES limit order rests open
and cancels; a marketable order fills with executions and fees; the venue is found through the
instrument registry, never by name."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.marketdata.models import Instrument
from apps.trading.models import Order, OrderExecution
from apps.trading.services import order_reconcile
from k2.audit.models import AuditEntry
from tests.trading.conftest import order_of

pytestmark = pytest.mark.django_db

CENT = Decimal("0.01")


@pytest.fixture
def kalshi(settings: Any, kalshi_sim: Any) -> Any:
    settings.K2_KALSHI_REST_URL = kalshi_sim.rest_url
    settings.K2_KALSHI_WS_URL = kalshi_sim.ws_url
    settings.K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS = 5
    settings.K2_TRADING_SUBMIT_TIMEOUT_SECONDS = 3
    settings.K2_TRADING_VENUE_TIMEOUT_SECONDS = 3
    settings.K2_TRADING_RECONCILE_GRACE_SECONDS = 0
    from apps.marketdata.services import instruments_sync

    results = instruments_sync(venue="kalshi")
    assert not isinstance(results["kalshi"], str), results
    return kalshi_sim


@pytest.fixture
def trader(kalshi: Any) -> Any:
    user = User.objects.create_user("event-trader@example.com", "correct horse battery staple")
    account = kalshi.create_account()
    client = APIClient()
    client.force_authenticate(user)
    state = client.get("/v1/auth/link/kalshi/initiate").json()["data"]["state"]
    body = {"state": state, "api_key_id": account["api_key_id"], "private_key": account["private_key_pem"]}
    assert client.post("/v1/auth/link/kalshi/callback", body, format="json").status_code == 201
    return client, account


def market(kalshi: Any) -> tuple[Instrument, Decimal]:
    """An open event market with a price, and its YES reference price."""
    from apps.trading.risk import reference_price

    for instrument in Instrument.objects.filter(venue="kalshi", status="open", instrument_type="event"):
        price, _ = reference_price(instrument)
        if price is not None and Decimal("0.10") <= price <= Decimal("0.90"):
            return instrument, price
    raise AssertionError("no priced open Kalshi market")


def test_yes_limit_order_rests_open_and_cancels(kalshi: Any, trader: Any) -> None:
    client, account = trader
    instrument, ref = market(kalshi)
    price = (ref - Decimal("0.05")).quantize(CENT)
    body = {
        "instrument": instrument.symbol,
        "side": "buy",
        "outcome": "yes",
        "order_type": "limit",
        "quantity": "3",
        "price": str(price),
        "client_order_id": "kx-1",
    }
    response = client.post("/v1/orders", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert (data["status"], data["exchange"], data["instrument_type"], data["outcome"]) == (
        "open",
        "kalshi",
        "event",
        "yes",
    )
    assert Decimal(data["price"]) == price
    order = Order.objects.get(pk=data["id"])
    state = kalshi.account_state(account["api_key_id"])
    assert order.venue_client_order_id in str(state)

    before = AuditEntry.objects.filter(action="exchange.call").count()
    cancelled = client.delete(f"/v1/orders/{order.pk}")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["data"]["status"] == "cancelled"
    # Cancelled and read back by the venue's own id: no scan of the account's order list, which
    # on a busy account may not reach the order.
    calls = AuditEntry.objects.filter(action="exchange.call").order_by("id")[before:]
    assert [c.details["method"] for c in calls] == [
        "DELETE /portfolio/events/orders/{id}",
        "GET /portfolio/orders/{id}",
    ]


def test_event_outcome_and_price_rules(kalshi: Any, trader: Any) -> None:
    client, _ = trader
    instrument, _ = market(kalshi)
    base = {"instrument": instrument.symbol, "side": "buy", "order_type": "limit", "quantity": "1"}
    no_outcome = client.post("/v1/orders", {**base, "price": "0.50"}, format="json")
    assert no_outcome.json()["error"]["code"] == "OUTCOME_REQUIRED"
    too_high = client.post("/v1/orders", {**base, "price": "1.00", "outcome": "yes"}, format="json")
    assert too_high.json()["error"]["code"] == "INVALID_PRICE"
    fat = client.post("/v1/orders", {**base, "price": "0.99", "outcome": "yes"}, format="json")
    fat_no = client.post("/v1/orders", {**base, "price": "0.99", "outcome": "no"}, format="json")
    codes = {fat.json().get("error", {}).get("code"), fat_no.json().get("error", {}).get("code")}
    assert "RISK_FAT_FINGER_PRICE" in codes  # one of the two is far from its YES-equivalent
    assert Order.objects.filter(status="open").count() <= 1


def test_marketable_event_order_fills_with_executions(kalshi: Any, trader: Any) -> None:
    client, _ = trader
    instrument, ref = market(kalshi)
    price = min(Decimal("0.99"), (ref + Decimal("0.10")).quantize(CENT))
    body = {
        "instrument": instrument.symbol,
        "side": "buy",
        "outcome": "yes",
        "order_type": "limit",
        "time_in_force": "ioc",
        "quantity": "2",
        "price": str(price),
    }
    response = client.post("/v1/orders", body, format="json")
    assert response.status_code == 201, response.content
    order = order_of(response)
    assert order.status in ("filled", "partial", "cancelled"), order.status
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert order.filled_quantity > 0
    executions = list(OrderExecution.objects.filter(order=order))
    assert sum(e.quantity for e in executions) == order.filled_quantity
    assert all(Decimal("0.01") <= e.price <= Decimal("0.99") for e in executions)
    assert client.get("/v1/trades?exchange=kalshi").json()["data"]
