"""The shared matching engine, venue-neutral: priority, partial fills, holds, fees, TIF."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from apps.exchanges.simulators.engine import (
    Account,
    EngineReject,
    FillEvent,
    MatchingEngine,
    Reject,
    SimInstrument,
    SimOrder,
    SimSide,
    SimStatus,
)

D = Decimal
_ids = itertools.count(1)


@pytest.fixture
def engine() -> MatchingEngine:
    inst = SimInstrument(
        "BTC_USD",
        "BTC",
        "USD",
        D("0.01"),
        D("0.001"),
        D("0.001"),
        D("100"),
        maker_fee_rate=D("0.001"),
        taker_fee_rate=D("0.002"),
    )
    eng = MatchingEngine([inst])
    for name in ("alice", "bob", "carol"):
        eng.add_account(Account(name, f"key-{name}", "secret", totals={"USD": D("10000"), "BTC": D("10")}))
    return eng


def order(account: str, side: str, qty: str, price: str | None, **kw) -> SimOrder:
    n = str(next(_ids))
    return SimOrder(
        n,
        f"c{n}",
        account,
        "BTC_USD",
        SimSide(side),
        "limit" if price else "market",
        kw.pop("tif", "gtc"),
        D(qty),
        D(price) if price else None,
        **kw,
    )


def test_price_time_priority_and_partial_fills(engine):
    first = engine.submit(order("alice", "sell", "1", "101"))
    second = engine.submit(order("bob", "sell", "1", "101"))
    better = engine.submit(order("carol", "sell", "1", "100.5"))
    taker = engine.submit(order("alice", "buy", "2.5", "101"))
    assert taker.status is SimStatus.ACTIVE  # self-trade: alice's own resting ask was cancelled
    assert better.status is SimStatus.FILLED
    assert first.status is SimStatus.CANCELED
    assert first.reason == Reject.SELF_TRADE.value
    assert second.status is SimStatus.FILLED
    assert taker.filled == D("2")
    assert taker.remaining == D("0.5")
    assert taker.avg_price == (D("100.5") + D("101")) / 2


def test_fees_balances_and_holds(engine):
    engine.submit(order("bob", "sell", "1", "100"))
    alice = engine.accounts["alice"]
    assert engine.accounts["bob"].holds["BTC"] == D("1")
    engine.submit(order("alice", "buy", "1", "100"))
    assert alice.totals["BTC"] == D("11")
    assert alice.totals["USD"] == D("10000") - D("100") - D("0.2")  # taker 0.2 %
    assert engine.accounts["bob"].totals["USD"] == D("10000") + D("100") - D("0.1")  # maker 0.1 %
    assert alice.holds["USD"] == 0
    assert engine.accounts["bob"].holds["BTC"] == 0


def test_cancel_releases_hold(engine):
    resting = engine.submit(order("alice", "buy", "2", "50"))
    assert engine.accounts["alice"].available("USD") == D("10000") - D("100.2")
    engine.cancel("alice", client_oid=resting.client_oid)
    assert engine.accounts["alice"].available("USD") == D("10000")
    with pytest.raises(EngineReject) as info:
        engine.cancel("alice", order_id=resting.order_id)
    assert info.value.reason is Reject.ORDER_NOT_OPEN


def test_tif_post_only_and_validation(engine):
    engine.submit(order("bob", "sell", "1", "100"))
    fok = engine.submit(order("alice", "buy", "2", "100", tif="fok"))
    assert (fok.status, fok.filled) == (SimStatus.CANCELED, 0)
    ioc = engine.submit(order("alice", "buy", "2", "100", tif="ioc"))
    assert (ioc.status, ioc.filled) == (SimStatus.CANCELED, D("1"))
    engine.submit(order("bob", "sell", "1", "100"))
    post = engine.submit(order("alice", "buy", "1", "100", post_only=True))
    assert post.status is SimStatus.REJECTED
    assert post.reason == Reject.POST_ONLY_WOULD_CROSS.value
    for bad, reason in [
        (order("alice", "buy", "0.0005", "100"), Reject.BAD_QUANTITY),
        (order("alice", "buy", "1", "100.001"), Reject.BAD_PRICE),
        (order("alice", "buy", "1000", "100"), Reject.INSUFFICIENT_BALANCE),
        (order("alice", "buy", "1", "100", tif="ioc", post_only=True), Reject.BAD_TIF),
    ]:
        with pytest.raises(EngineReject) as info:
            engine.submit(bad)
        assert info.value.reason is reason
    duplicate = order("alice", "buy", "1", "10")
    engine.submit(duplicate)
    again = order("alice", "buy", "1", "10")
    again.client_oid = duplicate.client_oid
    with pytest.raises(EngineReject) as info:
        engine.submit(again)
    assert info.value.reason is Reject.DUPLICATE_CLIENT_ID


def test_market_order_without_liquidity_and_events(engine):
    with pytest.raises(EngineReject) as info:
        engine.submit(order("alice", "buy", "1", None))
    assert info.value.reason is Reject.NO_LIQUIDITY
    fills = []
    engine.listeners.append(lambda e: fills.append(e) if isinstance(e, FillEvent) else None)
    engine.submit(order("bob", "sell", "1", "100"))
    engine.submit(order("alice", "buy", "0.4", None))
    assert [(f.fill.account_id, f.fill.is_maker, f.fill.quantity) for f in fills] == [
        ("bob", True, D("0.4")),
        ("alice", False, D("0.4")),
    ]
    assert all(isinstance(f.fill.fee, Decimal) for f in fills)
