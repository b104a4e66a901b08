"""Performance derived from executions and candles (no stored balances)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from apps.exchanges.calls import run_venue_call
from apps.marketdata.models import Candle, Instrument
from apps.marketdata.services import candles_store_venue
from tests.portfolio.conftest import CENT, get, market_buy
from tests.trading.conftest import Trader

pytestmark = pytest.mark.django_db(transaction=True)


def test_series_rolls_executions_back(trader_usd: Trader) -> None:
    before = get(trader_usd, "/v1/portfolio/summary")
    assert Decimal(before["total_value"]) == Decimal("100250.5")
    market_buy(trader_usd, "0.01")
    summary = get(trader_usd, "/v1/portfolio/summary")
    data = get(trader_usd, "/v1/portfolio/performance?range=1d")
    assert data["range"] == "1d"
    assert data["method"] == "derived"
    points = data["points"]
    assert len(points) == 49
    # Before the buy the account held only cash: every earlier point is that cash, exactly.
    assert {p["value"] for p in points[:-1]} == {"100250.5"}
    assert all(p["complete"] for p in points)
    assert points[-1]["value"] == data["end_value"]
    assert abs(Decimal(data["end_value"]) - Decimal(summary["total_value"])) < CENT
    assert Decimal(data["start_value"]) == Decimal("100250.5")
    assert abs(Decimal(data["change"]) - (Decimal(summary["total_value"]) - Decimal("100250.5"))) < CENT
    assert Decimal(data["fees"]) > 0
    assert summary["day_change"] is not None
    assert abs(Decimal(summary["day_change"]["value"]) - Decimal(data["change"])) < CENT

    for name in ("1w", "1m", "3m", "1y", "all"):
        other = get(trader_usd, f"/v1/portfolio/performance?range={name}")
        assert other["points"][0]["value"] == "100250.5", name
        assert abs(Decimal(other["end_value"]) - Decimal(summary["total_value"])) < CENT


def test_held_crypto_is_valued_at_candle_closes(make_trader: Callable[..., Trader], frozen: Any) -> None:
    trader = make_trader({"USD": "1000", "BTC": "0.5"})
    candles = run_venue_call("cryptocom", lambda a: a.get_candles("BTC-USD", "5m", limit=40))
    assert candles
    instrument = Instrument.objects.get(symbol="BTC-USD")
    candles_store_venue(
        instrument_id=instrument.pk, interval="5m", candles=candles, watermark=datetime.now(UTC)
    )
    closes = set(Candle.objects.filter(instrument=instrument, interval="5m").values_list("close", flat=True))

    data = get(trader, "/v1/portfolio/performance?range=1d")
    complete = [p for p in data["points"][:-1] if p["complete"]]
    incomplete = [p for p in data["points"][:-1] if not p["complete"]]
    assert complete, "the candles cover the last hours"
    assert incomplete, "nothing covers a day ago"
    for point in complete:
        btc_price = (Decimal(point["value"]) - 1000) / Decimal("0.5")
        assert btc_price in closes
    # The figures start at the first point that could be valued.
    assert data["start_value"] == complete[0]["value"]
    # A day ago is not covered by any candle: no day change rather than a made-up one.
    assert get(trader, "/v1/portfolio/summary")["day_change"] is None


def test_all_range_for_an_account_without_trades(make_trader: Callable[..., Trader], frozen: Any) -> None:
    trader = make_trader({"USD": "42"})
    data: dict[str, Any] = get(trader, "/v1/portfolio/performance?range=all")
    assert data["end_value"] == "42"
    assert data["change"] == "0"
    assert data["realized_pnl"] == "0"


async def _candles(adapter: Any, *, interval: str) -> Any:
    return await adapter.get_candles("BTC-USD", interval, limit=30)


def test_a_year_is_valued_at_the_nearest_interval_never_a_year_of_minutes(frozen: Any) -> None:
    """A symbol with no daily candles is valued, over a year, at its hourly ones (the nearest it
    has), not its minute ones: a year of those is 525,600 rows loaded for one request."""
    from apps.portfolio.performance import _History

    instrument = Instrument.objects.get(symbol="BTC-USD")
    now = datetime.now(UTC)
    for interval in ("1m", "1h"):
        candles = run_venue_call("cryptocom", functools.partial(_candles, interval=interval))
        candles_store_venue(instrument_id=instrument.pk, interval=interval, candles=candles, watermark=now)
    hourly = Candle.objects.filter(instrument=instrument, interval="1h").count()
    assert Candle.objects.filter(instrument=instrument, interval="1m").exists()
    assert not Candle.objects.filter(instrument=instrument, interval="1d").exists()

    year = _History({"BTC-USD"}, "1d", now - timedelta(days=365), now, timedelta(days=7))
    assert len(year.series["BTC-USD"][0]) == hourly
    # a day's range may still use minutes (1,440 of them) when it has no 5m candles
    day = _History({"BTC-USD"}, "5m", now - timedelta(days=1), now, timedelta(minutes=30))
    assert (
        len(day.series["BTC-USD"][0]) == Candle.objects.filter(instrument=instrument, interval="1m").count()
    )
