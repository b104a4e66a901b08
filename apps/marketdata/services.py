"""Market data writes: the instrument registry, candles (from trades and from the venues), and
watchlists. Each public service is one durable transaction."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.exchanges.adapters.base import Candle as VenueCandle
from apps.exchanges.adapters.base import Instrument as VenueInstrument
from apps.exchanges.adapters.base import Trade as VenueTrade
from apps.marketdata import selectors
from apps.marketdata.candles import bucket_end, bucket_start
from apps.marketdata.choices import CandleInterval, InstrumentStatus
from apps.marketdata.exceptions import (
    WatchlistItemExists,
    WatchlistItemNotFound,
    WatchlistLimitExceeded,
)
from apps.marketdata.models import Instrument, MarketTrade, Watchlist, WatchlistItem
from k2.audit.services import record
from k2.observability.logging import get_logger

log = get_logger(__name__)

INTERVALS: tuple[str, ...] = tuple(CandleInterval.values)

# ---- instruments ----------------------------------------------------------------------------

_SYNCED_FIELDS = (
    "symbol", "instrument_type", "base", "quote", "tick_size", "quantity_step", "min_quantity", "status",
    "event_ticker", "series_ticker", "title", "close_time", "settle_time", "result",
)  # fmt: skip


@dataclass
class InstrumentSyncResult:
    venue: str
    created: int = 0
    updated: int = 0
    delisted: int = 0
    skipped: list[str] = field(default_factory=list)


def _instrument_values(item: VenueInstrument) -> dict[str, Any]:
    # Optional event fields a venue's adapter may add (series, title, result) are read by name,
    # so no venue is special-cased here.
    return {
        "symbol": item.symbol,
        "instrument_type": str(item.instrument_type),
        "base": item.base or "",
        "quote": item.quote or "",
        "tick_size": item.tick_size,
        "quantity_step": item.quantity_step,
        "min_quantity": item.min_quantity,
        "status": str(item.status),
        "event_ticker": item.event_ticker or "",
        "series_ticker": getattr(item, "series_ticker", None) or "",
        "title": (getattr(item, "title", None) or "")[:300],
        "close_time": item.close_time,
        "settle_time": item.settle_time,
        "result": getattr(item, "result", None) or "",
    }


@transaction.atomic(durable=True)
def instruments_upsert(
    *, venue: str, instruments: Sequence[VenueInstrument], complete: bool = True
) -> InstrumentSyncResult:
    """Make the registry match a venue's instrument list: create new ones, update changed ones
    and, when `complete`, mark the venue's instruments it no longer lists as delisted.
    A symbol another venue already owns is skipped (symbols are unique across venues)."""
    result = InstrumentSyncResult(venue=venue)
    now = timezone.now()
    existing = {i.venue_symbol: i for i in Instrument.objects.select_for_update().filter(venue=venue)}
    taken = set(
        Instrument.objects.exclude(venue=venue)
        .filter(symbol__in=[i.symbol for i in instruments])
        .values_list("symbol", flat=True)
    )
    to_create: list[Instrument] = []
    to_update: list[Instrument] = []
    seen: set[str] = set()
    for item in instruments:
        if item.venue_symbol in seen:
            continue
        seen.add(item.venue_symbol)
        if item.symbol in taken:
            result.skipped.append(item.symbol)
            continue
        values = _instrument_values(item)
        row = existing.get(item.venue_symbol)
        if row is None:
            to_create.append(Instrument(venue=venue, venue_symbol=item.venue_symbol, synced_at=now, **values))
            continue
        if any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            result.updated += 1
        row.synced_at = now
        to_update.append(row)
    if complete:
        for venue_symbol, row in existing.items():
            if venue_symbol not in seen and row.status != InstrumentStatus.DELISTED:
                row.status = InstrumentStatus.DELISTED
                row.synced_at = now
                to_update.append(row)
                result.delisted += 1
    Instrument.objects.bulk_create(to_create, batch_size=500)
    Instrument.objects.bulk_update(to_update, [*_SYNCED_FIELDS, "synced_at"], batch_size=500)
    result.created = len(to_create)
    if result.skipped:
        log.warning("instrument_symbol_conflict", venue=venue, symbols=result.skipped[:20])
    return result


def instruments_sync(*, venue: str | None = None) -> dict[str, InstrumentSyncResult | str]:
    """Upsert every venue's instruments (or one venue's). A venue that fails is reported and
    the others still sync. Public data: no credentials."""
    from apps.exchanges.calls import run_venue_call
    from apps.exchanges.venues import VENUES

    results: dict[str, InstrumentSyncResult | str] = {}
    for name in [venue] if venue else list(VENUES):
        try:
            listed = run_venue_call(
                name,
                lambda adapter: adapter.get_instruments(),
                timeout=settings.K2_MARKETDATA_VENUE_TIMEOUT_SECONDS,
            )
        except Exception as exc:  # one venue down must not stop the others
            log.warning("instrument_sync_failed", venue=name, error=repr(exc))
            results[name] = f"error: {exc}"
            continue
        results[name] = instruments_upsert(venue=name, instruments=listed)
        log.info("instruments_synced", venue=name, count=len(listed))
    return results


# ---- candles --------------------------------------------------------------------------------

_TRADE_CANDLE_UPSERT = """
INSERT INTO candles AS c (instrument_id, interval, start, open, high, low, close, volume, trade_count,
                          open_time, close_time, venue_watermark, source, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, NULL, 'trades', now())
