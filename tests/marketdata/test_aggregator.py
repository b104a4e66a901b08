"""The price aggregator's rules, event by event (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from apps.exchanges.adapters.base import BookLevel, BookUpdate, Side, Ticker, Trade
from apps.marketdata.feed.aggregator import PriceAggregator

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def agg() -> PriceAggregator:
    return PriceAggregator("cryptocom", {"BTC-USD": "BTC_USD", "BTC-USDT": "BTC_USDT"})


def ticker(
    t: datetime = T0, last: str = "100", bid: str = "99", ask: str = "101", change: str = "0.025"
) -> Ticker:
    return Ticker("BTC-USD", D(bid), D(ask), D(last), D("110"), D("90"), D("12.5"), D(change), t)


def book(snapshot: bool, seq: int, bids=(), asks=(), t: datetime = T0) -> BookUpdate:
    return BookUpdate(
        "BTC-USD",
        snapshot,
        tuple(BookLevel(D(p), D(q)) for p, q in bids),
        tuple(BookLevel(D(p), D(q)) for p, q in asks),
        t,
        seq,
    )


def trade(trade_id: str, price: str, t: datetime = T0) -> Trade:
    return Trade("BTC-USD", trade_id, D(price), D("1"), Side.BUY, t)


def test_ticker_gives_a_price_and_the_change_is_k2s_own_percent():
    a = agg()
    [snap] = a.on_ticker(ticker()).publish
    assert (snap.price, snap.bid, snap.ask, snap.volume_24h) == ("100", "99", "101", "12.5")
    # without a reference price from K2's candles there is no change (whatever the venue says:
    # venues report it in different units)
    assert snap.change_24h is None
    assert snap.timestamp == "2026-01-01T12:00:00Z"
    a.reference_24h["BTC-USD"] = D("80")
    [snap] = a.on_ticker(ticker(T0 + timedelta(seconds=1))).publish
    assert snap.change_24h == "25.00"


def test_older_and_unchanged_tickers_are_not_published():
    a = agg()
    assert a.on_ticker(ticker(T0 + timedelta(seconds=2))).publish
    assert a.on_ticker(ticker(T0)).publish == []  # out of order
    assert a.stats.dropped_tickers == 1
    assert a.on_ticker(ticker(T0 + timedelta(seconds=3))).publish == []  # same quote
    assert a.stats.unchanged == 1


def test_book_overrides_ticker_quotes_once_a_snapshot_arrived():
    a = agg()
    a.on_ticker(ticker())
    assert a.on_book(book(False, 5, bids=[("99.5", "1")])).publish == []  # delta before snapshot
    assert a.stats.dropped_book_updates == 1
    [snap] = a.on_book(book(True, 6, bids=[("99.5", "2")], asks=[("100.5", "3")])).publish
    assert (snap.bid, snap.ask, snap.bid_size, snap.ask_size) == ("99.5", "100.5", "2", "3")
    [snap] = a.on_book(book(False, 7, bids=[("99.5", "0"), ("99.6", "1")])).publish
    assert snap.bid == "99.6"
    assert a.on_book(book(False, 7, bids=[("99.9", "1")])).publish == []  # replayed sequence
    assert a.states["BTC-USD"].book.bids.get(D("99.9")) is None


def test_crossed_book_is_never_published_and_asks_for_a_snapshot():
    a = agg()
    a.on_ticker(ticker())
    a.on_book(book(True, 1, bids=[("99", "1")], asks=[("101", "1")]))
    out = a.on_book(book(False, 2, bids=[("102", "1")]))
    assert out.resubscribe
    assert not a.states["BTC-USD"].book_valid
    for snap in out.publish:  # falls back to the (consistent) ticker quote
        assert (snap.bid, snap.ask) == ("99", "101")


def test_resync_drops_only_the_named_book():
    a = PriceAggregator("cryptocom", {"BTC-USD": "BTC_USD", "BTC-USDT": "BTC_USDT"})
    for symbol in ("BTC-USD", "BTC-USDT"):
        a.on_book(BookUpdate(symbol, True, (BookLevel(D(1), D(1)),), (BookLevel(D(2), D(1)),), T0, 1))
    assert a.on_resync("book.BTC_USD.10: pu 5 != u 4") == ["BTC-USD"]
    assert not a.states["BTC-USD"].book_valid
    assert a.states["BTC-USDT"].book_valid
    assert sorted(a.on_resync("something unparseable")) == ["BTC-USD", "BTC-USDT"]


def test_trades_dedupe_by_id_and_set_the_last_price_by_time():
    a = agg()
    a.on_ticker(ticker(T0, last="100"))
    first = a.on_trade(trade("1", "105", T0 + timedelta(seconds=1)))
    assert [t.trade_id for t in first.trades] == ["1"]
    assert first.publish[0].price == "105"
    replay = a.on_trade(trade("1", "105", T0 + timedelta(seconds=1)))
    assert replay.trades == []
    assert replay.publish == []
    assert a.stats.duplicate_trades == 1
    late = a.on_trade(trade("0", "90", T0))  # older print: still a trade for candles, not the price
    assert [t.trade_id for t in late.trades] == ["0"]
    assert late.publish == []


def test_unknown_instrument_is_ignored():
    a = agg()
    other = Ticker("XRP-USD", D(1), D(2), D(1), None, None, D(0), None, T0)
    assert a.on_ticker(other).publish == []


def test_reconnect_republishes_every_instrument():
    a = agg()
    a.on_ticker(ticker())
    a.reset_books()
    assert a.on_ticker(ticker(T0 + timedelta(seconds=1))).publish  # same quote, but a new connection
