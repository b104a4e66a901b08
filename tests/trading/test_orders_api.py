"""Placing, reading and cancelling orders through the API against the Crypto.com simulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from apps.trading.models import Order, OrderExecution
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, order_of

pytestmark = pytest.mark.django_db


def test_limit_order_rests_open_at_the_venue(trader: Trader) -> None:
    price = trader.below_market()
    response = trader.place(quantity="0.01", price=str(price), client_order_id="my-first-order")
    assert response.status_code == 201, response.content
    data = response.json()["data"]
    assert data["status"] == "open"
    assert data["instrument"] == "BTC-USD"
    assert data["instrument_type"] == "crypto"
    assert data["exchange"] == "cryptocom"
    assert data["side"] == "buy"
    assert data["order_type"] == "limit"
    assert data["quantity"] == "0.01"
    assert Decimal(data["price"]) == price
    assert data["filled_quantity"] == "0"
    assert data["client_order_id"] == "my-first-order"
    assert data["exchange_order_id"]
    assert data["submitted_at"]
    assert data["created_at"]

    order = Order.objects.get(pk=data["id"])
    venue = trader.venue_state()
    assert venue["open_orders"] == 1
    # The venue holds K2's own id (globally unique, <= 36 chars), not the user's key.
    assert venue["client_order_ids"] == [order.venue_client_order_id]
    assert len(order.venue_client_order_id) <= 36

    actions = list(
        AuditEntry.objects.filter(target_id=str(order.pk)).order_by("id").values_list("action", flat=True)
    )
    assert actions[:3] == ["order.created", "order.submitted", "exchange.call"]
    assert "order.open" in actions

    fetched = trader.client.get(f"/v1/orders/{order.pk}").json()["data"]
    assert fetched["status"] == "open"
    listed = trader.client.get("/v1/orders?status=open&exchange=cryptocom&instrument=btc-usd&side=buy").json()
    assert [o["id"] for o in listed["data"]] == [str(order.pk)]


def test_cancel_one_order(trader: Trader) -> None:
    keep = order_of(trader.place())
    gone = order_of(trader.place())
    response = trader.client.delete(f"/v1/orders/{gone.pk}")
    assert response.status_code == 200, response.content
    assert response.json()["data"]["status"] == "cancelled"
    assert response.json()["data"]["cancel_requested_at"]
    gone.refresh_from_db()
    keep.refresh_from_db()
    assert (gone.status, keep.status) == ("cancelled", "open")
    assert gone.closed_at is not None
    assert trader.venue_state()["open_orders"] == 1
    assert AuditEntry.objects.filter(action="order.cancelled", target_id=str(gone.pk)).exists()
    assert AuditEntry.objects.filter(action="trading.domain_event", target_id=str(gone.pk)).exists()

    again = trader.client.delete(f"/v1/orders/{gone.pk}")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ORDER_NOT_CANCELLABLE"


def test_marketable_order_fills_with_fees_and_trades(trader: Trader) -> None:
    from apps.trading.services import order_reconcile

    response = trader.place(order_type="market", quantity="0.01", price=None)
    assert response.status_code == 201, response.content
    order = order_of(response)
    assert response.json()["data"]["status"] == "filled"
    assert Decimal(response.json()["data"]["avg_fill_price"]) > 0
    # Executions come from the user stream or reconciliation (here: reconciliation).
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    executions = list(OrderExecution.objects.filter(order=order))
    assert executions
    assert sum(e.quantity for e in executions) == Decimal("0.01") == order.filled_quantity
    assert all(e.fee > 0 and e.fee_currency for e in executions)
    assert order.fees == sum(e.fee for e in executions)

    body = trader.client.get(f"/v1/orders/{order.pk}/executions").json()["data"]
    assert {row["exchange_exec_id"] for row in body} == {e.exchange_exec_id for e in executions}
    trades = trader.client.get("/v1/trades?instrument=BTC-USD").json()
    assert [t["order_id"] for t in trades["data"]] == [str(order.pk)] * len(executions)
    assert trades["data"][0]["fee_currency"]
    # Running reconciliation again records nothing twice.
    order_reconcile(order_id=order.pk)
    assert OrderExecution.objects.filter(order=order).count() == len(executions)


def test_sell_limit_crossing_the_book_fills(trader: Trader) -> None:
    response = trader.place(side="sell", quantity="0.02", price=str(trader.below_market("0.99")))
    assert response.status_code == 201, response.content
    assert response.json()["data"]["status"] in ("filled", "partial", "open")


def test_other_users_orders_are_invisible(trader: Trader, make_trader: Any) -> None:
    order = order_of(trader.place())
    other = make_trader()
    assert other.client.get(f"/v1/orders/{order.pk}").status_code == 404
    assert other.client.delete(f"/v1/orders/{order.pk}").status_code == 404
    assert other.client.get(f"/v1/orders/{order.pk}/executions").status_code == 404
    assert other.client.get("/v1/orders").json()["data"] == []
    assert other.client.get("/v1/trades").json()["data"] == []
    cancel_all = other.client.delete("/v1/orders?all=true").json()["data"]
    assert cancel_all["requested"] == 0
    order.refresh_from_db()
    assert order.status == "open"


def test_cancel_all_by_instrument(trader: Trader) -> None:
    orders = [order_of(trader.place()) for _ in range(3)]
    response = trader.client.delete("/v1/orders?instrument=BTC-USD")
    assert response.status_code == 200, response.content
    summary = response.json()["data"]
    assert summary["requested"] == 3
    assert sorted(summary["cancelled"]) == sorted(str(o.pk) for o in orders)
    assert trader.venue_state()["open_orders"] == 0
    assert set(Order.objects.values_list("status", flat=True)) == {"cancelled"}
    assert trader.client.delete("/v1/orders").status_code == 400


def test_list_pagination_sort_and_created_range(trader: Trader) -> None:
    ids = [str(order_of(trader.place(quantity=q)).pk) for q in ("0.01", "0.02", "0.03")]
    page = trader.client.get("/v1/orders?limit=2").json()
    assert [o["id"] for o in page["data"]] == ids[::-1][:2]
    cursor = page["meta"]["pagination"]["next_cursor"]
    rest = trader.client.get(f"/v1/orders?limit=2&cursor={cursor}").json()
    assert [o["id"] for o in rest["data"]] == ids[:1]
    by_qty = trader.client.get("/v1/orders?sort=-quantity").json()["data"]
    assert [o["quantity"] for o in by_qty] == ["0.03", "0.02", "0.01"]
    first = Order.objects.get(pk=ids[0]).created_at.isoformat()
    later = trader.client.get("/v1/orders", {"created_after": first}).json()["data"]
    assert len(later) == 3
    none = trader.client.get("/v1/orders", {"created_before": first}).json()["data"]
    assert none == []


def test_cancel_all_reports_an_order_filled_before_the_cancel_as_filled(trader: Trader) -> None:
    """Filled at the venue (K2 not told yet, no stream here): not cancellable, and not pending."""
    from apps.exchanges.adapters.base import Credentials
    from apps.exchanges.adapters.base import OrderRequest as VenueOrder
    from apps.exchanges.adapters.base import OrderType as VenueType
    from apps.exchanges.adapters.base import Side as VenueSide
    from apps.trading.venue import venue_call

    trader.sim.configure(market_auto=False)  # the book holds still: the order stays the best bid
    buyer = Credentials(trader.account["api_key"], trader.account["api_secret"])

    async def best_bid(adapter: Any) -> Decimal:
        return (await adapter.get_order_book("BTC-USD", depth=1)).bids[0].price

    inside = venue_call("cryptocom", best_bid, credentials=buyer, timeout=5) + Decimal("0.01")
    order = order_of(trader.place(price=str(inside), quantity="0.001"))
    assert order.status == "open"  # the best bid, below every ask
    seller = trader.sim.create_account()

    async def sell(adapter: Any) -> Any:
        request = VenueOrder(
            instrument="BTC-USD", side=VenueSide.SELL, order_type=VenueType.LIMIT,
            quantity=Decimal("0.001"), price=inside, client_order_id="hit-the-bid",
        )  # fmt: skip
        return await adapter.place_order(request)

    venue_call("cryptocom", sell, credentials=Credentials(seller["api_key"], seller["api_secret"]), timeout=5)
    assert Order.objects.get(pk=order.pk).status == "open"  # K2 does not know yet

    summary = trader.client.delete("/v1/orders?instrument=BTC-USD").json()["data"]
    assert (summary["filled"], summary["cancelled"], summary["pending"]) == ([str(order.pk)], [], [])
    assert Order.objects.get(pk=order.pk).status == "filled"
