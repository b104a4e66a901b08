"""Which orders the reconciliation beat takes, `K2_TRADING_RECONCILE_BATCH` at a time: an order
whose outcome is in doubt before resting ones, and no order, however hopeless, holding the
others up."""

from __future__ import annotations

from typing import Any

import pytest

from apps.exchanges.models import ExchangeLink
from apps.trading.models import Order
from apps.trading.services import order_reconcile, orders_reconcile_ids
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, order_of


def beat() -> list[Any]:
    """One beat: the batch it picks, each reconciled as its task would."""
    ids = orders_reconcile_ids()
    for order_id in ids:
        order_reconcile(order_id=order_id)
    return ids


@pytest.mark.django_db
def test_an_order_in_doubt_is_taken_before_resting_ones(trader: Trader, settings: Any) -> None:
    settings.K2_TRADING_RECONCILE_BATCH = 2
    resting = [order_of(trader.place()) for _ in range(2)]
    assert beat() == [o.pk for o in resting]  # both reconciled once: still open at the venue
    trader.sim.fault("no_response", method="private/create-order")
    doubtful = order_of(trader.place())
    assert doubtful.status == "unknown"  # never reconciled yet

    assert orders_reconcile_ids()[0] == doubtful.pk
    beat()
    doubtful.refresh_from_db()
    assert doubtful.status == "open"
    assert trader.venue_state()["orders"] == 3


@pytest.mark.django_db
def test_an_order_of_an_unlinked_account_does_not_hold_up_the_queue(make_trader: Any, settings: Any) -> None:
    settings.K2_TRADING_RECONCILE_BATCH = 1
    gone: Trader = make_trader()
    staying: Trader = make_trader()
    orphan = order_of(gone.place())
    beat()  # the orphan-to-be, reconciled first (the oldest)
    kept = order_of(staying.place())
    beat()
    kept.refresh_from_db()
    seen = kept.reconciled_at
    assert seen is not None
    link = ExchangeLink.objects.get(user=gone.user)
    assert gone.client.delete(f"/v1/exchanges/links/{link.pk}").status_code == 204
    calls = AuditEntry.objects.filter(action="exchange.call").count()

    assert beat() == [orphan.pk]  # no credentials: skipped, no venue call, and to the back
    assert AuditEntry.objects.filter(action="exchange.call").count() == calls
    assert beat() == [kept.pk]
    kept.refresh_from_db()
    assert kept.reconciled_at is not None
    assert kept.reconciled_at > seen
    assert Order.objects.get(pk=orphan.pk).status == "open"  # still resting at that account
