"""Reading one user's accounts at every linked venue, in parallel, each within its own deadline.

`venues_fetch` opens one adapter per venue (the user's stored credentials, the configured URLs)
and runs them concurrently with `asyncio.gather`; each venue is bounded by its own timeout, so
the slowest venue sets the time and a failing one only marks itself. Per venue, the first round
trip asks in parallel for balances, positions (when the venue has them) and the prices of the
instruments K2 already knows the user touches; a second round trip prices only instruments
discovered in that answer. Nothing here touches the ORM (it runs inside the event loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import Credentials, ExchangeAdapter, Position, Ticker
from apps.exchanges.calls import CallRecorder, open_adapter
from k2.observability.logging import get_logger

log = get_logger(__name__)

MARKET_CONCURRENCY = 8


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class Quote:
    """A price of one instrument at the venue: last trade, best bid/ask (event: YES prices)."""

    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    time: str | None = None
    source: str = "venue"

    @property
    def mark(self) -> Decimal | None:
        """The valuation price: the last trade, else the mid of bid/ask, else whichever exists."""
        if self.last is not None:
            return self.last
        if self.bid is not None and self.ask is not None:
            return (self.bid + self.ask) / 2
        return self.bid if self.bid is not None else self.ask

    def as_json(self) -> dict[str, Any]:
        return {
            "last": _text(self.last),
            "bid": _text(self.bid),
            "ask": _text(self.ask),
            "time": self.time,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quote:
        return cls(
            last=_dec(data.get("last")),
            bid=_dec(data.get("bid")),
            ask=_dec(data.get("ask")),
            time=data.get("time"),
            source=str(data.get("source") or "venue"),
        )

    @classmethod
    def from_ticker(cls, ticker: Ticker) -> Quote:
        return cls(last=ticker.last, bid=ticker.bid, ask=ticker.ask, time=ticker.time.isoformat())


@dataclass(frozen=True)
class MarketInfo:
    """What valuing an event position needs: the market's status, result and settle time."""

    status: str
    result: str | None
    title: str = ""
    settle_time: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MarketInfo:
        return cls(
            status=str(data.get("status") or ""),
            result=data.get("result") or None,
            title=str(data.get("title") or ""),
            settle_time=data.get("settle_time"),
        )


@dataclass(frozen=True)
class VenuePosition:
    instrument: str
    quantity: Decimal  # signed: negative = NO on Kalshi
    cost: Decimal | None
    realized_pnl: Decimal | None
    outcome: str | None

    @classmethod
    def from_position(cls, position: Position) -> VenuePosition:
        return cls(
            instrument=position.instrument,
            quantity=position.quantity,
            cost=position.cost,
            realized_pnl=position.realized_pnl,
            outcome=str(position.outcome) if position.outcome else None,
        )


@dataclass(frozen=True)
class VenueBalance:
    currency: str
    total: Decimal
    available: Decimal
    on_hold: Decimal


@dataclass
class VenueSnapshot:
    """One venue's answer (or its failure): what the portfolio is computed from. Cached briefly
    in Redis as JSON, never stored in the database."""

    venue: str
    fetched_at: str | None = None
    latency_ms: float | None = None
    balances: list[VenueBalance] = field(default_factory=list)
    positions: list[VenuePosition] = field(default_factory=list)
    quotes: dict[str, Quote] = field(default_factory=dict)
    markets: dict[str, MarketInfo] = field(default_factory=dict)
    quote_error: str | None = None
    # set by the reader, not cached
    status: str = "ok"  # ok | stale | unavailable
    error_code: str | None = None

    @property
    def has_data(self) -> bool:
        return self.fetched_at is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "venue": self.venue,
            "fetched_at": self.fetched_at,
            "latency_ms": self.latency_ms,
            "balances": [{k: str(v) for k, v in asdict(b).items()} for b in self.balances],
            "positions": [
                {
                    "instrument": p.instrument,
                    "quantity": str(p.quantity),
                    "cost": _text(p.cost),
                    "realized_pnl": _text(p.realized_pnl),
                    "outcome": p.outcome,
                }
                for p in self.positions
            ],
            "quotes": {s: q.as_json() for s, q in self.quotes.items()},
            "markets": {s: asdict(m) for s, m in self.markets.items()},
            "quote_error": self.quote_error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VenueSnapshot:
        return cls(
            venue=str(data["venue"]),
            fetched_at=data.get("fetched_at"),
            latency_ms=data.get("latency_ms"),
            balances=[
                VenueBalance(
                    currency=b["currency"],
                    total=Decimal(b["total"]),
                    available=Decimal(b["available"]),
                    on_hold=Decimal(b["on_hold"]),
                )
                for b in data.get("balances", [])
            ],
            positions=[
                VenuePosition(
                    instrument=p["instrument"],
                    quantity=Decimal(p["quantity"]),
                    cost=_dec(p.get("cost")),
                    realized_pnl=_dec(p.get("realized_pnl")),
                    outcome=p.get("outcome"),
                )
                for p in data.get("positions", [])
            ],
            quotes={s: Quote.from_json(q) for s, q in (data.get("quotes") or {}).items()},
            markets={s: MarketInfo.from_json(m) for s, m in (data.get("markets") or {}).items()},
            quote_error=data.get("quote_error"),
        )


