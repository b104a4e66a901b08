"""Services and interfaces around them: exactly-once candles, venue back-fill, instrument sync
(command and task), trade pruning, admin smoke tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.exchanges.adapters.base import Candle as VenueCandle
from apps.exchanges.adapters.base import Side, Trade
from apps.marketdata import services
from apps.marketdata.models import Candle, Instrument, MarketTrade

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def btc() -> Instrument:
    return Instrument.objects.create(
        symbol="BTC-USD", venue="cryptocom", venue_symbol="BTC_USD", instrument_type="crypto",
        tick_size=D("0.01"), quantity_step=D("0.0001"), min_quantity=D("0.0001"),
    )  # fmt: skip


def trade(trade_id: str, price: str, qty: str, seconds: float) -> Trade:
    return Trade("BTC-USD", trade_id, D(price), D(qty), Side.BUY, T0 + timedelta(seconds=seconds))


def bucket(btc: Instrument, interval: str = "1m", start: datetime = T0) -> Candle:
    return Candle.objects.get(instrument=btc, interval=interval, start=start)


def test_trades_fold_into_every_interval_exactly_once_in_any_order(btc):
    ids = {"BTC-USD": btc.id}
    trades = [trade("1", "100", "1", 10), trade("2", "105", "2", 20), trade("3", "95", "1", 30)]
    assert services.trades_record(trades=[trades[2], trades[0]], instrument_ids=ids) == 2
    assert services.trades_record(trades=trades, instrument_ids=ids) == 1  # only "2" is new
    assert services.trades_record(trades=trades, instrument_ids=ids) == 0  # a replay changes nothing
    for interval, start in (("1m", T0), ("5m", T0), ("1h", T0), ("1d", T0.replace(hour=0))):
        c = bucket(btc, interval, start)
        assert (c.open, c.high, c.low, c.close, c.volume, c.trade_count) == (
            D("100"), D("105"), D("95"), D("95"), D("4"), 3,
        ), interval  # fmt: skip
    assert MarketTrade.objects.count() == 3


def test_venue_backfill_owns_the_bucket_up_to_its_watermark(btc):
    ids = {"BTC-USD": btc.id}
    services.trades_record(trades=[trade("1", "100", "1", 5)], instrument_ids=ids)
    venue = [VenueCandle("BTC-USD", "1m", T0, D("99"), D("101"), D("98"), D("100.5"), D("3"))]
    watermark = T0 + timedelta(seconds=30)
    assert (
        services.candles_store_venue(instrument_id=btc.id, interval="1m", candles=venue, watermark=watermark)
        == 1
    )
    c = bucket(btc)
    assert (c.open, c.close, c.volume, c.source) == (D("99"), D("100.5"), D("3"), "venue")
    # a trade the venue already counted (at or before the watermark) is recorded but not added
    services.trades_record(trades=[trade("2", "120", "5", 25)], instrument_ids=ids)
    assert bucket(btc).volume == D("3")
    # a later one is
    services.trades_record(trades=[trade("3", "97", "1", 40)], instrument_ids=ids)
    c = bucket(btc)
    assert (c.close, c.low, c.volume, c.trade_count) == (D("97"), D("97"), D("4"), 2)  # prints K2 saw
    # a lagging venue answer never takes volume away
    lagging = [VenueCandle("BTC-USD", "1m", T0, D("99"), D("101"), D("98"), D("100"), D("2"))]
    services.candles_store_venue(instrument_id=btc.id, interval="1m", candles=lagging, watermark=watermark)
    assert bucket(btc).volume == D("4")


def test_prune_drops_old_dedupe_rows_only(btc):
    ids = {"BTC-USD": btc.id}
    services.trades_record(trades=[trade("old", "1", "1", 0)], instrument_ids=ids)
    services.trades_record(
        trades=[Trade("BTC-USD", "new", D(1), D(1), Side.SELL, datetime.now(tz=UTC))], instrument_ids=ids
    )
    assert services.market_trades_prune(older_than=timedelta(hours=1)) == 1
    assert list(MarketTrade.objects.values_list("trade_id", flat=True)) == ["new"]


@pytest.mark.django_db(transaction=True)
def test_sync_instruments_command_and_task(sim, settings):
    from apps.marketdata.tasks import instruments_sync_task

    out = StringIO()
    call_command("sync_instruments", "--venue", "cryptocom", stdout=out)
    assert "cryptocom: 5 created" in out.getvalue()
    call_command("sync_instruments", "--venue", "cryptocom", stdout=out)
    assert "cryptocom: 0 created, 0 updated, 0 delisted" in out.getvalue()
    with pytest.raises(CommandError):
        call_command("sync_instruments", "--venue", "nasdaq")
    btc = Instrument.objects.get(symbol="BTC-USD")
    assert (btc.venue_symbol, btc.tick_size, btc.status) == ("BTC_USD", D("0.01"), "open")
    Instrument.objects.create(
        symbol="GONE-USD", venue="cryptocom", venue_symbol="GONE_USD", instrument_type="crypto",
        tick_size=D("0.01"), quantity_step=D("1"), min_quantity=D("1"),
    )  # fmt: skip
    settings.K2_KALSHI_REST_URL = "http://127.0.0.1:9/trade-api/v2"  # a venue that is down
    result = instruments_sync_task.apply().get()
    assert "delisted=1" in result["cryptocom"]
    assert result["kalshi"].startswith("error")  # reported; the other venue still synced
    assert Instrument.objects.get(symbol="GONE-USD").status == "delisted"


def test_admin_pages(admin_client, btc):
    from apps.accounts.models import User
    from apps.marketdata.models import Watchlist, WatchlistItem

    owner = User.objects.create_user(email="owner@example.com", password="irrelevant-Passw0rd!")
    watchlist = Watchlist.objects.create(user=owner, name="Majors")
    WatchlistItem.objects.create(watchlist=watchlist, instrument=btc, position=0)
    services.trades_record(trades=[trade("1", "100", "1", 5)], instrument_ids={"BTC-USD": btc.id})
    for model in ("instrument", "candle", "markettrade", "watchlist"):
        assert admin_client.get(f"/admin/marketdata/{model}/").status_code == 200, model
        assert admin_client.get(f"/admin/marketdata/{model}/?q=BTC").status_code == 200, model
    assert admin_client.get(f"/admin/marketdata/instrument/{btc.pk}/change/").status_code == 200
    assert admin_client.get(f"/admin/marketdata/watchlist/{watchlist.pk}/change/").status_code == 200
