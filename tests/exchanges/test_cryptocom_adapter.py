"""Every adapter call against the Crypto.com simulator over real sockets."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    Credentials,
    InstrumentType,
    Liquidity,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)


def oid() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


def limit(side: Side, qty: str, price: Decimal | str, **kw) -> OrderRequest:
    return OrderRequest("BTC-USD", side, OrderType.LIMIT, Decimal(qty), oid(), price=Decimal(price), **kw)


async def far_bid(adapter) -> Decimal:
    ticker = await adapter.get_ticker("BTC-USD")
    return (ticker.bid * Decimal("0.8")).quantize(Decimal("0.01"))


async def test_instruments(cryptocom_adapter):
    instruments = {i.symbol: i for i in await cryptocom_adapter.get_instruments()}
    assert {"BTC-USD", "ETH-USD", "SOL-USD"} <= set(instruments)
    btc = instruments["BTC-USD"]
    assert btc.venue_symbol == "BTC_USD"
    assert btc.instrument_type is InstrumentType.CRYPTO
    assert (btc.base, btc.quote) == ("BTC", "USD")
    assert btc.tick_size == Decimal("0.01")
    assert btc.quantity_step == Decimal("0.00001")


async def test_tickers_book_trades_candles(cryptocom_adapter):
    ticker = await cryptocom_adapter.get_ticker("ETH-USD")
    assert ticker.instrument == "ETH-USD"
    assert ticker.bid is not None
    assert ticker.ask is not None
    assert ticker.bid < ticker.ask
    assert isinstance(ticker.last, Decimal)
    assert ticker.time.tzinfo is UTC
    tickers = await cryptocom_adapter.get_tickers()
    assert {t.instrument for t in tickers} >= {"BTC-USD", "ETH-USD", "SOL-USD"}
    assert [t.instrument for t in await cryptocom_adapter.get_tickers(["SOL-USD", "BTC-USD"])] == [
        "BTC-USD",
        "SOL-USD",
    ]

    book = await cryptocom_adapter.get_order_book("BTC-USD", depth=5)
    assert len(book.bids) == 5
    assert len(book.asks) == 5
    assert book.bids[0].price > book.bids[-1].price
    assert book.asks[0].price < book.asks[-1].price
    assert book.bids[0].price < book.asks[0].price

    trades = await cryptocom_adapter.get_trades("BTC-USD", limit=10)
    assert len(trades) == 10
    assert trades[0].time >= trades[-1].time
    assert all(t.instrument == "BTC-USD" and t.price > 0 for t in trades)

    candles = await cryptocom_adapter.get_candles("BTC-USD", "5m", limit=6)
    assert 1 <= len(candles) <= 6
    assert all(c.low <= c.open <= c.high and c.low <= c.close <= c.high for c in candles)
    assert candles == sorted(candles, key=lambda c: c.start)
    end = candles[-1].start
    window = await cryptocom_adapter.get_candles("BTC-USD", "1m", start=end - timedelta(minutes=30), end=end)
    assert window
    assert all(end - timedelta(minutes=31) <= c.start < end for c in window)


async def test_unknown_instrument(cryptocom_adapter):
    with pytest.raises(ex.InstrumentNotFound):
        await cryptocom_adapter.get_order_book("DOGE-USD")


async def test_balances_and_positions(cryptocom_adapter):
    balances = {b.currency: b for b in await cryptocom_adapter.get_balances()}
    assert balances["USD"].total == Decimal("1000000")
    assert balances["BTC"].available == Decimal("10")
    assert await cryptocom_adapter.get_positions() == []


async def test_limit_order_lifecycle(cryptocom_adapter):
    price = await far_bid(cryptocom_adapter)
    request = limit(Side.BUY, "0.01", price)
    ack = await cryptocom_adapter.place_order(request)
    assert ack.status is OrderStatus.NEW
    assert ack.venue_order_id
    assert ack.client_order_id == request.client_order_id

    by_id = await cryptocom_adapter.get_order(venue_order_id=ack.venue_order_id)
    by_client = await cryptocom_adapter.get_order(client_order_id=request.client_order_id)
    assert by_id == by_client
    assert by_id.status is OrderStatus.OPEN
    assert by_id.price == price
    assert by_id.quantity == Decimal("0.01")

    balances = {b.currency: b for b in await cryptocom_adapter.get_balances()}
    assert balances["USD"].on_hold >= price * Decimal("0.01")

    open_orders = await cryptocom_adapter.get_open_orders("BTC-USD")
    assert [o.venue_order_id for o in open_orders] == [ack.venue_order_id]

    await cryptocom_adapter.cancel_order(venue_order_id=ack.venue_order_id)
    cancelled = await cryptocom_adapter.get_order(venue_order_id=ack.venue_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert {b.currency: b for b in await cryptocom_adapter.get_balances()}["USD"].on_hold == 0
    with pytest.raises(ex.OrderNotOpen):
        await cryptocom_adapter.cancel_order(venue_order_id=ack.venue_order_id)


async def test_cancel_by_client_id_and_cancel_all(cryptocom_adapter):
    price = await far_bid(cryptocom_adapter)
    first, second, third = (limit(Side.BUY, "0.001", price) for _ in range(3))
    for request in (first, second, third):
        await cryptocom_adapter.place_order(request)
    await cryptocom_adapter.cancel_order(client_order_id=first.client_order_id)
    assert len(await cryptocom_adapter.get_open_orders()) == 2
    await cryptocom_adapter.cancel_all_orders("BTC-USD")
    assert await cryptocom_adapter.get_open_orders() == []
    history = await cryptocom_adapter.get_order_history("BTC-USD")
    assert {o.client_order_id for o in history} == {r.client_order_id for r in (first, second, third)}
    assert all(o.status is OrderStatus.CANCELLED for o in history)


async def test_market_order_fills_with_fees(cryptocom_adapter):
    before = {b.currency: b for b in await cryptocom_adapter.get_balances()}
    request = OrderRequest("BTC-USD", Side.BUY, OrderType.MARKET, Decimal("0.02"), oid())
    ack = await cryptocom_adapter.place_order(request)
    order = await cryptocom_adapter.get_order(venue_order_id=ack.venue_order_id)
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity == Decimal("0.02")
    assert order.fees > 0
    assert order.fee_currency == "USD"

    fills = await cryptocom_adapter.get_fills("BTC-USD", start=datetime.now(UTC) - timedelta(minutes=5))
    assert fills
    assert all(f.venue_order_id == ack.venue_order_id for f in fills)
    assert sum(f.quantity for f in fills) == Decimal("0.02")
    assert sum(f.fee for f in fills) == order.fees
    assert all(f.fee > 0 and f.liquidity and f.liquidity.value == "taker" for f in fills)
    cost = sum(f.price * f.quantity for f in fills) + order.fees

    after = {b.currency: b for b in await cryptocom_adapter.get_balances()}
    assert after["BTC"].total - before["BTC"].total == Decimal("0.02")
    assert before["USD"].total - after["USD"].total == cost


async def test_maker_rebate_is_a_negative_fee_in_order_and_fills(cryptocom_sim, make_cryptocom_adapter):
    """A venue paying makers (negative maker rate) writes the rebate with the opposite sign of a
    fee: positive in the trade's `fees`, negative in the order's `cumulative_fee`. K2 reads both as
    the same negative fee, and the maker's USD grows by the rebate."""
    cryptocom_sim.configure(market_auto=False)
    engine = cryptocom_sim.server.engine
    rate = Decimal("-0.0002")
    cryptocom_sim.thread.call(lambda: setattr(engine.instruments["BTC_USD"], "maker_fee_rate", rate))
    maker_account, taker_account = cryptocom_sim.create_account(), cryptocom_sim.create_account()
    maker = make_cryptocom_adapter(Credentials(maker_account["api_key"], maker_account["api_secret"]))
    taker = make_cryptocom_adapter(Credentials(taker_account["api_key"], taker_account["api_secret"]))
    ticker = await maker.get_ticker("BTC-USD")
    price = ticker.ask - Decimal("0.01")  # the best ask, inside the spread
    assert price > ticker.bid
    before = {b.currency: b.total for b in await maker.get_balances()}

    resting = limit(Side.SELL, "0.01", price, post_only=True)
    await maker.place_order(resting)
    await taker.place_order(limit(Side.BUY, "0.01", price, time_in_force=TimeInForce.IOC))

    order = await maker.get_order(client_order_id=resting.client_order_id)
    assert order.status is OrderStatus.FILLED
    rebate = (price * Decimal("0.01") * rate).quantize(Decimal("0.00000001"), rounding=ROUND_UP)
    assert rebate < 0
    assert order.fees == rebate
    assert order.fee_currency == "USD"
    fills = await maker.get_fills("BTC-USD", start=datetime.now(UTC) - timedelta(minutes=5))
    assert [(f.venue_order_id, f.liquidity, f.fee) for f in fills] == [
        (order.venue_order_id, Liquidity.MAKER, rebate)
    ]
    after = {b.currency: b.total for b in await maker.get_balances()}
    assert after["USD"] - before["USD"] == price * Decimal("0.01") - rebate


