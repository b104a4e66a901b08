"""Lost answers, a venue that is down, and a process killed mid-submission: nothing is lost or
doubled, and reconciliation brings every order to the venue's state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.marketdata.models import Instrument
from apps.trading.models import Order
from apps.trading.services import order_reconcile
from apps.trading.tasks import order_reconcile_task, orders_reconcile_task
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, eventually, order_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_lost_answer_makes_unknown_then_reconciliation_settles_it(trader: Trader) -> None:
    trader.sim.fault("no_response", method="private/create-order")
    price = str(trader.below_market())
    response = trader.place(client_order_id="lost-1", price=price)
    assert response.status_code == 201, response.content
    assert response.json()["data"]["status"] == "unknown"
    order = order_of(response)
    assert order.exchange_order_id == ""
    assert AuditEntry.objects.filter(action="order.unknown", target_id=str(order.pk)).exists()
    # The venue did execute it: exactly one venue order, found by K2's client order id.
    assert trader.venue_state()["orders"] == 1

    # Retrying the request never resends it.
    assert trader.place(client_order_id="lost-1", price=price).json()["data"]["status"] == "unknown"
    assert trader.venue_state()["orders"] == 1

    order_reconcile_task(str(order.pk))  # the task body, as a worker runs it
    order.refresh_from_db()
    assert order.status == "open"
    assert order.exchange_order_id
    assert order.reconciled_at is not None
    order_reconcile(order_id=order.pk)  # idempotent
    order.refresh_from_db()
    assert order.status == "open"
    assert trader.venue_state()["orders"] == 1


@pytest.mark.django_db
def test_the_venues_own_timeout_error_is_unknown_not_rejected(trader: Trader) -> None:
    """Crypto.com answers 40801 REQUEST_TIMEOUT with HTTP 408 (spec), having carried the order
    out all the same: the order is `unknown` (never `rejected`, which would let the user place it
    again beside a live one) and reconciliation finds it open."""
    trader.sim.fault("timeout_after_execute", method="private/create-order")
    response = trader.place(client_order_id="timed-out-1")
    assert response.status_code == 201, response.content
    order = order_of(response)
    assert order.status == "unknown", (order.status, order.error_code)
    assert trader.venue_state()["orders"] == 1
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == "open"
    assert trader.venue_state()["orders"] == 1


@pytest.mark.django_db
def test_lost_answer_for_a_marketable_order_reconciles_to_filled(trader: Trader) -> None:
    trader.sim.fault("no_response", method="private/create-order")
    order = order_of(trader.place(order_type="market", price=None))
    assert order.status == "unknown"
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert order.status == "filled"
    assert order.executions.count() >= 1
    assert sum(e.quantity for e in order.executions.all()) == order.filled_quantity == order.quantity


@pytest.mark.django_db
def test_5xx_on_submit_is_unknown_and_an_order_the_venue_never_got_is_rejected(trader: Trader) -> None:
    trader.sim.fault("http_500", method="private/create-order")
    order = order_of(trader.place())
    assert order.status == "unknown"
    assert trader.venue_state()["orders"] == 0
    order_reconcile(order_id=order.pk)  # grace period 0 in tests
    order.refresh_from_db()
    assert order.status == "rejected"
    assert order.error_code == "NOT_FOUND_AT_VENUE"
    assert trader.venue_state()["orders"] == 0


@pytest.mark.django_db
def test_venue_down_rejects_with_exchange_unavailable_and_leaves_nothing_pending(
    trader: Trader, settings: Any
) -> None:
    settings.K2_CRYPTOCOM_REST_URL = "http://127.0.0.1:9/exchange/v1"
    response = trader.place(client_order_id="down-1")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "EXCHANGE_UNAVAILABLE"
    order = Order.objects.get(pk=error["details"]["order_id"])
    assert order.status == "rejected"
    assert order.error_code == "EXCHANGE_UNAVAILABLE"
    assert not Order.objects.exclude(status="rejected").exists()


@pytest.mark.django_db
def test_venue_refusal_is_a_rejection_with_the_venue_code(make_trader: Any, settings: Any) -> None:
    trader = make_trader({"USD": "100"})
    settings.K2_RISK_FEE_BUFFER_PERCENT = "-100"  # let the order past our own balance check
    response = trader.place(quantity="0.01")  # ~600 USD: the venue (the final guard) says no
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "INSUFFICIENT_BALANCE"
    order = order_of(response)
    assert (order.status, order.metadata["rejected_by"]) == ("rejected", "venue")


@pytest.mark.django_db
def test_stale_pending_order_is_abandoned_without_a_venue_call(trader: Trader) -> None:
    from apps.trading.services import OrderInput, _order_create

    instrument = Instrument.objects.get(symbol="BTC-USD")
    data = OrderInput(
        instrument="BTC-USD",
        side="buy",
        order_type="limit",
        quantity=Decimal("0.01"),
        price=trader.below_market(),
    )
    order, _ = _order_create(user=trader.user, data=data, instrument=instrument, fingerprint="x", actor=None)
    calls = AuditEntry.objects.filter(action="exchange.call").count()
    orders_reconcile_task()  # beat: fans out (to the broker); run the one task inline
    order_reconcile_task(str(order.pk))
    order.refresh_from_db()
    assert (order.status, order.error_code) == ("rejected", "SUBMISSION_ABANDONED")
    assert AuditEntry.objects.filter(action="exchange.call").count() == calls


PLACE_SCRIPT = """
import django, sys
django.setup()
from decimal import Decimal
from apps.accounts.models import User
from apps.trading.services import OrderInput, order_place
user = User.objects.get(pk=sys.argv[1])
print("placing", flush=True)
order_place(user=user, data=OrderInput(instrument="BTC-USD", side="buy", order_type="limit",
            quantity=Decimal("0.01"), price=Decimal(sys.argv[2]), client_order_id="killed-1"))
