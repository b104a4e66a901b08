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
from tests.trading.test_relink import relink


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
def test_an_order_of_an_unlinked_account_is_left_out_until_linked_again(
    make_trader: Any, settings: Any
) -> None:
    settings.K2_TRADING_RECONCILE_BATCH = 1
    gone: Trader = make_trader()
    staying: Trader = make_trader()
    orphan = order_of(gone.place())
    kept = order_of(staying.place())
    assert beat() == [orphan.pk]  # the oldest of two never reconciled
    link = ExchangeLink.objects.get(user=gone.user)
    assert gone.client.delete(f"/v1/exchanges/links/{link.pk}").status_code == 204

    assert beat() == [kept.pk]
    assert beat() == [kept.pk]  # K2 holds no credentials to ask about the orphan with
    orphan.refresh_from_db()
    tried = orphan.reconciled_at
    calls = AuditEntry.objects.filter(action="exchange.call").count()
    order_reconcile(order_id=orphan.pk)  # a task queued before the unlink: marked tried, no call
    assert AuditEntry.objects.filter(action="exchange.call").count() == calls
    orphan.refresh_from_db()
    assert orphan.status == "open"  # still resting at that account
    assert tried is not None
    assert orphan.reconciled_at is not None
    assert orphan.reconciled_at > tried

    assert relink(gone, gone.account).status_code == 201  # the same account again: back in the queue
    settings.K2_TRADING_RECONCILE_BATCH = 2
    assert orders_reconcile_ids() == [kept.pk, orphan.pk]  # (the orphan was tried last)


@pytest.mark.django_db
def test_an_order_the_venue_fails_on_goes_to_the_back(make_trader: Any, settings: Any) -> None:
    settings.K2_TRADING_RECONCILE_BATCH = 1
    first: Trader = make_trader()
    second: Trader = make_trader()
    a = order_of(first.place())
    b = order_of(second.place())
    assert beat() == [a.pk]
    assert beat() == [b.pk]
    # Every attempt at the venue fails (the adapter's retries included) for the next read.
    first.sim.fault("http_500", method="private/get-order-detail", count=4)
    assert beat() == [a.pk]
    assert beat() == [b.pk]  # a was tried: b's turn, not a's again
    assert Order.objects.get(pk=b.pk).status == "open"
