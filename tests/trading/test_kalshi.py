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


def test_an_order_sent_while_the_exchange_is_paused_is_rejected_at_once(kalshi: Any, trader: Any) -> None:
    """Kalshi answers 503 `exchange_paused`: the order is rejected with EXCHANGE_MAINTENANCE, not
    left `unknown` for reconciliation, and the venue holds nothing."""
    client, account = trader
    instrument, ref = market(kalshi)
    kalshi.fault("maintenance", method="POST /portfolio/events/orders")
    body = {
        "instrument": instrument.symbol,
        "side": "buy",
        "outcome": "yes",
        "order_type": "limit",
        "quantity": "2",
        "price": str((ref - Decimal("0.05")).quantize(CENT)),
        "client_order_id": "kx-paused",
    }
    response = client.post("/v1/orders", body, format="json")
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert (error["code"], error["details"]["venue"]) == ("EXCHANGE_MAINTENANCE", "kalshi")
    order = Order.objects.get(pk=error["details"]["order_id"])
    assert (order.status, order.metadata["rejected_by"]) == ("rejected", "venue")
    assert not AuditEntry.objects.filter(action="order.unknown", target_id=str(order.pk)).exists()
    assert kalshi.account_state(account["api_key_id"])["orders"] == 0


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


def _venue_order(kalshi: Any, account: dict[str, Any], order: Order) -> Any:
    from apps.trading.venue import venue_call

    async def get(adapter: Any) -> Any:
        return await adapter.get_order(venue_order_id=order.exchange_order_id)

    return venue_call("kalshi", get, credentials=kalshi.credentials(account), timeout=5)


@pytest.mark.parametrize(("side", "outcome"), [("buy", "yes"), ("buy", "no"), ("sell", "yes")])
def test_an_event_market_order_goes_out_at_the_fat_finger_protection_price(
    kalshi: Any, trader: Any, side: str, outcome: str, settings: Any
) -> None:
    """A market order on an event contract is an IOC limit at the outcome's latest price plus
    (buy) or minus (sell) the fat-finger band, never at 0.99 or 0.01; a buy is sized at it."""
    from apps.trading.risk import event_market_price_limit

    client, account = trader
    instrument, ref = market(kalshi)
    body = {"instrument": instrument.symbol, "outcome": outcome, "order_type": "market", "quantity": "3"}
    if side == "sell":  # something to sell first
        bought = client.post("/v1/orders", {**body, "side": "buy"}, format="json")
        assert order_of(bought).filled_quantity == 3, bought.content
    response = client.post("/v1/orders", {**body, "side": side}, format="json")
    assert response.status_code == 201, response.content
    order = order_of(response)
    outcome_ref = Decimal(1) - ref if outcome == "no" else ref
    band = Decimal(settings.K2_RISK_FAT_FINGER_CENTS) / 100
    if side == "buy":
        expected = (outcome_ref + band).quantize(CENT, rounding="ROUND_FLOOR")
    else:
        expected = (outcome_ref - band).quantize(CENT, rounding="ROUND_CEILING")
    expected = min(max(expected, Decimal("0.01")), Decimal("0.99"))
    assert expected == event_market_price_limit(side, outcome_ref, Decimal(settings.K2_RISK_FAT_FINGER_CENTS))
    assert Decimal(order.metadata["price_limit"]) == expected
    assert order.price is None  # still a market order to the user
    assert response.json()["data"]["order_type"] == "market"
    venue = _venue_order(kalshi, account, order)
    assert venue.price == expected  # what the venue was sent, in the outcome's terms
    assert order.filled_quantity > 0
    assert order.avg_fill_price is not None
    if side == "buy":
        assert order.avg_fill_price <= expected
        assert order.notional == 3 * expected  # sized at the worst it may cost
    else:
        assert order.avg_fill_price >= expected
        assert order.notional == 3 * outcome_ref


def test_event_market_price_limit_stays_on_the_grid_and_inside_the_contract() -> None:
    from apps.trading.risk import event_market_price_limit

    cents = Decimal("25")
    assert event_market_price_limit("buy", Decimal("0.555"), cents) == Decimal("0.80")  # never past the band
    assert event_market_price_limit("sell", Decimal("0.555"), cents) == Decimal("0.31")
    assert event_market_price_limit("buy", Decimal("0.90"), cents) == Decimal("0.99")
    assert event_market_price_limit("sell", Decimal("0.10"), cents) == Decimal("0.01")


def test_a_crossing_post_only_event_order_is_rejected(kalshi: Any, trader: Any) -> None:
    """Kalshi cancels a post-only order that would cross (`PostOnlyCrossCancel`): K2 shows it
    `rejected` with `POST_ONLY_WOULD_TAKE` from the create answer, and the venue's own order row
    (as the user stream and reconciliation read it) says the same, so whichever comes first the
    order never ends `cancelled`."""
    from apps.exchanges.adapters.base import OrderStatus as VenueStatus

    client, account = trader
    instrument, ref = market(kalshi)
    body = {
        "instrument": instrument.symbol,
        "side": "buy",
        "outcome": "yes",
        "order_type": "limit",
        "post_only": True,
        "quantity": "2",
        "price": str(min(Decimal("0.99"), ref + Decimal("0.10")).quantize(CENT)),
    }
    response = client.post("/v1/orders", body, format="json")
    order = order_of(response)
    assert (order.status, order.error_code) == ("rejected", "POST_ONLY_WOULD_TAKE"), response.content
    assert response.json()["error"]["code"] == "POST_ONLY_WOULD_TAKE"
    venue = _venue_order(kalshi, account, order)
    assert (venue.status, venue.reject_code, venue.filled_quantity) == (
        VenueStatus.REJECTED,
        "POST_ONLY_WOULD_TAKE",
        0,
    )
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert (order.status, order.error_code) == ("rejected", "POST_ONLY_WOULD_TAKE")


def test_a_no_bought_against_a_yes_position_is_recorded_at_the_no_price(kalshi: Any, trader: Any) -> None:
    """Holding YES, buying NO sells YES at the venue, which then describes the order and its fills
    as YES sold at the YES price. K2's order is a NO bought: its fills and average are NO prices
    (1 - the YES price), from the create answer, the fills and reconciliation alike."""
    client, _ = trader
    instrument, ref = market(kalshi)
    base = {"instrument": instrument.symbol, "order_type": "market"}
    held = client.post(
        "/v1/orders", {**base, "side": "buy", "outcome": "yes", "quantity": "5"}, format="json"
    )
    assert order_of(held).filled_quantity == 5, held.content
    response = client.post(
        "/v1/orders", {**base, "side": "buy", "outcome": "no", "quantity": "2"}, format="json"
    )
    order = order_of(response)
    assert order.filled_quantity == 2, response.content
    answered = order.avg_fill_price
    assert answered is not None
    assert abs(answered - (1 - ref)) <= Decimal("0.25"), (answered, ref)  # a NO price, near 1 - ref
    order_reconcile(order_id=order.pk)  # records the fills, reads the order back
    order.refresh_from_db()
    prices = [e.price for e in OrderExecution.objects.filter(order=order)]
    assert prices
    assert all(abs(p - answered) <= CENT for p in prices), (prices, answered)
    assert abs(order.avg_fill_price - answered) <= CENT, (order.avg_fill_price, answered)