print("done", flush=True)
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("fault", "executed", "final"),
    [("no_response", True, "open"), ("latency", False, "rejected")],
    ids=["venue-got-it", "venue-never-got-it"],
)
def test_process_killed_mid_submission_loses_nothing(
    trader: Trader, settings: Any, fault: str, executed: bool, final: str
) -> None:
    """A worker dies (kill -9) while its create-order request is in flight: the order is left
    `submitted`; reconciliation, run afterwards, finds it at the venue by K2's id (or learns the
    venue never got it) and the order ends in the venue's state, with at most one venue order."""
    trader.sim.fault(fault, method="private/create-order", latency_ms=3000)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "K2_CRYPTOCOM_REST_URL": settings.K2_CRYPTOCOM_REST_URL,
        "K2_ENV": "test",
        "DJANGO_SETTINGS_MODULE": "k2.settings",
    }
    price = str(trader.below_market())
    proc = subprocess.Popen(
        [sys.executable, "-c", PLACE_SCRIPT, str(trader.user.pk), price],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually(lambda: Order.objects.filter(client_order_id="killed-1", status="submitted").exists(), 20)
        time.sleep(0.5)  # the create-order request is now in flight (held by the fault)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    order = Order.objects.get(client_order_id="killed-1")
    assert order.status == "submitted"
    assert order.exchange_order_id == ""
    assert trader.venue_state()["orders"] == int(executed)
    order_reconcile_task(str(order.pk))
    order_reconcile_task(str(order.pk))  # a redelivered task changes nothing
    order.refresh_from_db()
    assert order.status == final
    venue = trader.venue_state()
    assert venue["orders"] == int(executed)
    if executed:
        assert order.exchange_order_id
        assert venue["client_order_ids"] == [order.venue_client_order_id]
    else:
        assert order.error_code == "NOT_FOUND_AT_VENUE"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["one", "all"])
def test_a_cancel_asked_for_while_the_order_is_being_sent_is_carried_out(trader: Trader, how: str) -> None:
    """The cancel arrives while create-order is in flight: the venue has nothing to cancel yet
    and the answer is 202; once the venue's answer shows the order resting, it is cancelled."""
    trader.sim.fault("latency", method="private/create-order", latency_ms=1500)
    placed: dict[str, Any] = {}

    def place() -> None:
        from django.db import connections

        try:
            placed["response"] = trader.place(client_order_id="in-flight-1")
        finally:
            connections.close_all()

    thread = threading.Thread(target=place)
    thread.start()
    try:
        eventually(
            lambda: Order.objects.filter(client_order_id="in-flight-1", status="submitted").exists(), 10
        )
        order = Order.objects.get(client_order_id="in-flight-1")
        if how == "one":
            response = trader.client.delete(f"/v1/orders/{order.pk}")
            assert response.status_code == 202, response.content
            assert response.json()["data"]["status"] == "submitted"
        else:
            response = trader.client.delete("/v1/orders?instrument=BTC-USD")
            assert response.json()["data"]["pending"] == [str(order.pk)]
    finally:
        thread.join(20)
    assert placed["response"].json()["data"]["status"] == "cancelled"
    order.refresh_from_db()
    assert order.status == "cancelled"
    venue = trader.venue_state()
    assert (venue["orders"], venue["open_orders"]) == (1, 0)


@pytest.mark.django_db
def test_reconciliation_finds_an_orders_fills_behind_later_trades(trader: Trader) -> None:
    """No stream ran, and the account traded the instrument 120 times since: the order's fills
    are further back than one page of the venue's trade list. Reconciliation pages back to them."""
    from apps.exchanges.adapters.base import Credentials
    from apps.exchanges.adapters.base import OrderRequest as VenueOrder
    from apps.exchanges.adapters.base import OrderType as VenueType
    from apps.exchanges.adapters.base import Side as VenueSide
    from apps.trading.venue import venue_call

    trader.sim.configure(rate_limits=False)
    order = order_of(trader.place(order_type="market", price=None, quantity="0.01"))
    assert (order.status, order.executions.count()) == ("filled", 0)
    credentials = Credentials(trader.account["api_key"], trader.account["api_secret"])

    async def trade_since(adapter: Any) -> int:
        for i in range(120):
            request = VenueOrder(
                instrument="BTC-USD", side=VenueSide.BUY, order_type=VenueType.MARKET,
                quantity=Decimal("0.001"), client_order_id=f"later-{i}",
            )  # fmt: skip
            await adapter.place_order(request)
        return len(await adapter.get_fills("BTC-USD", limit=100))

    assert venue_call("cryptocom", trade_since, credentials=credentials, timeout=30) == 100
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert sum(e.quantity for e in order.executions.all()) == order.filled_quantity == Decimal("0.01")
