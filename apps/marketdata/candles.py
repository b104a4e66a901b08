"""Candle bucket arithmetic (pure; no database)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from apps.exchanges.adapters.base import Candle as VenueCandle
from apps.marketdata.choices import INTERVAL_SECONDS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(when: datetime, interval: str) -> datetime:
    """The start of the `interval` bucket holding `when` (UTC-aligned; days start at 00:00 UTC)."""
    seconds = INTERVAL_SECONDS[interval]
    offset = int((when - EPOCH).total_seconds() // seconds) * seconds
    return EPOCH + timedelta(seconds=offset)


def bucket_end(start: datetime, interval: str) -> datetime:
    return start + timedelta(seconds=INTERVAL_SECONDS[interval])


def aggregate(candles: Sequence[VenueCandle], interval: str) -> list[VenueCandle]:
    """Roll finer venue candles up into `interval` buckets (for intervals a venue lacks)."""
    out: dict[datetime, VenueCandle] = {}
    for candle in sorted(candles, key=lambda c: c.start):
        start = bucket_start(candle.start, interval)
        prev = out.get(start)
        if prev is None:
            out[start] = VenueCandle(
                instrument=candle.instrument,
                timeframe=interval,
                start=start,
                open=candle.open,
                high=candle.high,
                low=candle.low,
                close=candle.close,
                volume=candle.volume,
            )
        else:
            out[start] = VenueCandle(
                instrument=candle.instrument,
                timeframe=interval,
                start=start,
                open=prev.open,
                high=max(prev.high, candle.high),
                low=min(prev.low, candle.low),
                close=candle.close,
                volume=prev.volume + candle.volume,
            )
    return list(out.values())


def timeframe_seconds(timeframe: str) -> int | None:
    """Seconds of a venue timeframe name (`1m`, `5m`, `1h`, `1D`, `M1`, `H1`, `D1`...), or None."""
    tf = timeframe.strip()
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(tf) >= 2 and tf[0].isalpha() and tf[1:].isdigit():  # legacy M1 / H1 / D1
        unit, number = tf[0].lower(), tf[1:]
    elif len(tf) >= 2 and tf[:-1].isdigit():
        unit, number = tf[-1], tf[:-1]
        if unit == "M":  # 1M is a month at most venues: no fixed length
            return None
        unit = unit.lower()
    else:
        return None
    if unit not in units:
        return None
    return int(number) * units[unit]
