"""The order state machine: legal moves only, never backwards, every move audited; fills exactly
once whatever the order and number of messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.exchanges.adapters.base import Fill, Liquidity, OrderState, OrderStatus, OrderType, Side
from apps.trading.choices import OrderStatus as S
from apps.trading.models import Order
from apps.trading.services import execution_record, order_apply_venue_state
from apps.trading.state import TRANSITIONS, can_transition
from k2.audit.models import AuditEntry
from tests.trading.conftest import Trader, order_of

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_transition_table() -> None:
    assert can_transition(S.PENDING, S.SUBMITTED)
    assert can_transition(S.SUBMITTED, S.UNKNOWN)
    assert can_transition(S.UNKNOWN, S.FILLED)
    assert can_transition(S.OPEN, S.PARTIAL)
    assert not can_transition(S.PENDING, S.OPEN)  # nothing is open before it was sent
    assert not can_transition(S.PARTIAL, S.OPEN)  # never backwards
    assert not can_transition(S.OPEN, S.UNKNOWN)
    assert not can_transition(S.OPEN, S.REJECTED)
    for terminal in (S.FILLED, S.CANCELLED, S.REJECTED):
        assert TRANSITIONS[terminal] == frozenset()
        assert not any(can_transition(terminal, s) for s in S.values)
    assert can_transition(S.REJECTED, S.OPEN, error_code="NOT_FOUND_AT_VENUE")


def state(order: Order, status: OrderStatus, filled: str = "0", avg: str | None = None) -> OrderState:
    return OrderState(
        venue_order_id=order.exchange_order_id or "V1",
        client_order_id=order.venue_client_order_id,
        instrument=order.instrument,
        side=Side(order.side),
        order_type=OrderType(order.order_type),
        status=status,
        quantity=order.quantity,
        filled_quantity=Decimal(filled),
        price=order.price,
        avg_fill_price=Decimal(avg) if avg else None,
        fees=Decimal(0),
        fee_currency=None,
        created_at=NOW,
        updated_at=NOW,
    )


def fill(order: Order, trade_id: str, quantity: str, price: str = "60000") -> Fill:
    return Fill(
        venue_trade_id=trade_id,
        venue_order_id=order.exchange_order_id,
        client_order_id=order.venue_client_order_id,
        instrument=order.instrument,
        side=Side(order.side),
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal("0.5"),
        fee_currency="USD",
        liquidity=Liquidity.MAKER,
        time=NOW,
    )


@pytest.mark.django_db
def test_late_and_duplicate_messages_never_regress(trader: Trader) -> None:
    order = order_of(trader.place(quantity="0.03"))
    assert order.status == "open"
    assert execution_record(venue="cryptocom", fill=fill(order, "T1", "0.01", "60000"), source="stream")
    assert not execution_record(venue="cryptocom", fill=fill(order, "T1", "0.01", "60000"), source="stream")
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("partial", Decimal("0.01"))

    # A late "open, nothing filled" must not take it back.
    order_apply_venue_state(order_id=order.pk, state=state(order, OrderStatus.OPEN), source="stream")
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("partial", Decimal("0.01"))

    assert execution_record(venue="cryptocom", fill=fill(order, "T2", "0.02", "60003"), source="stream")
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("filled", Decimal("0.03"))
    assert order.avg_fill_price == Decimal("60002")
    assert order.fees == Decimal("1")
    assert order.closed_at is not None

    # After filled, a stale partial or even a cancel changes nothing.
    order_apply_venue_state(
        order_id=order.pk, state=state(order, OrderStatus.PARTIALLY_FILLED, "0.01"), source="stream"
    )
    order_apply_venue_state(
        order_id=order.pk, state=state(order, OrderStatus.CANCELLED, "0.01"), source="stream"
    )
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("filled", Decimal("0.03"))

    moves = list(
        AuditEntry.objects.filter(target_id=str(order.pk), action__startswith="order.")
        .exclude(action__in=["order.created", "order.execution"])
        .order_by("id")
        .values_list("details__from", "details__to")
    )
    assert moves == [
        ("pending", "submitted"),
        ("submitted", "open"),
        ("open", "partial"),
        ("partial", "filled"),
    ]
    assert AuditEntry.objects.filter(target_id=str(order.pk), action="order.execution").count() == 2


@pytest.mark.django_db
def test_fill_numbers_only_grow_and_never_exceed_the_quantity(trader: Trader) -> None:
    order = order_of(trader.place(quantity="0.02"))
    s = state(order, OrderStatus.PARTIALLY_FILLED, "0.015", "60000")
    order_apply_venue_state(order_id=order.pk, state=s, source="stream")
    order_apply_venue_state(
        order_id=order.pk, state=replace(s, filled_quantity=Decimal("0.005")), source="stream"
    )
    order.refresh_from_db()
    assert order.filled_quantity == Decimal("0.015")
    order_apply_venue_state(
        order_id=order.pk,
        state=replace(s, status=OrderStatus.FILLED, filled_quantity=Decimal("9")),
        source="stream",
    )
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("filled", Decimal("0.02"))


@pytest.mark.django_db
def test_a_fill_for_an_order_k2_did_not_place_is_ignored(trader: Trader) -> None:
    order = order_of(trader.place())
    stranger = replace(fill(order, "X1", "0.01"), venue_order_id="someone-else", client_order_id="not-ours")
    assert not execution_record(venue="cryptocom", fill=stranger, source="stream")


@pytest.mark.django_db
def test_a_not_found_rejection_is_corrected_when_the_venue_shows_the_order(trader: Trader) -> None:
    from apps.trading.services import order_reconcile

    trader.sim.fault("http_500", method="private/create-order")
    order = order_of(trader.place())
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert order.error_code == "NOT_FOUND_AT_VENUE"
    order_apply_venue_state(order_id=order.pk, state=state(order, OrderStatus.OPEN), source="stream")
    order.refresh_from_db()
    assert (order.status, order.error_code) == ("open", "")
    assert AuditEntry.objects.filter(action="order.corrected", target_id=str(order.pk)).exists()


@pytest.mark.django_db
def test_a_fill_corrects_a_not_found_rejection_which_stays_in_reconciliation_meanwhile(
    trader: Trader,
) -> None:
    from apps.trading.services import order_reconcile, orders_reconcile_ids

    trader.sim.fault("http_500", method="private/create-order")
    order = order_of(trader.place(quantity="0.01"))
    order_reconcile(order_id=order.pk)
    order.refresh_from_db()
    assert (order.status, order.error_code) == ("rejected", "NOT_FOUND_AT_VENUE")
    assert order.pk in orders_reconcile_ids()  # for a day: if the venue ever shows it
    assert execution_record(venue="cryptocom", fill=fill(order, "T-NF", "0.004"), source="stream")
    order.refresh_from_db()
    assert (order.status, order.error_code, order.filled_quantity) == ("partial", "", Decimal("0.004"))
    assert AuditEntry.objects.filter(action="order.corrected", target_id=str(order.pk)).exists()


@pytest.mark.django_db
def test_the_average_fill_price_is_the_fills_once_all_are_recorded(trader: Trader) -> None:
    """An order message may carry the final count without an average (or a rounded one): the
    recorded fills' average stands once they account for the whole count."""
    order = order_of(trader.place(quantity="0.03"))
    assert execution_record(venue="cryptocom", fill=fill(order, "A1", "0.01", "60000"), source="stream")
    filled = state(order, OrderStatus.FILLED, "0.03")  # the final count, no average
    order_apply_venue_state(order_id=order.pk, state=filled, source="stream")
    assert execution_record(venue="cryptocom", fill=fill(order, "A2", "0.02", "60003"), source="stream")
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("filled", Decimal("0.03"))
    assert order.avg_fill_price == Decimal("60002")


