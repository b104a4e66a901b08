"""Which error answers to an order submission leave its outcome unknown, against the simulators.

A proxy or gateway in front of a venue answers 408 (its wait ran out) or 502/504 after it may have
passed the order on: the venue may hold it, so the adapter raises `OrderOutcomeUnknown` (never
resent; reconciled by client order id), not a refusal. The simulator's `timeout_after_execute`
fault with a `status` executes the order, then answers as such a gateway would (an HTML page of
that status). Definite refusals (400, 409, 429 before processing) stay definite.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import Any

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import OrderRequest, OrderStatus, OrderType, Outcome, Side

D = Decimal
KALSHI_CREATE = "POST /portfolio/events/orders"


def add_fault(sim: Any, kind: str, method: str, status: int | None = None, count: int = 1) -> None:
    body: dict[str, Any] = {"kind": kind, "count": count, "method": method}
    if status is not None:
        body["status"] = status
    response = sim.http.post("/_sim/faults", json=body)
    assert response.status_code == 201, response.text


def kalshi_resting(ticker: str, client_order_id: str | None = None) -> OrderRequest:
    return OrderRequest(
        ticker,
        Side.BUY,
        OrderType.LIMIT,
        D(2),
        client_order_id or f"g-{uuid.uuid4().hex[:16]}",
        price=D("0.01"),
        outcome=Outcome.YES,
    )


# ---- Kalshi ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(408, id="gateway-408"),
        pytest.param(502, id="gateway-502"),
        pytest.param(504, id="gateway-504"),
        pytest.param(None, id="venue-504-json"),
    ],
)
async def test_kalshi_gateway_answer_after_the_order_executed_is_outcome_unknown(
    kalshi_adapter, kalshi_sim, status
):
    request = kalshi_resting(kalshi_sim.ticker("KXBTC", 2))
    add_fault(kalshi_sim, "timeout_after_execute", KALSHI_CREATE, status)
    with pytest.raises(ex.OrderOutcomeUnknown) as caught:
        await kalshi_adapter.place_order(request)
    assert caught.value.client_order_id == request.client_order_id
    assert caught.value.http_status == (status or 504)
    state = kalshi_sim.account_state(kalshi_adapter.credentials.api_key)
    assert state["orders"] == 1  # executed once, never resent
    assert state["client_order_ids"] == [request.client_order_id]
    found = await kalshi_adapter.get_order(client_order_id=request.client_order_id)
    assert found.status is OrderStatus.OPEN  # it rests at the venue: "rejected" would be wrong


async def test_kalshi_gateway_408_to_a_read_is_retried(kalshi_adapter, kalshi_sim):
    add_fault(kalshi_sim, "timeout_after_execute", "GET /portfolio/balance", 408)
    calls: list[tuple[str, str, str | None]] = []
    kalshi_adapter.rest.on_call = lambda venue, method, ms, outcome, code: calls.append(
        (method, outcome, code)
    )
    (balance,) = await kalshi_adapter.get_balances()
    assert balance.available == D("100000")
    assert [c[1] for c in calls if c[0] == "GET /portfolio/balance"] == ["error", "ok"]


async def test_kalshi_definite_refusals_of_an_order_stay_definite(kalshi_adapter, kalshi_sim):
    ticker = kalshi_sim.ticker("KXBTC", 2)
    first = kalshi_resting(ticker)
    await kalshi_adapter.place_order(first)
    with pytest.raises(ex.DuplicateOrder) as duplicate:  # 409 order_already_exists
        await kalshi_adapter.place_order(kalshi_resting(ticker, first.client_order_id))
    assert duplicate.value.http_status == 409
    too_big = dataclasses.replace(kalshi_resting(ticker), quantity=D(10_000_000), price=D("0.50"))
    with pytest.raises(ex.InsufficientBalance) as refused:  # 400 insufficient_balance
        await kalshi_adapter.place_order(too_big)
    assert refused.value.http_status == 400
    add_fault(kalshi_sim, "http_429", KALSHI_CREATE, count=10)  # refused before processing
    with pytest.raises(ex.RateLimited):
        await kalshi_adapter.place_order(kalshi_resting(ticker))
    assert kalshi_sim.account_state(kalshi_adapter.credentials.api_key)["orders"] == 1


async def test_kalshi_exchange_paused_is_a_refusal_even_with_a_5xx(kalshi_adapter, kalshi_sim):
    """Kalshi's own `exchange_paused` answer, with HTTP 503, says it took no order: a definite
    refusal. As an unknown outcome it held the order `unknown` until reconciliation found nothing."""
    request = kalshi_resting(kalshi_sim.ticker("KXBTC", 2))
    add_fault(kalshi_sim, "maintenance", KALSHI_CREATE)
    with pytest.raises(ex.ExchangeMaintenance) as caught:
        await kalshi_adapter.place_order(request)
    assert (caught.value.http_status, caught.value.venue_code) == (503, "exchange_paused")
    assert kalshi_sim.account_state(kalshi_adapter.credentials.api_key)["orders"] == 0
    await kalshi_adapter.place_order(request)  # trading again: nothing stands in its way
    assert kalshi_sim.account_state(kalshi_adapter.credentials.api_key)["orders"] == 1


# ---- Crypto.com -----------------------------------------------------------------------------


async def test_cryptocom_maintenance_answer_is_a_refusal_even_with_a_5xx(
    cryptocom_sim, cryptocom_adapter, cryptocom_account
):
    request = OrderRequest(
        "BTC-USD", Side.BUY, OrderType.LIMIT, D("0.001"), f"g-{uuid.uuid4().hex[:16]}", price=D("1000.00")
    )
    add_fault(cryptocom_sim, "maintenance", "private/create-order")
    with pytest.raises(ex.ExchangeMaintenance) as caught:
        await cryptocom_adapter.place_order(request)
    assert caught.value.venue_code == "9010001"
    assert cryptocom_sim.account_state(cryptocom_account["api_key"])["orders"] == 0


async def test_cryptocom_gateway_408_after_the_order_executed_is_outcome_unknown(
    cryptocom_sim, cryptocom_adapter, cryptocom_account
):
    """The venue's own 408 carries its 40801 envelope (tested in tests/trading/test_faults.py); a
    proxy's has none, and was `UnexpectedResponse` rather than an unknown outcome."""
    request = OrderRequest(
        "BTC-USD", Side.BUY, OrderType.LIMIT, D("0.001"), f"g-{uuid.uuid4().hex[:16]}", price=D("1000.00")
    )
    add_fault(cryptocom_sim, "timeout_after_execute", "private/create-order", 408)
    with pytest.raises(ex.OrderOutcomeUnknown) as caught:
        await cryptocom_adapter.place_order(request)
    assert caught.value.client_order_id == request.client_order_id
    assert caught.value.http_status == 408
    state = cryptocom_sim.account_state(cryptocom_account["api_key"])
    assert state["orders"] == 1
    assert state["client_order_ids"] == [request.client_order_id]
    found = await cryptocom_adapter.get_order(client_order_id=request.client_order_id)
    assert found.status is OrderStatus.OPEN


def test_a_gateway_status_is_only_for_timeout_after_execute(kalshi_sim):
    for body in (
        {"kind": "http_500", "status": 502},
        {"kind": "timeout_after_execute", "status": 200},
    ):
        assert kalshi_sim.http.post("/_sim/faults", json=body).status_code == 400
