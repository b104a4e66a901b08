"""Bad input gets a 4xx envelope with a clear code, never a 500, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from apps.trading.models import Order
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader

pytestmark = pytest.mark.django_db

CASES: list[tuple[dict[str, Any], int, str]] = [
    ({"instrument": "NOPE-USD"}, 422, "INSTRUMENT_NOT_FOUND"),
    ({"side": "hold"}, 400, "VALIDATION_ERROR"),
    ({"order_type": "stop"}, 400, "VALIDATION_ERROR"),
    ({"quantity": "-1"}, 400, "VALIDATION_ERROR"),
    ({"quantity": "0"}, 400, "VALIDATION_ERROR"),
    ({"quantity": "abc"}, 400, "VALIDATION_ERROR"),
    ({"quantity": "0.000000001"}, 400, "VALIDATION_ERROR"),
    ({"quantity": "1" + "0" * 30}, 400, "VALIDATION_ERROR"),
    ({"quantity": "NaN"}, 400, "VALIDATION_ERROR"),
    ({"quantity": "Infinity"}, 400, "VALIDATION_ERROR"),
    ({"quantity": 0.01}, 400, "VALIDATION_ERROR"),  # a JSON fraction: a float, not an amount
    ({"quantity": "\uff10.\uff10\uff11"}, 400, "VALIDATION_ERROR"),  # fullwidth digits: 0.01 to Decimal
    ({"price": "\u0666\u0660\u0660\u0660\u0660"}, 400, "VALIDATION_ERROR"),  # Arabic-Indic 60000
    ({"quantity": True}, 400, "VALIDATION_ERROR"),
    ({"quantity": "0.000001"}, 422, "QUANTITY_BELOW_MINIMUM"),
    ({"quantity": "0.012345"}, 422, "INVALID_QUANTITY_STEP"),
    ({"price": "60000.005"}, 422, "INVALID_TICK_SIZE"),
    ({"price": None}, 422, "PRICE_REQUIRED"),
    ({"order_type": "market", "price": "60000.00"}, 422, "PRICE_NOT_ALLOWED"),
    ({"outcome": "yes"}, 422, "OUTCOME_NOT_ALLOWED"),
    ({"time_in_force": "day"}, 400, "VALIDATION_ERROR"),
    ({"post_only": True, "time_in_force": "ioc"}, 422, "POST_ONLY_NOT_SUPPORTED"),
    ({"client_order_id": "x" * 51}, 400, "VALIDATION_ERROR"),
    ({"client_order_id": "with space"}, 400, "VALIDATION_ERROR"),
    ({"leverage": "100"}, 400, "VALIDATION_ERROR"),
]


@pytest.mark.parametrize(
    ("change", "status", "code"), CASES, ids=[c[2] + "-" + str(i) for i, c in enumerate(CASES)]
)
def test_bad_orders_are_refused_and_store_nothing(
    trader: Trader, change: dict[str, Any], status: int, code: str
) -> None:
    body = {
        "instrument": "BTC-USD",
        "side": "buy",
        "order_type": "limit",
        "quantity": "0.01",
        "price": "60000.00",
    }
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}
    response = trader.client.post("/v1/orders", body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert Order.objects.count() == 0
    assert not AuditEntry.objects.filter(action__startswith="order.").exists()
    assert trader.venue_state()["orders"] == 0


def test_trailing_zeros_are_the_same_amount(trader: Trader) -> None:
    price = f"{trader.below_market()}000000"  # 8 decimal places and more, all zeros
    response = trader.place(quantity="0.0100000000000", price=price)
    assert response.status_code == 201, response.content
    order = response.json()["data"]
    assert (order["quantity"], order["price"]) == ("0.01", price.rstrip("0").rstrip("."))


def test_malformed_bodies_and_ids(trader: Trader) -> None:
    c = trader.client
    assert c.post("/v1/orders", "not json", content_type="application/json").status_code == 400
    assert c.post("/v1/orders", [1, 2], format="json").status_code == 400
    assert c.get("/v1/orders/not-a-uuid").status_code == 404
    assert (
        c.get("/v1/orders/00000000-0000-0000-0000-000000000000").json()["error"]["code"] == "ORDER_NOT_FOUND"
    )
    assert c.get("/v1/orders?status=bogus").status_code == 400
    assert c.get("/v1/orders?created_after=yesterday").status_code == 400
    assert c.get("/v1/orders?sort=-password").status_code == 400
    assert c.get("/v1/orders?cursor=garbage").status_code == 400
    assert c.get("/v1/orders?limit=0").status_code == 400
    assert c.delete("/v1/orders?instrument=" + "X" * 200).status_code == 400
    assert c.put("/v1/orders/00000000-0000-0000-0000-000000000000", {}).status_code == 405
    assert Order.objects.count() == 0


def test_unlinked_venue_and_unauthenticated(make_trader: Any, api_client: Any) -> None:
    from apps.accounts.models import User

    user = User.objects.create_user("nolink@example.com", "correct horse battery staple")
    api_client.force_authenticate(user)
    body = {
        "instrument": "BTC-USD",
        "side": "buy",
        "order_type": "limit",
        "quantity": "0.01",
        "price": "60000.00",
    }
    response = api_client.post("/v1/orders", body, format="json")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "EXCHANGE_NOT_LINKED"
    api_client.force_authenticate(None)
    assert api_client.post("/v1/orders", body, format="json").status_code == 401
    assert api_client.get("/v1/trades").status_code == 401
    assert Order.objects.count() == 0


def test_closed_market_is_refused(trader: Trader) -> None:
    from apps.marketdata.models import Instrument

    Instrument.objects.filter(symbol="BTC-USD").update(status="paused")
    response = trader.place()
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "MARKET_CLOSED"
    assert Order.objects.count() == 0
