"""Every Kalshi adapter call against the simulator over real sockets."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    InstrumentStatus,
    InstrumentType,
    OrderRequest,
    OrderStatus,
    OrderType,
    Outcome,
    Side,
    TimeInForce,
)

D = Decimal


def oid() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


def order(ticker: str, side: Side, outcome: Outcome, qty: str, price: str, **kw) -> OrderRequest:
    return OrderRequest(ticker, side, OrderType.LIMIT, D(qty), oid(), price=D(price), outcome=outcome, **kw)


async def test_catalogue_series_events_markets(kalshi_adapter, kalshi_sim):
    instruments = {i.symbol: i for i in await kalshi_adapter.get_instruments()}
    btc = kalshi_sim.ticker("KXBTC", 1)
    assert set(kalshi_sim.tickers) == set(instruments)
    inst = instruments[btc]
    assert inst.instrument_type is InstrumentType.EVENT
    assert inst.status is InstrumentStatus.OPEN
    assert inst.tick_size == D("0.01")
    assert inst.quantity_step == 1
    assert inst.event_ticker == btc.rsplit("-", 1)[0]
    assert inst.close_time is not None
    assert inst.close_time.tzinfo is not None

    series = {s.ticker: s for s in await kalshi_adapter.get_series()}
    assert {"KXBTC", "KXHIGHNY", "FED"} <= set(series)
    assert series["FED"].fee_type == "quadratic_with_maker_fees"
    events = {e.event_ticker: e for e in await kalshi_adapter.get_events(series_ticker="KXBTC")}
    event = events[inst.event_ticker]
    assert event.mutually_exclusive
    assert len(event.markets) == 4
    assert {m.venue_status for m in event.markets} == {"active"}
    one = await kalshi_adapter.get_event(inst.event_ticker)
    assert [m.ticker for m in one.markets] == [m.ticker for m in event.markets]
    markets = await kalshi_adapter.get_markets(event_ticker=inst.event_ticker, status="open")
    assert len(markets) == 4
    assert all(m.result is None for m in markets)


async def test_ticker_book_trades_candles(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 1)
    ticker = await kalshi_adapter.get_ticker(btc)
    assert ticker.bid is not None
    assert ticker.ask is not None
    assert D("0.01") <= ticker.bid < ticker.ask <= D("0.99")
    book = await kalshi_adapter.get_order_book(btc, depth=3)
    assert len(book.bids) == 3
    assert len(book.asks) == 3
    assert book.bids[0].price > book.bids[1].price
    assert book.asks[0].price < book.asks[1].price
    assert book.bids[0].price < book.asks[0].price  # asks are NO bids at 1 - price
    tickers = await kalshi_adapter.get_tickers([btc, kalshi_sim.ticker("FED")])
    assert {t.instrument for t in tickers} == {btc, kalshi_sim.ticker("FED")}
    trades = await kalshi_adapter.get_trades(btc, limit=5)
    assert len(trades) == 5
    assert all(D("0") < t.price < 1 for t in trades)
    candles = await kalshi_adapter.get_candles(btc, "1m", limit=10)
    assert candles
    assert all(c.low <= c.open <= c.high for c in candles)
    with pytest.raises(ex.InstrumentNotFound):
        await kalshi_adapter.get_ticker("KXNOPE-99JAN01-T1")


async def test_resting_order_holds_then_cancel(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 1)
    before = (await kalshi_adapter.get_balances())[0]
    assert before.currency == "USD"
    assert before.available == D("100000")
    assert before.on_hold == 0
    request = order(btc, Side.BUY, Outcome.YES, "10", "0.01")
    state = await kalshi_adapter.place_order(request)
    assert state.status is OrderStatus.OPEN
    assert state.outcome is Outcome.YES
    held = (await kalshi_adapter.get_balances())[0]
    assert held.on_hold == D("0.11")  # 10 x $0.01 + the worst-case taker fee (1 cent)
    assert held.available == D("100000") - D("0.11")
    assert held.total == D("100000")
    open_orders = await kalshi_adapter.get_open_orders(btc)
    assert [o.client_order_id for o in open_orders] == [request.client_order_id]
    by_id = await kalshi_adapter.get_order(venue_order_id=state.venue_order_id)
    assert (by_id.price, by_id.quantity, by_id.side, by_id.outcome) == (D("0.01"), 10, Side.BUY, Outcome.YES)
    await kalshi_adapter.cancel_order(client_order_id=request.client_order_id)
    done = await kalshi_adapter.get_order(client_order_id=request.client_order_id)
    assert done.status is OrderStatus.CANCELLED
    assert (await kalshi_adapter.get_balances())[0].available == D("100000")
    with pytest.raises(ex.OrderNotOpen):
        await kalshi_adapter.cancel_order(venue_order_id=state.venue_order_id)
    with pytest.raises(ex.OrderNotFound):
        await kalshi_adapter.get_order(client_order_id="never-sent")
    history = await kalshi_adapter.get_order_history(btc)
    assert [o.venue_order_id for o in history] == [state.venue_order_id]


async def test_buy_yes_then_sell_closes_with_fees_and_fills(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 1)
    buy = await kalshi_adapter.place_order(
        order(btc, Side.BUY, Outcome.YES, "10", "0.99", time_in_force=TimeInForce.IOC)
    )
    assert buy.status is OrderStatus.FILLED
    assert buy.filled_quantity == 10
    price = buy.avg_fill_price
    assert price is not None
    assert D("0.03") <= price <= D("0.99")
    positions = await kalshi_adapter.get_positions()
    assert [(p.instrument, p.quantity, p.outcome) for p in positions] == [(btc, D(10), Outcome.YES)]
    fills = await kalshi_adapter.get_fills(btc)
    assert sum(f.quantity for f in fills) == 10
    assert all(f.outcome is Outcome.YES and f.side is Side.BUY and f.fee > 0 for f in fills)
    assert buy.fees == sum(f.fee for f in fills)
    sell = await kalshi_adapter.place_order(
        order(btc, Side.SELL, Outcome.YES, "10", "0.01", time_in_force=TimeInForce.IOC)
    )
    assert sell.status is OrderStatus.FILLED
    assert await kalshi_adapter.get_positions() == []
    history = await kalshi_adapter.get_order(venue_order_id=sell.venue_order_id)
    assert (history.side, history.outcome) == (Side.SELL, Outcome.YES)  # read back as it was meant


async def test_buy_no_is_an_ask_in_yes_terms(kalshi_adapter, kalshi_sim):
    fed = kalshi_sim.ticker("FED", 1)
    book = await kalshi_adapter.get_order_book(fed, depth=1)
    best_yes_bid = book.bids[0].price
    state = await kalshi_adapter.place_order(
        order(fed, Side.BUY, Outcome.NO, "3", "0.99", time_in_force=TimeInForce.FOK)
    )
    assert state.status is OrderStatus.FILLED
    assert state.outcome is Outcome.NO
    assert state.avg_fill_price is not None
    assert state.avg_fill_price >= 1 - best_yes_bid - D("0.02")
    (position,) = await kalshi_adapter.get_positions()
    assert (position.quantity, position.outcome) == (D(-3), Outcome.NO)
    (fill, *_) = await kalshi_adapter.get_fills(fed)
    assert fill.outcome is Outcome.NO
    assert fill.side is Side.BUY
    assert fill.price == state.avg_fill_price


async def test_post_only_fok_reduce_only_and_rejections(kalshi_adapter, kalshi_sim):
    btc = kalshi_sim.ticker("KXBTC", 0)
    crossed = await kalshi_adapter.place_order(order(btc, Side.BUY, Outcome.YES, "1", "0.99", post_only=True))
    assert crossed.status is OrderStatus.REJECTED
    assert crossed.reason == "PostOnlyCrossCancel"
    fok = await kalshi_adapter.place_order(
        order(btc, Side.BUY, Outcome.YES, "100000", "0.99", time_in_force=TimeInForce.FOK)
    )
    assert fok.status is OrderStatus.CANCELLED
    assert fok.filled_quantity == 0
    with pytest.raises(ex.InvalidOrder):  # nothing to reduce
        await kalshi_adapter.place_order(order(btc, Side.SELL, Outcome.YES, "1", "0.01", reduce_only=True))
    await kalshi_adapter.place_order(
        order(btc, Side.BUY, Outcome.YES, "2", "0.99", time_in_force=TimeInForce.IOC)
    )
    reduced = await kalshi_adapter.place_order(
        order(btc, Side.SELL, Outcome.YES, "5", "0.01", reduce_only=True, time_in_force=TimeInForce.IOC)
    )
    assert reduced.filled_quantity == 2  # capped to the position
    with pytest.raises(ex.InvalidOrder):
        await kalshi_adapter.place_order(order(btc, Side.BUY, Outcome.YES, "1", "1.20"))
    with pytest.raises(ex.InvalidOrder):
        await kalshi_adapter.place_order(
            OrderRequest(btc, Side.BUY, OrderType.LIMIT, D(1), oid(), price=D("0.5"))  # no outcome
        )
    dup = order(btc, Side.BUY, Outcome.YES, "1", "0.01")
    await kalshi_adapter.place_order(dup)
    with pytest.raises(ex.DuplicateOrder):
        await kalshi_adapter.place_order(dup)
    await kalshi_adapter.cancel_all_orders(btc)
    assert await kalshi_adapter.get_open_orders() == []


async def test_insufficient_balance(make_kalshi_adapter, kalshi_sim):
    poor = kalshi_sim.credentials(kalshi_sim.create_account({"USD": "1"}))
    adapter = make_kalshi_adapter(poor)
    with pytest.raises(ex.InsufficientBalance) as caught:
        await adapter.place_order(order(kalshi_sim.ticker("KXBTC"), Side.BUY, Outcome.YES, "100", "0.50"))
    assert caught.value.code == "INSUFFICIENT_BALANCE"


async def test_market_order_is_a_marketable_ioc(kalshi_adapter, kalshi_sim):
    nyc = kalshi_sim.ticker("KXHIGHNY")
    request = OrderRequest(nyc, Side.BUY, OrderType.MARKET, D(4), oid(), outcome=Outcome.YES)
    state = await kalshi_adapter.place_order(request)
    assert state.status is OrderStatus.FILLED
    assert state.filled_quantity == 4


async def test_closed_market_refuses_orders(kalshi_adapter, kalshi_sim):
    nyc = kalshi_sim.ticker("KXHIGHNY", 1)
    resting = await kalshi_adapter.place_order(order(nyc, Side.BUY, Outcome.YES, "2", "0.01"))
    kalshi_sim.close_market(nyc)
    with pytest.raises(ex.MarketClosed) as caught:
        await kalshi_adapter.place_order(order(nyc, Side.BUY, Outcome.YES, "1", "0.50"))
    assert caught.value.code == "MARKET_CLOSED"
    assert (
        await kalshi_adapter.get_order(venue_order_id=resting.venue_order_id)
    ).status is OrderStatus.CANCELLED
    (market,) = [m for m in await kalshi_adapter.get_markets(status="closed") if m.ticker == nyc]
    assert market.status is InstrumentStatus.CLOSED


async def test_settlement_pays_one_dollar_per_winning_contract(kalshi_adapter, kalshi_sim):
    yes_market, no_market = kalshi_sim.ticker("KXBTC", 2), kalshi_sim.ticker("KXBTC", 3)
    await kalshi_adapter.place_order(
        order(yes_market, Side.BUY, Outcome.YES, "5", "0.99", time_in_force=TimeInForce.IOC)
    )
    await kalshi_adapter.place_order(
        order(no_market, Side.BUY, Outcome.YES, "3", "0.99", time_in_force=TimeInForce.IOC)
    )
    before = (await kalshi_adapter.get_balances())[0].available
    kalshi_sim.settle(yes_market, "yes")
    kalshi_sim.settle(no_market, "no")
    after = (await kalshi_adapter.get_balances())[0].available
    assert after - before == D("5.00")
    assert await kalshi_adapter.get_positions() == []
    settlements = {s.instrument: s for s in await kalshi_adapter.get_settlements()}
    assert settlements[yes_market].revenue == D(5)
    assert settlements[yes_market].result is Outcome.YES
    assert settlements[yes_market].yes_count == 5
    assert settlements[no_market].revenue == 0
    assert settlements[no_market].result is Outcome.NO
    market = await kalshi_adapter.get_market(yes_market)
    assert (market.venue_status, market.status, market.result) == (
        "finalized",
        InstrumentStatus.SETTLED,
        Outcome.YES,
    )
    assert market.settle_time is not None
    assert await kalshi_adapter.get_fills(yes_market)  # settlements are not fills
    assert all(f.instrument != yes_market or f.side is Side.BUY for f in await kalshi_adapter.get_fills())


async def test_legacy_cents_shape_parses_the_same(kalshi_adapter, kalshi_sim):
    kalshi_sim.configure(legacy_cents=True)
    btc = kalshi_sim.ticker("KXBTC", 1)
    state = await kalshi_adapter.place_order(
        order(btc, Side.BUY, Outcome.YES, "2", "0.99", time_in_force=TimeInForce.IOC)
    )
    again = await kalshi_adapter.get_order(venue_order_id=state.venue_order_id)
    assert again.filled_quantity == 2
    assert again.avg_fill_price == state.avg_fill_price
    raw = kalshi_sim.http.get(f"/trade-api/v2/markets/{btc}").json()["market"]
    assert isinstance(raw["yes_bid"], int)
    assert raw["yes_bid_dollars"].endswith("00")
