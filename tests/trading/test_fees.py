"""An order's fees are in one currency: executions charged in another are never added to them.
Fees are a cost (positive) and a rebate is negative; the order is placed at the Crypto.com
simulator, its fills recorded through `execution_record` as a stream delivers them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.exchanges.adapters.base import Fill, Liquidity, OrderState, OrderStatus, OrderType, Side
from apps.trading.models import Order
from apps.trading.selectors import execution_totals
from apps.trading.services import execution_record, order_apply_venue_state
from tests.trading.conftest import Trader, order_of

pytestmark = pytest.mark.django_db

START = datetime(2026, 1, 1, tzinfo=UTC)


def fill(order: Order, n: int, fee: str, currency: str, liquidity: Liquidity = Liquidity.TAKER) -> Fill:
    """The order's `n`th fill: 0.01 at 60000, `n` seconds after START."""
    return Fill(
        venue_trade_id=f"{order.pk}-T{n}",
        venue_order_id=order.exchange_order_id,
        client_order_id=order.venue_client_order_id,
        instrument=order.instrument,
        side=Side(order.side),
        quantity=Decimal("0.01"),
        price=Decimal("60000"),
        fee=Decimal(fee),
        fee_currency=currency,
        liquidity=liquidity,
        time=START + timedelta(seconds=n),
    )


def record(order: Order, *fills: Fill) -> Order:
    for f in fills:
        assert execution_record(venue="cryptocom", fill=f, source="stream")
    order.refresh_from_db()
    return order


def test_fees_charged_in_another_currency_are_not_added_to_the_orders(trader: Trader) -> None:
    order = order_of(trader.place(quantity="0.03"))
    record(
        order, fill(order, 1, "0.5", "USD"), fill(order, 2, "0.0001", "BTC"), fill(order, 3, "0.25", "USD")
    )

    assert (order.status, order.filled_quantity) == ("filled", Decimal("0.03"))
    assert (order.fees, order.fee_currency) == (Decimal("0.75"), "USD")  # not 0.7501 "USD"
    totals = execution_totals(order_id=order.pk)
    assert (totals.quantity, totals.vwap) == (Decimal("0.03"), Decimal("60000"))
    assert (totals.fees, totals.fee_currency) == (Decimal("0.75"), "USD")
    assert totals.other_fees == (("BTC", Decimal("0.0001")),)
    assert totals.mixed_fee_currencies


def test_the_orders_fee_currency_decides_and_a_rebate_nets_against_costs(trader: Trader) -> None:
    """The venue named the order's fee currency (USD) before any fill: that is the currency of its
    fees, although the first execution was charged in BTC; the USD maker rebate reduces them."""
    order = order_of(trader.place(quantity="0.03"))
    state = OrderState(
        venue_order_id=order.exchange_order_id,
        client_order_id=order.venue_client_order_id,
        instrument=order.instrument,
        side=Side(order.side),
        order_type=OrderType(order.order_type),
        status=OrderStatus.OPEN,
        quantity=order.quantity,
        filled_quantity=Decimal(0),
        price=order.price,
        avg_fill_price=None,
        fees=Decimal(0),
        fee_currency="USD",
        created_at=START,
        updated_at=START,
    )
    order_apply_venue_state(order_id=order.pk, state=state, source="stream")
    order.refresh_from_db()
    assert order.fee_currency == "USD"
    record(
        order,
        fill(order, 1, "0.0001", "BTC"),
        fill(order, 2, "0.5", "USD"),
        fill(order, 3, "-0.2", "USD", Liquidity.MAKER),
    )

    totals = execution_totals(order_id=order.pk)
    assert (totals.quantity, totals.vwap, totals.fees) == (Decimal("0.03"), Decimal("60000"), Decimal("0.3"))
    assert (totals.fee_currency, totals.other_fees) == ("USD", (("BTC", Decimal("0.0001")),))


def test_one_currency_is_not_mixed_and_no_executions_no_fees(trader: Trader) -> None:
    order = order_of(trader.place(quantity="0.03"))
    empty = execution_totals(order_id=order.pk)
    assert (empty.quantity, empty.vwap, empty.fees, empty.fee_currency) == (Decimal(0), None, Decimal(0), "")
    assert not empty.mixed_fee_currencies

    record(order, fill(order, 1, "0.5", "USD"), fill(order, 2, "0.25", "USD"))
    totals = execution_totals(order_id=order.pk)
    assert (totals.fees, totals.fee_currency, totals.other_fees) == (Decimal("0.75"), "USD", ())


def test_a_maker_rebate_lowers_the_orders_fees(trader: Trader) -> None:
    order = order_of(trader.place(quantity="0.02"))
    record(order, fill(order, 1, "0.5", "USD"), fill(order, 2, "-0.2", "USD", Liquidity.MAKER))
    assert execution_totals(order_id=order.pk).fees == Decimal("0.3")
    assert (order.fees, order.fee_currency) == (Decimal("0.3"), "USD")
