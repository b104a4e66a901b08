"""The simulator's catalogue: series -> events -> markets, dated from the day the simulator starts.

- `KXBTC`: Bitcoin price range on a day a week out, four bucket markets (`KXBTC-<YYMONDD>-B<floor>`),
  mutually exclusive, taker fees only.
- `KXHIGHNY`: New York City high temperature two days out, three markets (two buckets, one threshold).
- `FED`: the next Fed rate decision, two threshold markets; its fee type also charges makers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass
class SeriesSeed:
    ticker: str
    title: str
    category: str
    frequency: str
    fee_type: str
    fee_multiplier: Decimal = Decimal(1)
    tags: list[str] = field(default_factory=list)


@dataclass
class MarketSeed:
    ticker: str
    title: str
    yes_sub_title: str
    start_price: Decimal
    strike_type: str
    floor_strike: float | None = None
    cap_strike: float | None = None


@dataclass
class EventSeed:
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    mutually_exclusive: bool
    open_time: datetime
    close_time: datetime
    markets: list[MarketSeed]


def date_code(day: datetime) -> str:
    return f"{day:%y}{MONTHS[day.month - 1]}{day:%d}"


def catalogue(now: datetime | None = None) -> tuple[list[SeriesSeed], list[EventSeed]]:
    today = (now or datetime.now(UTC)).date()
    opened = datetime.combine(today - timedelta(days=1), time(14, 0), tzinfo=UTC)
    btc_day = datetime.combine(today + timedelta(days=7), time(22, 0), tzinfo=UTC)
    weather_day = datetime.combine(today + timedelta(days=2), time(4, 59), tzinfo=UTC)
    fed_day = datetime.combine(today + timedelta(days=21), time(18, 0), tzinfo=UTC)
    d = Decimal
    series = [
        SeriesSeed("KXBTC", "Bitcoin price range", "Crypto", "daily", "quadratic", tags=["BTC"]),
        SeriesSeed("KXHIGHNY", "Highest temperature in NYC", "Climate and Weather", "daily", "quadratic"),
        SeriesSeed("FED", "Fed funds rate", "Economics", "custom", "quadratic_with_maker_fees"),
    ]
    btc = f"KXBTC-{date_code(btc_day)}"
    nyc = f"KXHIGHNY-{date_code(weather_day)}"
    fed = f"FED-{fed_day:%y}{MONTHS[fed_day.month - 1]}"
    events = [
        EventSeed(
            btc,
            "KXBTC",
            f"Bitcoin price range on {btc_day:%b %d, %Y} at 5pm EST?",
            f"On {btc_day:%b %d}",
            True,
            opened,
            btc_day,
            [
                MarketSeed(
                    f"{btc}-B95000",
                    "Bitcoin $95,000 to $99,999.99",
                    "$95,000 to 99,999.99",
                    d("0.22"),
                    "between",
                    95000,
                    99999.99,
                ),
                MarketSeed(
                    f"{btc}-B100000",
                    "Bitcoin $100,000 to $104,999.99",
                    "$100,000 to 104,999.99",
                    d("0.38"),
                    "between",
                    100000,
                    104999.99,
                ),
                MarketSeed(
                    f"{btc}-B105000",
                    "Bitcoin $105,000 to $109,999.99",
                    "$105,000 to 109,999.99",
                    d("0.25"),
                    "between",
                    105000,
                    109999.99,
                ),
                MarketSeed(
                    f"{btc}-B110000",
                    "Bitcoin $110,000 or above",
                    "$110,000 or above",
                    d("0.12"),
                    "greater",
                    110000,
                    None,
                ),
            ],
        ),
        EventSeed(
            nyc,
            "KXHIGHNY",
            f"Highest temperature in NYC on {weather_day - timedelta(days=1):%b %d, %Y}?",
            f"On {weather_day - timedelta(days=1):%b %d}",
            True,
            opened,
            weather_day,
            [
                MarketSeed(f"{nyc}-B45.5", "45° to 46°", "45° to 46°", d("0.30"), "between", 45, 46),
                MarketSeed(f"{nyc}-B47.5", "47° to 48°", "47° to 48°", d("0.41"), "between", 47, 48),
                MarketSeed(f"{nyc}-T48", "49° or above", "49° or above", d("0.27"), "greater", 48, None),
            ],
        ),
        EventSeed(
            fed,
            "FED",
            f"Fed rate after the {fed_day:%b %Y} meeting?",
            f"{fed_day:%b %Y} meeting",
            False,
            opened,
            fed_day,
            [
                MarketSeed(f"{fed}-T3.75", "Above 3.75%", "Above 3.75%", d("0.64"), "greater", 3.75, None),
                MarketSeed(f"{fed}-T4.00", "Above 4.00%", "Above 4.00%", d("0.18"), "greater", 4.00, None),
            ],
        ),
    ]
    return series, events
