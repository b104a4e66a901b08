"""A third-party client, unchanged: ccxt's `cryptocom` pointed at the simulator's URL."""

from __future__ import annotations

import ccxt
import pytest


@pytest.fixture
def exchange(cryptocom_sim, cryptocom_account):
    client = ccxt.cryptocom(
        {
            "apiKey": cryptocom_account["api_key"],
            "secret": cryptocom_account["api_secret"],
            "timeout": 5000,
            "enableRateLimit": True,
        }
    )
    client.urls["api"]["v1"] = cryptocom_sim.rest_url  # the only change: where it points
    return client


def test_ccxt_market_data(exchange):
    markets = exchange.load_markets()
    assert {"BTC/USD", "ETH/USD", "SOL/USD"} <= set(markets)
    assert markets["BTC/USD"]["id"] == "BTC_USD"
    assert markets["BTC/USD"]["precision"]["price"] == 0.01

    ticker = exchange.fetch_ticker("BTC/USD")
    assert ticker["symbol"] == "BTC/USD"
    assert ticker["bid"] < ticker["ask"]
    assert ticker["last"] > 0

    book = exchange.fetch_order_book("ETH/USD", limit=5)
    assert len(book["bids"]) == 5
    assert len(book["asks"]) == 5
    assert book["bids"][0][0] < book["asks"][0][0]

    trades = exchange.fetch_trades("BTC/USD", limit=5)
    assert len(trades) == 5
    assert all(t["symbol"] == "BTC/USD" and t["side"] in ("buy", "sell") for t in trades)

    candles = exchange.fetch_ohlcv("BTC/USD", "1m", limit=10)
    assert candles
    assert all(len(c) == 6 and c[3] <= c[1] <= c[2] for c in candles)


def test_ccxt_balance_and_order_round_trip(exchange, cryptocom_sim, cryptocom_account):
    exchange.load_markets()
    balance = exchange.fetch_balance()
    assert balance["USD"]["total"] == 1_000_000
    assert balance["BTC"]["free"] == 10

    bid = exchange.fetch_ticker("BTC/USD")["bid"]
    price = round(bid * 0.8, 2)
    created = exchange.create_order("BTC/USD", "limit", "buy", 0.001, price, {"client_oid": "ccxt-1"})
    assert created["id"]
    fetched = exchange.fetch_order(created["id"], "BTC/USD")
    assert fetched["status"] == "open"
    assert fetched["price"] == price
    assert fetched["amount"] == 0.001
    assert fetched["clientOrderId"] == "ccxt-1"
    assert [o["id"] for o in exchange.fetch_open_orders("BTC/USD")] == [created["id"]]
    assert exchange.fetch_balance()["USD"]["used"] > 0

    exchange.cancel_order(created["id"], "BTC/USD")
    assert exchange.fetch_order(created["id"], "BTC/USD")["status"] == "canceled"
    assert exchange.fetch_open_orders("BTC/USD") == []

    market = exchange.create_order("SOL/USD", "market", "sell", 1)
    filled = exchange.fetch_order(market["id"], "SOL/USD")
    assert filled["status"] == "closed"
    assert filled["filled"] == 1
    assert cryptocom_sim.account_state(cryptocom_account["api_key"])["orders"] == 2


def test_ccxt_sees_venue_errors(exchange):
    exchange.load_markets()
    with pytest.raises(ccxt.InsufficientFunds):
        exchange.create_order("BTC/USD", "limit", "buy", 100, 60000)
    with pytest.raises(ccxt.OrderNotFound):
        exchange.fetch_order("123", "BTC/USD")
    exchange.secret = "wrong"
    with pytest.raises(ccxt.AuthenticationError):
        exchange.fetch_balance()
