"""New credentials for a venue where the user has orders resting: the same account's, never
another's (K2 could no longer cancel those orders nor follow their fills)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.exchanges.models import ExchangeLink
from apps.exchanges.services import link_credentials
from apps.trading.models import Order
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, order_of


def relink(trader: Trader, account: dict[str, Any]) -> Any:
    state = trader.client.get("/v1/auth/link/cryptocom/initiate").json()["data"]["state"]
    body = {"state": state, "api_key": account["api_key"], "api_secret": account["api_secret"]}
    return trader.client.post("/v1/auth/link/cryptocom/callback", body, format="json")


@pytest.mark.django_db
def test_another_account_is_refused_while_orders_rest_and_nothing_changes(trader: Trader) -> None:
    resting = order_of(trader.place())
    assert resting.status == "open"
    other = trader.sim.create_account()

    response = relink(trader, other)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "EXCHANGE_ACCOUNT_CHANGED"
    assert error["details"] == {"exchange": "cryptocom", "open_orders": 1}
    link = ExchangeLink.objects.get(user=trader.user)
    assert link_credentials(link).api_key == trader.account["api_key"]  # the old credentials stay
    failed = AuditEntry.objects.get(action="exchange.link_failed")
    assert failed.details["code"] == "EXCHANGE_ACCOUNT_CHANGED"
    # The order is still K2's to manage: it cancels at the venue that holds it.
    assert trader.client.delete(f"/v1/orders/{resting.pk}").json()["data"]["status"] == "cancelled"
    assert trader.venue_state()["open_orders"] == 0


@pytest.mark.django_db
def test_the_same_account_and_an_account_with_nothing_resting_are_linked(trader: Trader) -> None:
    resting = order_of(trader.place())
    assert relink(trader, trader.account).status_code == 201  # new key, same account: fine
    trader.client.delete(f"/v1/orders/{resting.pk}")
    assert Order.objects.get(pk=resting.pk).status == "cancelled"

    other = trader.sim.create_account()
    assert relink(trader, other).status_code == 201  # nothing resting: any account
    assert link_credentials(ExchangeLink.objects.get(user=trader.user)).api_key == other["api_key"]


@pytest.mark.django_db
def test_after_an_unlink_any_account_may_be_linked(trader: Trader) -> None:
    order_of(trader.place())
    link = ExchangeLink.objects.get(user=trader.user)
    assert trader.client.delete(f"/v1/exchanges/links/{link.pk}").status_code == 204
    other = trader.sim.create_account()
    assert relink(trader, other).status_code == 201