async def test_market_buy_by_notional(cryptocom_adapter):
    request = OrderRequest("ETH-USD", Side.BUY, OrderType.MARKET, Decimal(0), oid(), notional=Decimal("500"))
    ack = await cryptocom_adapter.place_order(request)
    order = await cryptocom_adapter.get_order(venue_order_id=ack.venue_order_id)
    assert order.status is OrderStatus.FILLED
    assert order.filled_quantity > 0
    assert order.filled_quantity * order.avg_fill_price + order.fees <= Decimal("500")


async def test_post_only_cross_ioc_and_fok(cryptocom_adapter):
    ticker = await cryptocom_adapter.get_ticker("BTC-USD")
    crossing = limit(Side.BUY, "0.001", ticker.ask * 2, post_only=True)
    rejected = await cryptocom_adapter.place_order(crossing)
    assert rejected.status is OrderStatus.REJECTED
    assert (await cryptocom_adapter.get_order(client_order_id=crossing.client_order_id)).status is (
        OrderStatus.REJECTED
    )
    far = (ticker.bid * Decimal("0.5")).quantize(Decimal("0.01"))
    ioc = await cryptocom_adapter.place_order(limit(Side.BUY, "0.001", far, time_in_force=TimeInForce.IOC))
    assert ioc.status is OrderStatus.CANCELLED
    beyond_book = (ticker.ask * Decimal("1.05")).quantize(Decimal("0.01"))  # 9 BTC > all synthetic asks
    fok = await cryptocom_adapter.place_order(
        limit(Side.BUY, "9", beyond_book, time_in_force=TimeInForce.FOK)
    )
    assert fok.status is OrderStatus.CANCELLED
    assert await cryptocom_adapter.get_open_orders() == []