@dataclass(frozen=True)
class VenueRequest:
    """What to read at one venue. `crypto_symbols`: currency -> the instrument that prices it."""

    venue: str
    credentials: Credentials
    known_crypto: tuple[str, ...] = ()
    known_events: tuple[str, ...] = ()
    crypto_symbols: Mapping[str, str] = field(default_factory=dict)
    par_currencies: frozenset[str] = frozenset()


@dataclass
class VenueOutcome:
    request: VenueRequest
    snapshot: VenueSnapshot | None
    error_code: str | None
    recorder: CallRecorder


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _market(adapter: ExchangeAdapter, ticker: str, gate: asyncio.Semaphore) -> tuple[Quote, MarketInfo]:
    """An event market's price and status. Venues with a market lookup (Kalshi's `get_market`)
    give status and result too; others give a ticker only."""
    get_market = getattr(adapter, "get_market", None)
    async with gate:
        if get_market is None:
            ticker_row = await adapter.get_ticker(ticker)
            return Quote.from_ticker(ticker_row), MarketInfo(status="open", result=None)
        market = await get_market(ticker)
    settle = getattr(market, "settle_time", None)
    result = getattr(market, "result", None)
    return (
        Quote(
            last=getattr(market, "last_price", None),
            bid=getattr(market, "yes_bid", None),
            ask=getattr(market, "yes_ask", None),
            time=_now(),
        ),
        MarketInfo(
            status=str(getattr(market, "status", "") or ""),
            result=str(result) if result else None,
            title=str(getattr(market, "title", "") or ""),
            settle_time=settle.isoformat() if settle else None,
        ),
    )


async def _prices(
    adapter: ExchangeAdapter, crypto: Sequence[str], events: Sequence[str]
) -> tuple[dict[str, Quote], dict[str, MarketInfo]]:
    quotes: dict[str, Quote] = {}
    markets: dict[str, MarketInfo] = {}
    gate = asyncio.Semaphore(MARKET_CONCURRENCY)
    jobs: list[Any] = []
    if crypto:
        jobs.append(adapter.get_tickers(list(crypto)))
    jobs.extend(_market(adapter, t, gate) for t in events)
    results = await asyncio.gather(*jobs)
    offset = 0
    if crypto:
        wanted = set(crypto)
        for row in results[0]:
            if row.instrument in wanted:
                quotes[row.instrument] = Quote.from_ticker(row)
        offset = 1
    for ticker, (quote, market) in zip(events, results[offset:], strict=True):
        quotes[ticker] = quote
        markets[ticker] = market
    return quotes, markets


async def _empty_list() -> list[Any]:
    return []


async def _read_venue(adapter: ExchangeAdapter, request: VenueRequest, deadline: float) -> VenueSnapshot:
    started = time.monotonic()
    has_positions = bool(adapter.capabilities.get("positions"))
    balances, positions, (quotes, markets) = await asyncio.gather(
        adapter.get_balances(),
        adapter.get_positions() if has_positions else _empty_list(),
        _prices(adapter, request.known_crypto, request.known_events),
    )
    snapshot = VenueSnapshot(
        venue=request.venue,
        balances=[VenueBalance(b.currency, b.total, b.available, b.on_hold) for b in balances],
        positions=[VenuePosition.from_position(p) for p in positions if p.quantity],
        quotes=quotes,
        markets=markets,
    )
    # Second round trip only for what the first answer revealed and K2 did not know about.
    new_crypto = sorted(
        {
            request.crypto_symbols.get(b.currency, f"{b.currency}-USD")
            for b in snapshot.balances
            if b.total and b.currency not in request.par_currencies
        }
        - set(quotes)
    )
    new_events = sorted({p.instrument for p in snapshot.positions if p.outcome} - set(quotes))
    if new_crypto or new_events:
        remaining = deadline - time.monotonic()
        try:
            more_quotes, more_markets = await asyncio.wait_for(
                _prices(adapter, new_crypto, new_events), timeout=max(remaining, 0.001)
            )
            snapshot.quotes.update(more_quotes)
            snapshot.markets.update(more_markets)
        except TimeoutError:
            snapshot.quote_error = "EXCHANGE_TIMEOUT"
        except ex.ExchangeError as error:
            snapshot.quote_error = error.code
    snapshot.fetched_at = _now()
    snapshot.latency_ms = round((time.monotonic() - started) * 1000, 1)
    return snapshot


async def _one(request: VenueRequest, timeout: float) -> VenueOutcome:
    recorder = CallRecorder()
    deadline = time.monotonic() + timeout

    async def run() -> VenueSnapshot:
        async with open_adapter(request.venue, credentials=request.credentials, recorder=recorder) as adapter:
            return await _read_venue(adapter, request, deadline)

    try:
        snapshot = await asyncio.wait_for(run(), timeout=timeout)
    except TimeoutError:
        return VenueOutcome(request, None, "EXCHANGE_TIMEOUT", recorder)
    except ex.ExchangeError as error:
        return VenueOutcome(request, None, error.code, recorder)
    except Exception as error:  # a bug or an unexpected answer must not break the other venues
        log.warning("portfolio_venue_failed", venue=request.venue, error=repr(error))
        return VenueOutcome(request, None, "EXCHANGE_ERROR", recorder)
    return VenueOutcome(request, snapshot, None, recorder)


async def venues_fetch(requests: Iterable[VenueRequest], *, timeout: float) -> list[VenueOutcome]:
    """Read every venue concurrently; each answer or failure comes back, never an exception."""
    return list(await asyncio.gather(*(_one(r, timeout) for r in requests)))
