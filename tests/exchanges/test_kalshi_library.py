"""Kalshi's official Python client (`kalshi_python_sync` 3.2.0), unchanged, against the simulator.

The library predates the 2026 fixed-point migration: it requires the era-A integer fields and
uses the legacy `/portfolio/orders` writes (deprecated on the real venue since 2026-06), which the
simulator serves with `legacy_cents` on (its default)."""

from __future__ import annotations

import uuid

import kalshi_python_sync as kalshi
import pytest


@pytest.fixture
def client(kalshi_sim):
    kalshi_sim.configure(legacy_cents=True)
    account = kalshi_sim.create_account(tier="premier")  # legacy writes cost 100 tokens each
    config = kalshi.Configuration(host=kalshi_sim.rest_url)
    config.api_key_id = account["api_key_id"]
    config.private_key_pem = account["private_key_pem"]
    return kalshi.KalshiClient(config)


def test_markets_events_and_book(client, kalshi_sim):
    page = client.get_markets(limit=5)
    assert len(page.markets) == 5
    assert page.cursor
    rest = client.get_markets(limit=1000, cursor=page.cursor)
    assert {m.ticker for m in page.markets + rest.markets} == set(kalshi_sim.tickers)
    assert rest.cursor == ""
    market = client.get_market(kalshi_sim.ticker("KXBTC", 1)).market
    assert market.status == "active"
    assert 0 < market.yes_bid < market.yes_ask < 100
    events = client.get_events(with_nested_markets=True).events
    assert {e.series_ticker for e in events} == {"KXBTC", "KXHIGHNY", "FED"}
    event = client.get_event(market.event_ticker)
    assert event.event.mutually_exclusive
    assert len(event.markets) == 4
    book = client.get_market_orderbook(market.ticker).orderbook
    assert book.yes_dollars
    assert book.no_dollars
    best_yes_bid = max(book.yes_dollars, key=lambda lv: lv[0])
    assert best_yes_bid == book.yes_dollars[-1]  # ascending: best bid last


def test_balance_orders_positions_fills(client, kalshi_sim):
    ticker = kalshi_sim.ticker("KXBTC", 1)
    assert client.get_balance().balance == 10_000_000  # cents
    resting = client.create_order(
        ticker=ticker, side="yes", action="buy", count=3, yes_price=2, client_order_id=str(uuid.uuid4())
    ).order
    assert resting.status == "resting"
    assert resting.remaining_count == 3
    assert client.get_order(resting.order_id).order.client_order_id == resting.client_order_id
    assert [o.order_id for o in client.get_orders(status="resting").orders] == [resting.order_id]
    cancelled = client.cancel_order(resting.order_id)
    assert cancelled.order.status == "canceled"
    assert cancelled.reduced_by == 3
    taken = client.create_order(
        ticker=ticker, side="no", action="buy", count=2, no_price=99, client_order_id=str(uuid.uuid4())
    ).order
    assert taken.status == "executed"
    assert taken.fill_count == 2
    (position,) = client.get_positions().market_positions
    assert (position.ticker, position.position) == (ticker, -2)  # negative = NO
    fills = client.get_fills().fills
    assert sum(f.count for f in fills) == 2
    assert {f.side for f in fills} == {"no"}
    assert client.get_balance().balance < 10_000_000