async def test_duplicate_client_order_id(cryptocom_adapter):
    price = await far_bid(cryptocom_adapter)
    request = limit(Side.BUY, "0.001", price)
    await cryptocom_adapter.place_order(request)
    with pytest.raises(ex.DuplicateOrder) as info:
        await cryptocom_adapter.place_order(request)
    assert info.value.code == "DUPLICATE_ORDER"
    assert info.value.venue_code == "204"
    assert len(await cryptocom_adapter.get_open_orders()) == 1


async def test_insufficient_balance_and_invalid_orders(cryptocom_sim, make_cryptocom_adapter):
    account = cryptocom_sim.create_account({"USD": "100"})
    adapter = make_cryptocom_adapter(Credentials(account["api_key"], account["api_secret"]))
    with pytest.raises(ex.InsufficientBalance) as info:
        await adapter.place_order(limit(Side.BUY, "1", "60000.00"))
    assert info.value.code == "INSUFFICIENT_BALANCE"
    with pytest.raises(ex.InsufficientBalance):
        await adapter.place_order(limit(Side.SELL, "1", "60000.00"))
    with pytest.raises(ex.InvalidOrder):
        await adapter.place_order(limit(Side.BUY, "0.000001", "60000.00"))  # below the quantity step
    with pytest.raises(ex.InvalidOrder):
        await adapter.place_order(limit(Side.BUY, "0.001", "60000.001"))  # off the price tick
    with pytest.raises(ex.InstrumentNotFound):
        await adapter.place_order(
            OrderRequest("XYZ-USD", Side.BUY, OrderType.LIMIT, Decimal(1), oid(), price=Decimal(1))
        )
    assert cryptocom_sim.account_state(account["api_key"])["orders"] == 0


async def test_wrong_credentials(cryptocom_account, make_cryptocom_adapter):
    wrong_secret = make_cryptocom_adapter(Credentials(cryptocom_account["api_key"], "not-the-secret"))
    with pytest.raises(ex.AuthFailed) as info:
        await wrong_secret.get_balances()
    assert info.value.code == "EXCHANGE_AUTH_FAILED"
    assert info.value.venue_code == "40101"
    unknown_key = make_cryptocom_adapter(Credentials("nobody", "nothing"))
    with pytest.raises(ex.AuthFailed):
        await unknown_key.get_open_orders()


async def test_order_not_found(cryptocom_adapter):
    with pytest.raises(ex.OrderNotFound):
        await cryptocom_adapter.get_order(client_order_id="never-sent")
    with pytest.raises(ex.OrderNotFound):
        await cryptocom_adapter.cancel_order(venue_order_id="123")


async def test_on_call_reports_every_request_without_secrets(
    cryptocom_sim, cryptocom_credentials, make_cryptocom_adapter
):
    calls = []
    adapter = make_cryptocom_adapter(cryptocom_credentials, on_call=lambda *args: calls.append(args))
    await adapter.get_ticker("BTC-USD")
    with pytest.raises(ex.OrderNotFound):
        await adapter.get_order(client_order_id="nope")
    assert [(c[0], c[1], c[3], c[4]) for c in calls] == [
        ("cryptocom", "public/get-tickers", "ok", None),
        ("cryptocom", "private/get-order-detail", "error", "40401"),
    ]
    assert all(isinstance(c[2], float) and c[2] >= 0 for c in calls)
    assert cryptocom_credentials.api_secret not in repr(calls)
    assert cryptocom_credentials.api_key not in repr(calls)
    assert cryptocom_credentials.api_secret not in repr(cryptocom_credentials)


async def test_the_simulator_writes_decimals_padded_never_in_exponent_form(cryptocom_adapter):
    """As the venue does (spec §3.3): a resting order's zero fee is "0.00000000", not "0E-8"."""
    price = await far_bid(cryptocom_adapter)
    ack = await cryptocom_adapter.place_order(limit(Side.BUY, "0.001", price))
    row = await cryptocom_adapter.rest.private(
        "private/get-order-detail", {"order_id": ack.venue_order_id}, safe=True
    )
    assert row["cumulative_fee"] == "0.00000000"
    exponent_form = re.compile(r"-?\d+(\.\d+)?[eE][-+]?\d+")
    texts = {k: v for k, v in row.items() if isinstance(v, str) and not k.endswith("_id")}  # (ids are hex)
    assert "cumulative_value" in texts
    assert not {k: v for k, v in texts.items() if exponent_form.fullmatch(v)}, row
