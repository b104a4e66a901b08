"""Kalshi-only normalised types: the series -> event -> market tree, settlements, lifecycle.

The venue-neutral types in `base.py` cover trading; these add what only event contracts have.
Prices are YES prices in dollars (`Decimal`), times aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from apps.exchanges.adapters.base import InstrumentStatus, Outcome


@dataclass(frozen=True, slots=True)
class KalshiSeries:
    ticker: str
    title: str
    category: str
    frequency: str
    fee_type: str
    fee_multiplier: Decimal


@dataclass(frozen=True, slots=True)
class KalshiMarket:
    ticker: str
    event_ticker: str
    title: str
    yes_sub_title: str
    venue_status: str  # Kalshi's own word: active, closed, determined, finalized, ...
    status: InstrumentStatus
    open_time: datetime | None
    close_time: datetime | None
    settle_time: datetime | None
    result: Outcome | None
    yes_bid: Decimal | None
    yes_ask: Decimal | None
    last_price: Decimal | None
    volume: Decimal
    open_interest: Decimal
    tick_size: Decimal


@dataclass(frozen=True, slots=True)
class KalshiEvent:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    mutually_exclusive: bool
    markets: tuple[KalshiMarket, ...] = ()


@dataclass(frozen=True, slots=True)
class Settlement:
    """A market's payout to this account: `revenue` = $1.00 per winning contract held."""

    instrument: str
    event_ticker: str
    result: Outcome | None
    yes_count: Decimal
    no_count: Decimal
    revenue: Decimal
    fee: Decimal
    time: datetime | None


@dataclass(frozen=True, slots=True)
class MarketLifecycle:
    """A `market_lifecycle_v2` message: created, activated, deactivated, close_date_updated,
    determined, settled, ..."""

    instrument: str
    event_type: str
    result: Outcome | None
    close_time: datetime | None
    settled_time: datetime | None
    settlement_value: Decimal | None
    time: datetime
