"""Admin smoke tests: every trading ModelAdmin's changelist, search and change page; the cancel
and reconcile actions go through the same services as the API."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.models import User
from apps.trading.models import KillSwitch, Order, OrderExecution, RiskLimit
from apps.trading.services import order_reconcile
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, order_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Any) -> Any:
    admin = User.objects.create_superuser("ops@example.com", "correct horse battery staple")
    client.force_login(admin)
    return client


@pytest.fixture
def filled(trader: Trader) -> Order:
    order = order_of(trader.place(order_type="market", price=None))
    order_reconcile(order_id=order.pk)
    assert OrderExecution.objects.filter(order=order).exists()
    return order


def test_order_admin(admin_client: Any, trader: Trader, filled: Order) -> None:
    assert admin_client.get("/admin/trading/order/").status_code == 200
    for term in (
        trader.user.email,
        filled.client_order_id,
        filled.venue_client_order_id,
        filled.exchange_order_id,
        "BTC-USD",
    ):
        page = admin_client.get("/admin/trading/order/", {"q": term})
        assert page.status_code == 200
        assert str(filled.pk) in page.content.decode(), term
    assert (
        admin_client.get(
            "/admin/trading/order/", {"status__exact": "filled", "exchange": "cryptocom"}
        ).status_code
        == 200
    )
    change = admin_client.get(f"/admin/trading/order/{filled.pk}/change/")
    assert change.status_code == 200
    assert filled.executions.first().exchange_exec_id in change.content.decode()  # type: ignore[union-attr]
    assert admin_client.get("/admin/trading/order/add/").status_code == 403


def test_order_admin_cancel_and_reconcile_actions(admin_client: Any, trader: Trader) -> None:
    order = order_of(trader.place())
    response = admin_client.post(
        "/admin/trading/order/", {"action": "reconcile_orders", "_selected_action": [str(order.pk)]}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.reconciled_at is not None
    response = admin_client.post(
        "/admin/trading/order/", {"action": "cancel_orders", "_selected_action": [str(order.pk)]}
    )
    assert response.status_code == 302
    order.refresh_from_db()
    assert order.status == "cancelled"
    entry = AuditEntry.objects.get(action="order.cancelled", target_id=str(order.pk))
    assert entry.actor_label == "ops@example.com"
    assert trader.venue_state()["open_orders"] == 0


def test_execution_admin(admin_client: Any, filled: Order) -> None:
    execution = filled.executions.first()
    assert execution is not None
    assert admin_client.get("/admin/trading/orderexecution/").status_code == 200
    page = admin_client.get("/admin/trading/orderexecution/", {"q": execution.exchange_exec_id})
    assert str(execution.pk) in page.content.decode()
    assert admin_client.get(f"/admin/trading/orderexecution/{execution.pk}/change/").status_code == 200


def test_risk_limit_admin(admin_client: Any, trader: Trader) -> None:
    response = admin_client.post(
        "/admin/trading/risklimit/add/",
        {
            "user": str(trader.user.pk),
            "instrument_type": "crypto",
            "max_order_notional": "100",
            "note": "new client",
        },
    )
    assert response.status_code == 302, response.content
    row = RiskLimit.objects.get()
    assert admin_client.get("/admin/trading/risklimit/").status_code == 200
    assert admin_client.get("/admin/trading/risklimit/", {"q": trader.user.email}).status_code == 200
    assert admin_client.get(f"/admin/trading/risklimit/{row.pk}/change/").status_code == 200
    assert trader.place().json()["error"]["code"] == "RISK_MAX_NOTIONAL"
    added = AuditEntry.objects.get(action="trading.risklimit_saved")
    assert added.details["created"] is True
    assert added.details["values"]["max_order_notional"] == {"from": None, "to": "100"}
    assert added.details["values"]["user"] == {"from": None, "to": str(trader.user.pk)}

    form = {
        "user": str(trader.user.pk),
        "instrument_type": "crypto",
        "max_order_notional": "250.50",
        "note": "new client",
    }
    response = admin_client.post(f"/admin/trading/risklimit/{row.pk}/change/", form)
    assert response.status_code == 302, response.content
    changed = AuditEntry.objects.filter(action="trading.risklimit_saved").order_by("-created_at")[0]
    assert changed.details["changed"] == ["max_order_notional"]
    assert changed.details["values"] == {"max_order_notional": {"from": "100.00000000", "to": "250.50"}}


def test_kill_switch_admin(admin_client: Any, trader: Trader) -> None:
    switch = KillSwitch.objects.create(scope="user", user=trader.user, mode="halt", reason="review")
    assert admin_client.get("/admin/trading/killswitch/").status_code == 200
    assert admin_client.get("/admin/trading/killswitch/", {"q": "review"}).status_code == 200
    assert admin_client.get(f"/admin/trading/killswitch/{switch.pk}/change/").status_code == 200
    bad = admin_client.post(
        "/admin/trading/killswitch/add/",
        {"scope": "venue", "venue": "", "mode": "halt", "active": "on", "reason": "x"},
    )
    assert bad.status_code == 200  # the form shows the constraint error; nothing is saved
    assert KillSwitch.objects.count() == 1
