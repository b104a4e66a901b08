"""A post-only order that would cross (take liquidity) is refused by its venue: K2 shows it
`rejected` with `POST_ONLY_WOULD_TAKE`, and reconciliation keeps it so. (Kalshi: test_kalshi.)"""

from __future__ import annotations

import pytest

from apps.trading.services import order_reconcile
from tests.trading.conftest import Trader, order_of
from tests.trading.test_kalshi import kalshi, market  # noqa: F401

pytestmark = pytest.mark.django_db


def test_a_crossing_post_only_crypto_order_is_rejected(trader: Trader) -> None:
    response = trader.place(post_only=True, price=str(trader.below_market("1.03")))
    order = order_of(response)
    assert (order.status, order.error_code) == ("rejected", "POST_ONLY_WOULD_TAKE"), response.content
    assert order.filled_quantity == 0
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert (order.status, order.error_code) == ("rejected", "POST_ONLY_WOULD_TAKE")