def submitted(trader: Trader, client_order_id: str) -> Order:
    """An order as the risk check leaves it for the venue call (no venue order yet)."""
    return Order.objects.create(
        user=trader.user,
        client_order_id=client_order_id,
        request_fingerprint="f" * 64,
        exchange="cryptocom",
        instrument="BTC-USD",
        instrument_type="crypto",
        side="buy",
        order_type="limit",
        quantity=Decimal("0.03"),
        price=Decimal("60000"),
        status=S.SUBMITTED,
    )


def calls_of(order: Order) -> list[str]:
    entries = AuditEntry.objects.filter(target_id=str(order.pk)).order_by("id")
    return list(entries.values_list("action", flat=True))


@pytest.mark.django_db
def test_a_submit_answer_is_one_statement_while_the_row_is_as_written(trader: Trader) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.exchanges.calls import CallRecorder

    written = submitted(trader, "as-written")
    calls = CallRecorder()
    calls("cryptocom", "place_order", 3.2, "ok", None)
    with CaptureQueriesContext(connection) as queries:
        applied = order_apply_venue_state(
            order_id=written.pk, state=state(written, OrderStatus.NEW), source="submit", calls=calls,
            written=written,
        )  # fmt: skip
    assert len(queries) == 1
    assert applied is not None
    assert applied.status == "open"
    assert written.status == "submitted"  # the caller's copy is left as it was
    stored = Order.objects.get(pk=written.pk)
    assert (stored.status, stored.exchange_order_id, stored.updated_at) == ("open", "V1", applied.updated_at)
    assert calls_of(written) == ["exchange.call", "order.open"]
    assert calls.calls == []


@pytest.mark.django_db
def test_a_submit_answer_after_a_stream_message_is_recorded_on_the_locked_row(trader: Trader) -> None:
    from apps.exchanges.calls import CallRecorder

    written = submitted(trader, "stream-first")
    written.exchange_order_id = "V1"  # as the venue's fill message names it
    # the user stream's fill arrives before the venue's answer to the submit
    assert execution_record(venue="cryptocom", fill=fill(written, "T1", "0.01"), source="stream")
    calls = CallRecorder()
    calls("cryptocom", "place_order", 3.2, "ok", None)
    applied = order_apply_venue_state(
        order_id=written.pk, state=state(written, OrderStatus.NEW), source="submit", calls=calls,
        written=written,
    )  # fmt: skip
    assert applied is not None
    assert (applied.status, applied.filled_quantity) == ("partial", Decimal("0.01"))  # not back to open
    stored = Order.objects.get(pk=written.pk)
    assert (stored.status, stored.filled_quantity) == ("partial", Decimal("0.01"))
    # the venue call is audited once, with the answer, on the locked path
    assert calls_of(written) == ["order.execution", "order.partial", "exchange.call"]