ON CONFLICT (instrument_id, interval, start) DO UPDATE SET
    open = CASE WHEN EXCLUDED.open_time < c.open_time THEN EXCLUDED.open ELSE c.open END,
    open_time = LEAST(c.open_time, EXCLUDED.open_time),
    high = GREATEST(c.high, EXCLUDED.high),
    low = LEAST(c.low, EXCLUDED.low),
    close = CASE WHEN EXCLUDED.close_time >= c.close_time THEN EXCLUDED.close ELSE c.close END,
    close_time = GREATEST(c.close_time, EXCLUDED.close_time),
    volume = c.volume + EXCLUDED.volume,
    trade_count = c.trade_count + 1,
    updated_at = now()
WHERE c.venue_watermark IS NULL OR EXCLUDED.close_time > c.venue_watermark
"""

_TRADE_INSERT = """
INSERT INTO market_trades (instrument_id, trade_id, price, quantity, taker_side, time, created_at)
VALUES {placeholders}
ON CONFLICT (instrument_id, trade_id) DO NOTHING
RETURNING instrument_id, trade_id
"""

_VENUE_CANDLE_UPSERT = """
INSERT INTO candles AS c (instrument_id, interval, start, open, high, low, close, volume, trade_count,
                          open_time, close_time, venue_watermark, source, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, 'venue', now())
ON CONFLICT (instrument_id, interval, start) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, open_time = EXCLUDED.open_time,
    close_time = GREATEST(EXCLUDED.close_time, c.close_time),
    venue_watermark = GREATEST(EXCLUDED.venue_watermark, c.venue_watermark),
    source = 'venue', updated_at = now()
