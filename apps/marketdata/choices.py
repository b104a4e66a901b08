"""Market data choices: instrument types and statuses, candle intervals."""

from __future__ import annotations

from datetime import timedelta

from django.db import models


class InstrumentType(models.TextChoices):
    CRYPTO = "crypto", "Crypto"
    EVENT = "event", "Event contract"


class InstrumentStatus(models.TextChoices):
    OPEN = "open", "Open"
    PAUSED = "paused", "Paused"
    CLOSED = "closed", "Closed"
    SETTLED = "settled", "Settled"
    DELISTED = "delisted", "Delisted"  # no longer listed by its venue


class CandleInterval(models.TextChoices):
    M1 = "1m", "1 minute"
    M5 = "5m", "5 minutes"
    H1 = "1h", "1 hour"
    D1 = "1d", "1 day"


INTERVAL_SECONDS: dict[str, int] = {
    CandleInterval.M1: 60,
    CandleInterval.M5: 300,
    CandleInterval.H1: 3600,
    CandleInterval.D1: 86400,
}


def interval_delta(interval: str) -> timedelta:
    return timedelta(seconds=INTERVAL_SECONDS[interval])


class CandleSource(models.TextChoices):
    TRADES = "trades", "Aggregated from trades"
    VENUE = "venue", "Venue candle endpoint"
