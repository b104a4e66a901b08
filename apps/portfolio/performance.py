"""Portfolio value over time, derived, never stored: K2 keeps no balance history.

The value at a past time `t` is rebuilt from what is known now:

1. holdings at `t` = the venues' current balances and event positions, with every K2-recorded
   execution after `t` rolled back (a BTC-USD buy of q at p with fee f moved +q BTC and
   -(q*p + f) USD; undoing it gives the holdings before it), and every market settlement after
   `t` rolled back (contracts back, payout out of the cash);
2. each holding valued at its price at `t`: par currencies at 1, crypto and event contracts at
   the close of the market-data candle covering `t`;
3. the last point is the live total (the same number as `/portfolio/summary`).

A point where a held asset has no candle is valued at the latest price and marked
`complete: false`; return figures start at the first complete point. Deposits and withdrawals
are not K2 executions, so they cannot be rolled back: value moved in or out shows as a change of
value (the figures describe the account's value, not a time-weighted return).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from apps.portfolio.pnl import ONE, ZERO
from apps.portfolio.selectors import (
    Portfolio,
    _base_quote,
    _crypto_symbols,
    _par,
    _parse_time,
    portfolio_summary,
)

RANGES: dict[str, tuple[timedelta | None, timedelta, str]] = {
    # range -> (span, step between points, candle interval)
    "1d": (timedelta(days=1), timedelta(minutes=30), "5m"),
    "1w": (timedelta(weeks=1), timedelta(hours=4), "1h"),
    "1m": (timedelta(days=30), timedelta(days=1), "1h"),
    "3m": (timedelta(days=90), timedelta(days=1), "1d"),
    "1y": (timedelta(days=365), timedelta(days=7), "1d"),
    "all": (None, timedelta(days=1), "1d"),
}
INTERVAL_FALLBACK = ("1m", "5m", "1h", "1d")
# A symbol without candles of the range's interval is valued at the nearest interval it has, but
# never at one that would load more than this many candles for it (a year of 1m candles is 525,600).
MAX_CANDLES_PER_SYMBOL = 20_000


def _fallbacks(interval: str, span: timedelta) -> list[str]:
    """The intervals to try after `interval`: the nearest first (a coarser one before a finer one
    as near), none with more than `MAX_CANDLES_PER_SYMBOL` buckets in `span`."""
    from apps.marketdata.choices import interval_delta

    wanted = interval_delta(interval)

    def distance(name: str) -> tuple[float, bool]:
        delta = interval_delta(name)
        return abs(math.log(delta / wanted)), delta < wanted

    others = [
        i for i in INTERVAL_FALLBACK if i != interval and span / interval_delta(i) <= MAX_CANDLES_PER_SYMBOL
    ]
    return sorted(others, key=distance)


MAX_POINTS = 400

Key = tuple[str, str, str]  # ("ccy", venue, currency) | ("event", venue, ticker)


@dataclass(frozen=True)
class Move:
    time: datetime
    deltas: tuple[tuple[Key, Decimal], ...]  # forward changes of holdings


def _moves(portfolio: Portfolio) -> list[Move]:
    moves: list[Move] = []
    registry = portfolio.registry
    net_at: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = defaultdict(list)
    for e in portfolio.executions:
        if e.instrument_type == "event":
            sign = 1 if (e.side == "buy") == ((e.outcome or "yes") == "yes") else -1
            cash = -(e.quantity * e.price + e.fee) if e.side == "buy" else e.quantity * e.price - e.fee
            key: Key = ("event", e.venue, e.instrument)
            moves.append(Move(e.executed_at, ((key, sign * e.quantity), (("ccy", e.venue, "USD"), cash))))
            net_at[(e.venue, e.instrument)].append((e.executed_at, sign * e.quantity))
            continue
        base, quote = _base_quote(e.instrument, registry)
        fee_ccy = (e.fee_currency or quote).upper()
        deltas: dict[Key, Decimal] = defaultdict(Decimal)
        if e.side == "buy":
            deltas[("ccy", e.venue, base)] += e.quantity
            deltas[("ccy", e.venue, quote)] -= e.quantity * e.price
        else:
            deltas[("ccy", e.venue, base)] -= e.quantity
            deltas[("ccy", e.venue, quote)] += e.quantity * e.price
        deltas[("ccy", e.venue, fee_ccy)] -= e.fee
        moves.append(Move(e.executed_at, tuple(deltas.items())))
    for p in portfolio.positions:
        if p.status != "settled" or not p.result:
            continue
        market = next((s.markets.get(p.instrument) for s in portfolio.venues if s.venue == p.venue), None)
        when = _parse_time(market.settle_time if market else None)
        net = sum((q for t, q in net_at[(p.venue, p.instrument)] if t <= when), ZERO)
        payout = net if (net > 0 and p.result == "yes") else (-net if net < 0 and p.result == "no" else ZERO)
        moves.append(
            Move(when, ((("event", p.venue, p.instrument), -net), (("ccy", p.venue, "USD"), payout)))
        )
    moves.sort(key=lambda m: m.time)
    return moves


def _holdings_now(portfolio: Portfolio) -> dict[Key, Decimal]:
    held: dict[Key, Decimal] = defaultdict(Decimal)
    for s in portfolio.venues:
        if not s.has_data:
            continue
        for b in s.balances:
            held[("ccy", s.venue, b.currency.upper())] += b.total
        for pos in s.positions:
            if pos.outcome:
                held[("event", s.venue, pos.instrument)] += pos.quantity
    return held


class _History:
    """Candle closes per symbol, looked up by time."""

    def __init__(
        self, symbols: set[str], interval: str, start: datetime, end: datetime, tolerance: timedelta
    ):
        from apps.marketdata.choices import interval_delta
        from apps.marketdata.models import Candle

        self.tolerance = tolerance
        self.series: dict[str, tuple[list[datetime], list[Decimal]]] = {}
        pending = set(symbols)
        for name in (interval, *_fallbacks(interval, end - start + tolerance)):
            if not pending:
                break
            rows = (
                Candle.objects.filter(
                    instrument__symbol__in=sorted(pending),
                    interval=name,
                    start__gte=start - tolerance,
                    start__lte=end,
                )
                .order_by("instrument__symbol", "start")
                .values_list("instrument__symbol", "start", "close")
            )
            found: dict[str, tuple[list[datetime], list[Decimal]]] = {}
            for symbol, bucket, close in rows:
                times, closes = found.setdefault(symbol, ([], []))
                times.append(bucket + interval_delta(name))  # the close is known at the bucket's end
                closes.append(close)
            self.series.update(found)
            pending -= set(found)

    def price(self, symbol: str, at: datetime) -> Decimal | None:
        series = self.series.get(symbol)
        if not series:
            return None
        times, closes = series
        i = bisect.bisect_right(times, at) - 1
        if i < 0:
            # The bucket covering `at` has not closed yet: accept its close if near enough.
            return closes[0] if times[0] - at <= self.tolerance else None
        if at - times[i] > self.tolerance:
            return None
        return closes[i]


def _points(range_name: str, portfolio: Portfolio, now: datetime) -> tuple[list[datetime], str, timedelta]:
    span, step, interval = RANGES[range_name]
    if span is None:
        firsts = [e.executed_at for e in portfolio.executions]
        # Just before the first execution, so the series opens on the account before trading.
        start = min(firsts) - timedelta(minutes=1) if firsts else now - timedelta(days=1)
        total = now - start
        step = max(total / 60, timedelta(minutes=5))
        interval = "5m" if total <= timedelta(days=2) else "1h" if total <= timedelta(days=60) else "1d"
    else:
        start = now - span
    count = min(max(math.ceil((now - start) / step), 1), MAX_POINTS)
    times = [now - step * i for i in range(count, 0, -1)]
    return [*times, now], interval, step


def performance_get(*, portfolio: Portfolio, range_name: str, now: datetime | None = None) -> dict[str, Any]:
    """The value series and return figures of `range_name` (one of `RANGES`)."""
    now = now or portfolio.as_of
    times, interval, step = _points(range_name, portfolio, now)
    live_total = portfolio_summary(portfolio, day_change=None)["total_value"] / portfolio.rate
    values = _values_at(portfolio, times[:-1], interval, max(step, timedelta(minutes=15)), now)
    points = [*values, (now, live_total, True)]
    rate = portfolio.rate
    complete = [(t, v) for t, v, ok in points if ok]
    first = complete[0] if complete else None
    figures: dict[str, Any] = {
        "start_value": None,
        "end_value": live_total * rate,
        "change": None,
        "change_percent": None,
        "high": None,
        "low": None,
        "max_drawdown_percent": None,
    }
    if first is not None:
        series = [v for _, v in complete]
        peak, drawdown = series[0], ZERO
        for v in series:
            peak = max(peak, v)
            if peak > 0:
                drawdown = max(drawdown, (peak - v) / peak * 100)
        figures.update(
            start_value=first[1] * rate,
            change=(live_total - first[1]) * rate,
            change_percent=(live_total - first[1]) / first[1] * 100 if first[1] else None,
            high=max(series) * rate,
            low=min(series) * rate,
            max_drawdown_percent=drawdown,
        )
    start = times[0]
    realised = settlement_realised = ZERO
    books = portfolio.books
    for book in books.crypto.values():
        realised += sum((r.amount for r in book.realisations if start <= r.time <= now), ZERO)
    for ebook in books.events.values():
        for side in (ebook.yes, ebook.no):
            in_range = [r for r in side.realisations if start <= r.time <= now]
            realised += sum((r.amount for r in in_range), ZERO)
            # Settlement P&L is the part of the range's realised P&L that settlements made.
            settlement_realised += sum((r.amount for r in in_range if r.settlement), ZERO)
    fees = sum((fee for t, fee in books.fee_events if start <= t <= now), ZERO)
    return {
        "range": range_name,
        "currency": portfolio.currency,
        "start": start,
        "end": now,
        "interval_seconds": int(step.total_seconds()),
        "method": "derived",
        "points": [{"time": t, "value": v * rate, "complete": ok} for t, v, ok in points],
        **figures,
        "realized_pnl": realised * rate,
        "settlement_pnl": settlement_realised * rate,
        "fees": fees * rate,
    }


def _values_at(
    portfolio: Portfolio, times: list[datetime], interval: str, tolerance: timedelta, now: datetime
) -> list[tuple[datetime, Decimal, bool]]:
    if not times:
        return []
    par = _par()
    symbols_of = {s.venue: _crypto_symbols(s.venue, portfolio.registry) for s in portfolio.venues}
    moves = _moves(portfolio)
    held = _holdings_now(portfolio)
    live: dict[Key, Decimal | None] = {}
    for p in portfolio.positions:
        if p.instrument_type == "event":
            yes = p.price if p.outcome == "yes" else (ONE - p.price if p.price is not None else None)
            live[("event", p.venue, p.instrument)] = yes
        else:
            live[("ccy", p.venue, p.asset)] = p.price
    symbols: set[str] = set()
    for s in portfolio.venues:
        for b in s.balances:
            symbols.add(symbols_of[s.venue].get(b.currency.upper(), f"{b.currency.upper()}-USD"))
    for e in portfolio.executions:
        symbols.add(e.instrument)
        base, _ = _base_quote(e.instrument, portfolio.registry)
        venue_symbols = symbols_of.get(e.venue, {})
        if base in venue_symbols:
            symbols.add(venue_symbols[base])
    history = _History(symbols, interval, times[0], now, tolerance)

    out: list[tuple[datetime, Decimal, bool]] = []
    pointer = len(moves) - 1
    state = dict(held)
    for t in reversed(times):
        while pointer >= 0 and moves[pointer].time > t:
            for key, delta in moves[pointer].deltas:
                state[key] = state.get(key, ZERO) - delta
            pointer -= 1
        total, complete = ZERO, True
        for key, amount in state.items():
            if not amount:
                continue
            kind, venue, name = key
            if kind == "ccy":
                if name in par:
                    total += amount
                    continue
                symbol = symbols_of.get(venue, {}).get(name, f"{name}-USD")
                price = history.price(symbol, t)
                if price is not None:
                    _, quote = _base_quote(symbol, portfolio.registry)
                    price = price if quote == "USD" or quote in par else None
                if price is None:
                    complete = False
                    price = live.get(key)
                total += amount * (price or ZERO)
            else:
                yes = history.price(name, t)
                if yes is None:
                    complete = False
                    yes = live.get(key)
                if yes is None:
                    continue
                total += amount * yes if amount > 0 else -amount * (ONE - yes)
        out.append((t, total, complete))
    out.reverse()
    return out


def day_change_get(*, portfolio: Portfolio) -> dict[str, Any] | None:
    """Value now minus value 24 hours ago (derived as above); None when that is unknown."""
    now = portfolio.as_of
    then = now - timedelta(days=1)
    values = _values_at(portfolio, [then], "5m", timedelta(hours=1), now)
    if not values or not values[0][2]:
        return None
    before = values[0][1]
    current = portfolio_summary(portfolio, day_change=None)["total_value"] / portfolio.rate
    rate = portfolio.rate
    return {
        "value": (current - before) * rate,
        "percent": (current - before) / before * 100 if before else None,
        "since": then,
    }


def utc_now() -> datetime:
    return datetime.now(UTC)
