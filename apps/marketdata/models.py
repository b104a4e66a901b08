"""Market data tables: the instrument registry, OHLCV candles, the public trades candles are built
from (deduplicated by venue trade id), and watchlists.

Prices are not here: the latest price per instrument lives in Redis (`apps.marketdata.cache`),
written by the feed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from apps.marketdata.choices import CandleInterval, CandleSource, InstrumentStatus, InstrumentType
from k2.core.models import BaseModel


class Instrument(BaseModel):
    """One tradable instrument of one venue. `symbol` is K2's canonical name (`BTC-USD`, Kalshi
    tickers as Kalshi writes them) and is unique across venues; rows are upserted from the
    venues by `instruments_sync` and never deleted (orders and watchlists point at them)."""

    symbol = models.CharField(max_length=100, unique=True)
    instrument_type = models.CharField(max_length=10, choices=InstrumentType.choices)
    venue = models.CharField(max_length=50, db_index=True)
    venue_symbol = models.CharField(max_length=100)
    base = models.CharField(max_length=50, blank=True)
    quote = models.CharField(max_length=20, blank=True)
    tick_size = models.DecimalField(max_digits=20, decimal_places=8)
    quantity_step = models.DecimalField(max_digits=20, decimal_places=8)
    min_quantity = models.DecimalField(max_digits=20, decimal_places=8)
    status = models.CharField(max_length=10, choices=InstrumentStatus.choices, default=InstrumentStatus.OPEN)
    # event contracts only
    event_ticker = models.CharField(max_length=100, blank=True)
    series_ticker = models.CharField(max_length=100, blank=True)
    title = models.CharField(max_length=300, blank=True)
    close_time = models.DateTimeField(null=True, blank=True)
    settle_time = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=20, blank=True, help_text="settlement result, e.g. yes / no")
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instruments"
        ordering = ("symbol",)
        constraints = [
            models.UniqueConstraint(fields=["venue", "venue_symbol"], name="instruments_venue_symbol"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instruments_tick_size_positive"),
            models.CheckConstraint(condition=Q(quantity_step__gt=0), name="instruments_qty_step_positive"),
        ]
        indexes = [
            models.Index(fields=["instrument_type", "status"]),
            models.Index(fields=["event_ticker"]),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.venue})"


class Candle(models.Model):
    """One OHLCV bucket. Unique per (instrument, interval, start), so every write is an upsert.

    `open_time`/`close_time` are the times of the trades that set open and close (so trades
    arriving out of order still give the right open and close). A bucket copied from the venue's
    candle endpoint carries `venue_watermark`: the venue's numbers already include every trade up
    to that time, so the feed folds in only later trades (see `services.trades_record`).
    """

    id = models.BigAutoField(primary_key=True)
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="candles")
    interval = models.CharField(max_length=3, choices=CandleInterval.choices)
    start = models.DateTimeField()
    open = models.DecimalField(max_digits=20, decimal_places=8)
    high = models.DecimalField(max_digits=20, decimal_places=8)
    low = models.DecimalField(max_digits=20, decimal_places=8)
    close = models.DecimalField(max_digits=20, decimal_places=8)
    volume = models.DecimalField(max_digits=20, decimal_places=8, default=0)
    trade_count = models.PositiveIntegerField(default=0)
    open_time = models.DateTimeField()
    close_time = models.DateTimeField()
    venue_watermark = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=CandleSource.choices, default=CandleSource.TRADES)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "candles"
        ordering = ("instrument", "interval", "start")
        constraints = [
            models.UniqueConstraint(fields=["instrument", "interval", "start"], name="candles_bucket"),
            models.CheckConstraint(condition=Q(high__gte=F("low")), name="candles_high_gte_low"),
            models.CheckConstraint(condition=Q(volume__gte=0), name="candles_volume_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.interval} {self.start:%Y-%m-%d %H:%M}"


class MarketTrade(models.Model):
    """A public trade print the feed has folded into candles: the dedupe key that makes candle
    aggregation exactly-once across restarts and replicas. Pruned after a retention window."""

    id = models.BigAutoField(primary_key=True)
    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="trades")
    trade_id = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=20, decimal_places=8)
    quantity = models.DecimalField(max_digits=20, decimal_places=8)
    taker_side = models.CharField(max_length=4)
    time = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "market_trades"
        constraints = [
            models.UniqueConstraint(
                fields=["instrument", "trade_id"], name="market_trades_instrument_trade_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} trade {self.trade_id}"


class Watchlist(BaseModel):
    """A user's ordered list of instruments (any venue). A non-empty `share_token` makes it
    readable by anyone holding the token; revoking clears it, so old links stop working."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="watchlists")
    name = models.CharField(max_length=100)
    share_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    shared_at = models.DateTimeField(null=True, blank=True)
    copied_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        db_table = "watchlists"
        ordering = ("created_at", "id")
        indexes = [models.Index(fields=["user", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.user_id})"


class WatchlistItem(models.Model):
    """One instrument in a watchlist at `position` (0-based, kept dense by the services)."""

    id = models.BigAutoField(primary_key=True)
    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="items")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "watchlist_items"
        ordering = ("watchlist", "position", "id")
        constraints = [
            models.UniqueConstraint(
                fields=["watchlist", "instrument"], name="watchlist_items_unique_instrument"
            )
        ]

    def __str__(self) -> str:
        return f"{self.watchlist_id}[{self.position}] {self.instrument_id}"
