"""Kalshi faults against the simulator: 429 backoff, 5xx retries of reads, a lost order answer
surfacing as outcome-unknown and found by client order id, shared rate limits, bad credentials."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import Credentials, OrderRequest, OrderStatus, OrderType, Outcome, Side
from apps.exchanges.adapters.kalshi import KalshiSettings, RestSettings
from apps.exchanges.adapters.kalshi.client import tier_rules
from apps.exchanges.adapters.kalshi.signing import generate_private_key_pem
from tests.exchanges.kalshi_fixtures import KALSHI_FAST

D = Decimal


def resting(ticker: str) -> OrderRequest:
    return OrderRequest(
        ticker,
        Side.BUY,
        OrderType.LIMIT,
        D(2),
        f"t-{uuid.uuid4().hex[:16]}",
        price=D("0.01"),
        outcome=Outcome.YES,
    )


async def test_429_is_backed_off_and_retried(kalshi_adapter, kalshi_sim):
    kalshi_sim.fault("http_429", count=2, method="GET /portfolio/balance")
    calls: list[tuple[str, str, str | None]] = []
    kalshi_adapter.rest.on_call = lambda venue, method, ms, outcome, code: calls.append(
        (method, outcome, code)
    )
    (balance,) = await kalshi_adapter.get_balances()
    assert balance.available == D("100000")
    balance_calls = [c for c in calls if c[0] == "GET /portfolio/balance"]
    assert [c[1] for c in balance_calls] == ["error", "error", "ok"]
    assert balance_calls[0][2] == "429"


async def test_429_on_an_order_is_retried_because_nothing_executed(kalshi_adapter, kalshi_sim):
    kalshi_sim.fault("http_429", count=1, method="POST /portfolio/events/orders")
    state = await kalshi_adapter.place_order(resting(kalshi_sim.ticker("KXBTC")))
    assert state.status is OrderStatus.OPEN
    assert kalshi_sim.account_state(kalshi_adapter.credentials.api_key)["orders"] == 1


async def test_5xx_reads_are_retried_but_give_up_eventually(kalshi_adapter, kalshi_sim):
    kalshi_sim.fault("http_500", count=2, method="GET /portfolio/positions")
    assert await kalshi_adapter.get_positions() == []
    kalshi_sim.fault("http_500", count=10, method="GET /portfolio/positions")
    with pytest.raises(ex.ExchangeUnavailable):
        await kalshi_adapter.get_positions()


async def test_lost_order_answer_is_outcome_unknown_then_found_by_client_id(kalshi_adapter, kalshi_sim):
    request = resting(kalshi_sim.ticker("KXBTC", 2))
    kalshi_sim.fault("no_response", method="POST /portfolio/events/orders")
    with pytest.raises(ex.OrderOutcomeUnknown) as caught:
        await kalshi_adapter.place_order(request)
    assert caught.value.client_order_id == request.client_order_id
    assert (
        kalshi_sim.account_state(kalshi_adapter.credentials.api_key)["orders"] == 1
    )  # sent once, never resent
    found = await kalshi_adapter.get_order(client_order_id=request.client_order_id)
    assert found.status is OrderStatus.OPEN
    assert found.quantity == 2


async def test_500_on_an_order_is_outcome_unknown(kalshi_adapter, kalshi_sim):
    request = resting(kalshi_sim.ticker("KXBTC", 2))
    kalshi_sim.fault("http_500", method="POST /portfolio/events/orders")
    with pytest.raises(ex.OrderOutcomeUnknown):
        await kalshi_adapter.place_order(request)
    with pytest.raises(ex.OrderNotFound):  # this time the venue had not executed it
        await kalshi_adapter.get_order(client_order_id=request.client_order_id)


async def test_timeout_on_an_order_is_outcome_unknown(kalshi_adapter, kalshi_sim):
    request = resting(kalshi_sim.ticker("FED"))
    kalshi_sim.fault("latency", method="POST /portfolio/events/orders", latency_ms=2500)
    with pytest.raises(ex.OrderOutcomeUnknown):
        await kalshi_adapter.place_order(request)


async def test_wrong_or_unknown_credentials_are_fatal(make_kalshi_adapter, kalshi_sim, kalshi_account):
    wrong_key = Credentials(api_key=kalshi_account["api_key_id"], api_secret=generate_private_key_pem()[0])
    with pytest.raises(ex.AuthFailed):
        await make_kalshi_adapter(wrong_key).get_balances()
    unknown = Credentials(api_key=str(uuid.uuid4()), api_secret=kalshi_account["private_key_pem"])
    with pytest.raises(ex.AuthFailed):
        await make_kalshi_adapter(unknown).get_positions()
    garbage = Credentials(api_key=kalshi_account["api_key_id"], api_secret="not a pem")
    with pytest.raises(ex.AuthFailed):
        await make_kalshi_adapter(garbage).get_balances()
    with pytest.raises(ex.AuthFailed):  # no credentials at all: the venue says 401
        await make_kalshi_adapter(None).get_fills()


async def test_venue_limits_answer_429_and_the_adapter_stays_under_them(make_kalshi_adapter, kalshi_sim):
    account = kalshi_sim.create_account()
    creds = kalshi_sim.credentials(account)
    unlimited = make_kalshi_adapter(
        creds, settings=KalshiSettings(rest=RestSettings(rate_limits=False, max_attempts=1)), redis=None
    )

    async def burst() -> None:  # basic write bucket: 100 tokens, 10 per order
        for _ in range(15):
            await unlimited.place_order(resting(kalshi_sim.ticker("KXBTC")))

    with pytest.raises(ex.RateLimited):
        await burst()
    limited = make_kalshi_adapter(kalshi_sim.credentials(kalshi_sim.create_account()))
    started = time.monotonic()
    for _ in range(12):  # more than the bucket holds: the shared limiter makes us wait instead
        await limited.place_order(resting(kalshi_sim.ticker("KXBTC")))
    assert time.monotonic() - started >= 0.2


async def test_token_model_is_read_and_write_separately(aioredis):
    rules = tier_rules("basic")
    assert rules["read"].per_second == pytest.approx(160)
    assert rules["read"].capacity == pytest.approx(320)
    assert rules["write"].per_second == pytest.approx(80)
    assert rules["write"].capacity == pytest.approx(80)
    assert KALSHI_FAST.rest.tier == "basic"