WHERE EXCLUDED.volume >= c.volume
"""


@transaction.atomic(durable=True)
def trades_record(*, trades: Sequence[VenueTrade], instrument_ids: Mapping[str, Any]) -> int:
    """Fold public trades into every candle interval exactly once.

    Each trade is first recorded under its venue trade id; only a trade recorded now (not a
    replay after a reconnect, a restart or by a second replica) touches the candles, in the same
    transaction, so a bucket neither loses nor double-counts a trade. A bucket copied from the
    venue skips trades at or before its watermark: the venue's numbers already contain them.
    Returns how many trades were new.
    """
    unique: dict[tuple[Any, str], VenueTrade] = {}
    for trade in trades:
        instrument_id = instrument_ids.get(trade.instrument)
        if instrument_id is not None:
            unique.setdefault((instrument_id, trade.trade_id), trade)
    if not unique:
        return 0
    now = timezone.now()
    rows = [
        (iid, t.trade_id, t.price, t.quantity, str(t.taker_side), t.time, now)
        for (iid, _), t in unique.items()
    ]
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    with connection.cursor() as cursor:
        # Only "%s" placeholders are interpolated; every value is a bound parameter.
        sql = _TRADE_INSERT.format(placeholders=placeholders)
        cursor.execute(sql, [value for row in rows for value in row])
        inserted = {(row[0], row[1]) for row in cursor.fetchall()}
        params = []
        for key, trade in unique.items():  # input (venue) order: it settles ties in open/close
            if key not in inserted:
                continue
            instrument_id = key[0]
            for interval in INTERVALS:
                start = bucket_start(trade.time, interval)
                params.append(
                    (
                        instrument_id,
                        interval,
                        start,
                        trade.price,
                        trade.price,
                        trade.price,
                        trade.price,
                        trade.quantity,
                        trade.time,
                        trade.time,
                    )
                )
        if params:
            cursor.executemany(_TRADE_CANDLE_UPSERT, params)
    return len(inserted)


@transaction.atomic(durable=True)
def candles_store_venue(
    *, instrument_id: Any, interval: str, candles: Sequence[VenueCandle], watermark: datetime
) -> int:
    """Copy a venue's candles for buckets that started before `watermark` (the time they were
    fetched). The venue is authoritative for what it reports, but a bucket never loses volume:
    if K2 already counted more than the venue reports (a lagging venue), K2's bucket is kept."""
    params = []
    for candle in candles:
        start = bucket_start(candle.start, interval)
        if start > watermark:
            continue
        close_time = min(watermark, bucket_end(start, interval) - timedelta(microseconds=1))
        params.append(
            (
                instrument_id,
                interval,
                start,
                candle.open,
                max(candle.high, candle.low),
                min(candle.high, candle.low),
                candle.close,
                candle.volume,
                start,
                close_time,
                close_time,
            )
        )
    if params:
        with connection.cursor() as cursor:
            cursor.executemany(_VENUE_CANDLE_UPSERT, params)
    return len(params)


def market_trades_prune(*, older_than: timedelta | None = None, batch: int = 10_000) -> int:
    """Delete dedupe rows past retention, in bounded batches (each its own transaction)."""
    cutoff = timezone.now() - (older_than or timedelta(hours=settings.K2_MARKETDATA_TRADE_RETENTION_HOURS))
    total = 0
    for _ in range(1000):
        with transaction.atomic(durable=True):
            ids = list(MarketTrade.objects.filter(time__lt=cutoff).values_list("id", flat=True)[:batch])
            if not ids:
                break
            total += MarketTrade.objects.filter(id__in=ids).delete()[0]
    return total


# ---- watchlists -----------------------------------------------------------------------------


def _check_item_limit(count: int) -> None:
    limit = settings.K2_WATCHLIST_MAX_ITEMS
    if count > limit:
        raise WatchlistLimitExceeded(
            f"A watchlist holds at most {limit} instruments.", details={"limit": limit, "attempted": count}
        )


def _check_list_limit(user: Any) -> None:
    limit = settings.K2_WATCHLIST_MAX_LISTS
    count = selectors.watchlist_count(user=user)
    if count >= limit:
        raise WatchlistLimitExceeded(
            f"You can have at most {limit} watchlists.", details={"limit": limit, "current": count}
        )


def _replace_items(watchlist: Watchlist, instruments: Sequence[Instrument]) -> None:
    WatchlistItem.objects.filter(watchlist=watchlist).delete()
    WatchlistItem.objects.bulk_create(
        [
            WatchlistItem(watchlist=watchlist, instrument=inst, position=i)
            for i, inst in enumerate(instruments)
        ]
    )


def _resolve(symbols: Sequence[str]) -> list[Instrument]:
    _check_item_limit(len(set(symbols)))
    return selectors.instruments_resolve(symbols=symbols)


@transaction.atomic(durable=True)
def watchlist_create(*, user: Any, name: str, instruments: Sequence[str] = ()) -> Watchlist:
    """A new list in the given order; the per-user list and item limits hold under a user lock."""
    selectors.user_lock(user=user)
    _check_list_limit(user)
    resolved = _resolve(instruments)
    watchlist = Watchlist(user=user, name=name)
    watchlist.full_clean()
    watchlist.save()
    _replace_items(watchlist, resolved)
    return watchlist


