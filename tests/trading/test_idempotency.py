"""client_order_id / Idempotency-Key: one order per key, whatever the retries."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from rest_framework.test import APIClient

from apps.trading.models import Order
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, order_of


@pytest.mark.django_db
def test_same_key_same_body_returns_the_original_without_a_venue_call(trader: Trader) -> None:
    price = str(trader.below_market())
    first = trader.place(client_order_id="abc-1", price=price)
    assert first.status_code == 201
    calls = AuditEntry.objects.filter(action="exchange.call").count()
    again = trader.place(client_order_id="abc-1", price=price)
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    # Decimal spelling does not make a different request.
    spelled = trader.place(client_order_id="abc-1", price=price + "0", quantity="0.0100")
    assert spelled.json()["data"]["id"] == first.json()["data"]["id"]
    assert AuditEntry.objects.filter(action="exchange.call").count() == calls
    assert Order.objects.count() == 1
    assert trader.venue_state()["orders"] == 1


@pytest.mark.django_db
def test_idempotency_key_header(trader: Trader) -> None:
    price = str(trader.below_market())
    first = trader.place(price=price, headers={"Idempotency-Key": "hdr-1"})
    assert first.status_code == 201
    assert first.json()["data"]["client_order_id"] == "hdr-1"
    same = trader.place(price=price, client_order_id="hdr-1")
    assert same.status_code == 200
    mismatch = trader.place(price=price, client_order_id="other", headers={"Idempotency-Key": "hdr-1"})
    assert mismatch.status_code == 400
    assert mismatch.json()["error"]["code"] == "IDEMPOTENCY_KEY_MISMATCH"
    bad = trader.place(price=price, headers={"Idempotency-Key": "has spaces!"})
    assert bad.status_code == 400
    assert Order.objects.count() == 1


@pytest.mark.django_db
def test_same_key_different_body_is_refused(trader: Trader) -> None:
    assert trader.place(client_order_id="k", quantity="0.01").status_code == 201
    response = trader.place(client_order_id="k", quantity="0.02")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert error["details"]["client_order_id"] == "k"
    assert Order.objects.count() == 1
    assert trader.venue_state()["orders"] == 1


@pytest.mark.django_db
def test_keys_are_per_user(trader: Trader, make_trader: Any) -> None:
    other = make_trader()
    a = order_of(trader.place(client_order_id="shared"))
    b = order_of(other.place(client_order_id="shared"))
    assert a.pk != b.pk
    assert a.venue_client_order_id != b.venue_client_order_id


@pytest.mark.django_db
def test_replay_of_a_rejected_order_gives_the_same_rejection(make_trader: Any) -> None:
    trader = make_trader({"USD": "100"})
    price = str(trader.below_market())
    first = trader.place(client_order_id="big", quantity="0.01", price=price)  # beyond the balance
    assert first.status_code == 422
    assert first.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    again = trader.place(client_order_id="big", quantity="0.01", price=price)
    assert again.json()["error"] == first.json()["error"]
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)  # autocommit, as served: no test transaction around it
def test_replays_leave_the_connection_able_to_place_orders(trader: Trader) -> None:
    """A replay's insert fails on the unique key in a pipelined block, and the server skips the
    statement after it; with psycopg's prepared-statement count, that used to leave the
    connection refusing every later order ("prepared statement ... does not exist": a 500)."""
    price = str(trader.below_market())
    assert trader.place(client_order_id="again-1", price=price).status_code == 201
    for _ in range(4):  # past DATABASE_PREPARE_THRESHOLD (2) on this one connection
        assert trader.place(client_order_id="again-1", price=price).status_code == 200
    for n in range(4):
        assert trader.place(client_order_id=f"after-{n}", price=price).status_code == 201
    assert Order.objects.filter(status="open").count() == 5
    assert trader.venue_state()["orders"] == 5


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_posts_make_one_order_and_one_venue_order(trader: Trader) -> None:
    body = {
        "instrument": "BTC-USD",
        "side": "buy",
        "order_type": "limit",
        "quantity": "0.01",
        "price": str(trader.below_market()),
        "client_order_id": "storm-1",
    }

    def post(_: int) -> tuple[int, str]:
        client = APIClient()
        client.force_authenticate(trader.user)
        try:
            response = client.post("/v1/orders", body, format="json")
            return response.status_code, response.json()["data"]["id"]
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, range(20)))

    assert {status for status, _ in results} <= {200, 201}
    assert sum(1 for status, _ in results if status == 201) == 1
    assert len({order_id for _, order_id in results}) == 1
    assert Order.objects.count() == 1
    venue = trader.venue_state()
    assert venue["orders"] == 1
    assert venue["client_order_ids"] == [Order.objects.get().venue_client_order_id]
    assert (
        AuditEntry.objects.filter(action="exchange.call", details__method="private/create-order").count() == 1
    )