@transaction.atomic(durable=True)
def watchlist_update(
    *, user: Any, watchlist_id: Any, name: str | None = None, instruments: Sequence[str] | None = None
) -> Watchlist:
    """Rename and/or replace the items with `instruments` (their order is the new order)."""
    watchlist = selectors.watchlist_lock(user=user, watchlist_id=watchlist_id)
    if name is not None:
        watchlist.name = name
        watchlist.full_clean()
        watchlist.save(update_fields=["name", "updated_at"])
    if instruments is not None:
        _replace_items(watchlist, _resolve(instruments))
    return watchlist


@transaction.atomic(durable=True)
def watchlist_delete(*, user: Any, watchlist_id: Any) -> None:
    watchlist = selectors.watchlist_lock(user=user, watchlist_id=watchlist_id)
    watchlist.delete()


@transaction.atomic(durable=True)
def watchlist_item_add(
    *, user: Any, watchlist_id: Any, symbol: str, position: int | None = None
) -> Watchlist:
    """Insert an instrument at `position` (default: the end); later items move down one."""
    watchlist = selectors.watchlist_lock(user=user, watchlist_id=watchlist_id)
    instrument = selectors.instrument_get(symbol=symbol)
    items = list(WatchlistItem.objects.filter(watchlist=watchlist).order_by("position", "id"))
    if any(item.instrument_id == instrument.id for item in items):
        raise WatchlistItemExists(details={"instrument": instrument.symbol})
    _check_item_limit(len(items) + 1)
    ordered = [item.instrument for item in items]
    index = len(ordered) if position is None else max(0, min(position, len(ordered)))
    ordered.insert(index, instrument)
    _replace_items(watchlist, ordered)
    return watchlist


@transaction.atomic(durable=True)
def watchlist_item_remove(*, user: Any, watchlist_id: Any, symbol: str) -> Watchlist:
    watchlist = selectors.watchlist_lock(user=user, watchlist_id=watchlist_id)
    wanted = selectors.normalise_symbol(symbol)
    items = list(WatchlistItem.objects.filter(watchlist=watchlist).select_related("instrument"))
    items.sort(key=lambda item: (item.position, item.id))
    remaining = [item.instrument for item in items if item.instrument.symbol != wanted]
    if len(remaining) == len(items):
        raise WatchlistItemNotFound(details={"instrument": symbol})
    _replace_items(watchlist, remaining)
    return watchlist


@transaction.atomic(durable=True)
def watchlist_share(*, user: Any, watchlist_id: Any) -> Watchlist:
    """Give the list a read-only share token (kept if it already has one)."""
    watchlist = selectors.watchlist_lock(user=user, watchlist_id=watchlist_id)
    if not watchlist.share_token:
        watchlist.share_token = secrets.token_urlsafe(24)
        watchlist.shared_at = timezone.now()
        watchlist.save(update_fields=["share_token", "shared_at", "updated_at"])
        record(user, "watchlist.shared", watchlist)
    return watchlist


@transaction.atomic(durable=True)
def watchlist_unshare(*, user: Any, watchlist_id: Any) -> Watchlist:
    """Revoke the share token: links made with it stop working at once."""
    watchlist = selectors.watchlist_lock(user=user, watchlist_id=watchlist_id)
    if watchlist.share_token:
        watchlist.share_token = None
        watchlist.shared_at = None
        watchlist.save(update_fields=["share_token", "shared_at", "updated_at"])
        record(user, "watchlist.share_revoked", watchlist)
    return watchlist


@transaction.atomic(durable=True)
def watchlist_copy(*, user: Any, token: str, name: str | None = None) -> Watchlist:
    """Copy a shared list (by its share token) into a new list of the caller's."""
    source = selectors.watchlist_get_shared(token=token)
    selectors.user_lock(user=user)
    _check_list_limit(user)
    instruments = [item.instrument for item in source.items.all()]
    _check_item_limit(len(instruments))
    copy = Watchlist(user=user, name=(name or source.name)[:100], copied_from=source)
    copy.full_clean()
    copy.save()
    _replace_items(copy, instruments)
    record(user, "watchlist.copied", copy, {"source_id": str(source.id)})
    return copy
