"""Portfolio reads: one user's balances, positions, P&L and value across every linked venue.

`portfolio_get` is the one entry point the API uses. It reads the user's venues (cached briefly,
in parallel, bounded; see `venues` and `cache`), folds K2's recorded executions into average-cost
books (`pnl`), values everything in USD at the latest price, and returns a `Portfolio`.
Nothing is written to the database; balances are never stored.

Valuation:
- USD, USDT and USDC (`K2_PORTFOLIO_USD_PAR_CURRENCIES`) count at 1 USD unless the market-data
  cache holds a live price for them (`USDT-USD`);
- another currency is valued at its instrument's latest price (the market-data cache when it is
  live, else the venue's ticker read with the balances): the venue's `{C}-USD`, else
  `{C}-USDT`/`{C}-USDC` (at par); a currency with no price is listed under `unpriced`;
- an event position is valued at its market's price for its outcome (YES: the YES price, NO:
  1 - the YES price); a market with a result is valued at its payout (1.00 or 0).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings

from apps.exchanges.selectors import exchange_link_list
from apps.exchanges.services import link_credentials
from apps.exchanges.venues import VENUES
from apps.portfolio import cache
from apps.portfolio.pnl import ONE, ZERO, Book, EventBook, Method
from apps.portfolio.venues import (
    MarketInfo,
    Quote,
    VenueOutcome,
    VenueRequest,
    VenueSnapshot,
    venues_fetch,
)
from apps.trading.models import OrderExecution
from k2.observability.logging import get_logger

log = get_logger(__name__)

SETTLED_STATUSES = frozenset({"settled", "finalized"})


# ---- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """One recorded fill, flattened for the books."""

    venue: str
    instrument: str
    instrument_type: str
    side: str
    outcome: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    executed_at: datetime


@dataclass(frozen=True)
class InstrumentInfo:
    symbol: str
    venue: str
    instrument_type: str
    base: str
    quote: str
    status: str = ""
    result: str = ""
    title: str = ""
    settle_time: datetime | None = None


def _executions(user: Any) -> list[Execution]:
    rows = (
        OrderExecution.objects.filter(user=user)
        .order_by("executed_at", "id")
        .values_list(
            "exchange",
            "instrument",
            "order__instrument_type",
            "side",
            "outcome",
            "quantity",
            "price",
            "fee",
            "fee_currency",
            "executed_at",
        )
    )
    return [Execution(*row) for row in rows]


def _registry(venues: Iterable[str], symbols: Iterable[str]) -> dict[str, InstrumentInfo]:
    """Instrument facts for the given symbols and every crypto instrument of the given venues."""
    from django.db.models import Q

    from apps.marketdata.models import Instrument

    venue_list, symbol_list = list(venues), list(symbols)
    if not venue_list and not symbol_list:
        return {}
    rows = Instrument.objects.filter(
        Q(symbol__in=symbol_list) | Q(venue__in=venue_list, instrument_type="crypto")
    ).values_list(
        "symbol", "venue", "instrument_type", "base", "quote", "status", "result", "title", "settle_time"
    )
    return {row[0]: InstrumentInfo(*row) for row in rows}


def _base_quote(symbol: str, registry: dict[str, InstrumentInfo]) -> tuple[str, str]:
    info = registry.get(symbol)
    if info is not None and info.base and info.quote:
        return info.base.upper(), info.quote.upper()
    base, _, quote = symbol.partition("-")
    return base.upper(), (quote or "USD").upper()


def _par() -> frozenset[str]:
    return frozenset(c.strip().upper() for c in settings.K2_PORTFOLIO_USD_PAR_CURRENCIES if c.strip())


def _crypto_symbols(venue: str, registry: dict[str, InstrumentInfo]) -> dict[str, str]:
    """currency -> the instrument that prices it at `venue`: `{C}-USD`, else a par-quoted one."""
    par = _par()
    rank = {"USD": 0, **dict.fromkeys(sorted(par - {"USD"}), 1)}
    best: dict[str, tuple[int, str]] = {}
    for info in registry.values():
        if info.venue != venue or info.instrument_type != "crypto":
            continue
        base, quote = info.base.upper(), info.quote.upper()
        if quote not in rank or base in par:
            continue
        if base not in best or rank[quote] < best[base][0]:
            best[base] = (rank[quote], info.symbol)
    return {base: symbol for base, (_, symbol) in best.items()}


# ---- reading the venues -----------------------------------------------------------------------


def _venue_snapshots(
    user: Any, executions: list[Execution], registry: dict[str, InstrumentInfo]
) -> list[VenueSnapshot]:
    links = [
        link for link in exchange_link_list(user=user) if link.status == "active" and link.exchange in VENUES
    ]
    venues = [link.exchange for link in links]
    if not venues:
        return []
    generation, fresh, last = cache.snapshots_read(user.pk, venues)
    requests: list[VenueRequest] = []
    par = _par()
    for link in links:
        if link.exchange in fresh:
            continue
        previous = last.get(link.exchange)
        mine = [e for e in executions if e.venue == link.exchange]
        crypto = {e.instrument for e in mine if e.instrument_type != "event"}
        events = {e.instrument for e in mine if e.instrument_type == "event"}
        if previous is not None:
            crypto |= {s for s in previous.quotes if s not in previous.markets}
            events |= set(previous.markets)
        requests.append(
            VenueRequest(
                venue=link.exchange,
                credentials=link_credentials(link),
                known_crypto=tuple(sorted(crypto)),
                known_events=tuple(sorted(events)),
                crypto_symbols=_crypto_symbols(link.exchange, registry),
                par_currencies=par,
            )
        )
    outcomes: list[VenueOutcome] = []
    if requests:
        outcomes = async_to_sync(venues_fetch)(
            requests, timeout=float(settings.K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS)
        )
    results: dict[str, VenueSnapshot] = {}
    for venue, snapshot in fresh.items():
        results[venue] = replace(snapshot, status="ok")
    for outcome in outcomes:
        venue = outcome.request.venue
        try:
            outcome.recorder.flush(user, None)
        except Exception as error:  # auditing must not take the read down
            log.warning("portfolio_audit_failed", venue=venue, error=repr(error))
        if outcome.snapshot is not None:
            cache.snapshot_write(user.pk, outcome.snapshot, generation=generation)
            results[venue] = outcome.snapshot
        elif venue in last:
            results[venue] = replace(last[venue], status="stale", error_code=outcome.error_code)
        else:
            results[venue] = VenueSnapshot(venue=venue, status="unavailable", error_code=outcome.error_code)
    return [results[v] for v in venues]


# ---- the portfolio ----------------------------------------------------------------------------


@dataclass
class BalanceRow:
    venue: str
    currency: str
    total: Decimal
    available: Decimal
    on_hold: Decimal
    price: Decimal | None
    value: Decimal | None
    venue_status: str


@dataclass
class PositionRow:
    venue: str
    instrument: str
    instrument_type: str
    asset: str
    outcome: str | None
    status: str  # open | closed | settled
    quantity: Decimal
    quantity_tracked: Decimal
    average_price: Decimal | None
    price: Decimal | None
    price_source: str | None
    market_value: Decimal | None
    cost_basis: Decimal | None
    cost_basis_source: str | None
    unrealized_pnl: Decimal | None
    realized_pnl: Decimal
    settlement_pnl: Decimal
    fees: Decimal
    max_payout: Decimal | None = None
    market_status: str | None = None
    result: str | None = None
    title: str = ""
    venue_status: str = "ok"


@dataclass
class Portfolio:
    user_id: Any
    currency: str
    requested_currency: str
    rate: Decimal  # display units per USD
    venues: list[VenueSnapshot]
    balances: list[BalanceRow]
    positions: list[PositionRow]
    executions: list[Execution]
    registry: dict[str, InstrumentInfo]
    books: Books
    unpriced: list[dict[str, Any]] = field(default_factory=list)
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def venue_names(self) -> list[str]:
        return [v.venue for v in self.venues]


def _feed_prices(symbols: set[str], registry: dict[str, InstrumentInfo]) -> dict[str, Decimal]:
    """Live (not stale) prices from the market-data cache, when the feed is running."""
    wanted = sorted(s for s in symbols if s in registry)
    if not wanted:
        return {}
    try:
        from apps.marketdata import cache as md_cache

        snaps = md_cache.prices_read(wanted, {s: registry[s].venue for s in wanted})
    except Exception as error:  # market data is an optimisation here, never a dependency
        log.info("portfolio_feed_prices_unavailable", error=repr(error))
        return {}
    return {s: Decimal(snap.price) for s, snap in snaps.items() if snap and snap.price and not snap.stale}


class _Pricer:
    """USD prices of currencies and instruments, from the feed first, then the venue's quotes."""

    def __init__(
        self, snapshots: list[VenueSnapshot], registry: dict[str, InstrumentInfo], feed: dict[str, Decimal]
    ) -> None:
        self.par = _par()
        self.registry = registry
        self.feed = feed
        self.quotes: dict[str, dict[str, Quote]] = {s.venue: s.quotes for s in snapshots}
        self.symbols = {s.venue: _crypto_symbols(s.venue, registry) for s in snapshots}

    def instrument(self, venue: str, symbol: str) -> tuple[Decimal | None, str | None]:
        if symbol in self.feed:
            return self.feed[symbol], "feed"
        quote = self.quotes.get(venue, {}).get(symbol)
        mark = quote.mark if quote else None
        return (mark, "venue") if mark is not None else (None, None)

    def symbol_for(self, venue: str, currency: str) -> str:
        return self.symbols.get(venue, {}).get(currency) or f"{currency}-USD"

    def currency(self, venue: str, currency: str) -> tuple[Decimal | None, str | None]:
        currency = currency.upper()
        if currency in self.par:
            live = self.feed.get(f"{currency}-USD")
            return (live, "feed") if live is not None else (ONE, "par")
        symbol = self.symbol_for(venue, currency)
        price, source = self.instrument(venue, symbol)
        if price is None:
            return None, None
        _, quote = _base_quote(symbol, self.registry)
        if quote != "USD":
            quote_price, _ = self.currency(venue, quote)
            if quote_price is None:
                return None, None
            price = price * quote_price
        return price, source


def _usd_of(venue: str, currency: str, pricer: _Pricer) -> Decimal | None:
    """What one unit of `currency` is worth in USD (USD and its par coins: 1 or their feed)."""
    if currency == "USD":
        return ONE
    return pricer.currency(venue, currency)[0]


def _fee_usd(execution: Execution, base: str, quote: str, pricer: _Pricer) -> tuple[Decimal, Decimal]:
    """(fee value in USD, fee taken from the base quantity). A fee in the base currency is worth
    the trade's price in the quote currency, and the quote currency its USD price: on ETH-BTC a
    0.0001 BTC fee is 0.0001 times BTC's USD price, not 0.0001 USD."""
    currency = (execution.fee_currency or quote).upper()
    if execution.fee == 0:
        return ZERO, ZERO
    if currency == base:
        quote_usd = _usd_of(execution.venue, quote, pricer)
        return (execution.fee * execution.price * quote_usd if quote_usd is not None else ZERO), execution.fee
    price = _usd_of(execution.venue, currency, pricer)
    return (execution.fee * price if price is not None else ZERO), ZERO


@dataclass
class Books:
    crypto: dict[tuple[str, str], Book]  # (venue, asset)
    events: dict[tuple[str, str], EventBook]  # (venue, ticker)
    fee_events: list[tuple[datetime, Decimal]]


def books_build(
    executions: list[Execution], registry: dict[str, InstrumentInfo], pricer: _Pricer, *, method: Method
) -> Books:
    crypto: dict[tuple[str, str], Book] = {}
    events: dict[tuple[str, str], EventBook] = {}
    fee_events: list[tuple[datetime, Decimal]] = []
    for e in executions:
        if e.instrument_type == "event":
            book = events.setdefault((e.venue, e.instrument), EventBook(method=method))
            book.trade(
                side=e.side,
                outcome=e.outcome or "yes",
                quantity=e.quantity,
                price=e.price,
                fee=e.fee,
                when=e.executed_at,
            )
            fee_events.append((e.executed_at, e.fee))
            continue
        base, quote = _base_quote(e.instrument, registry)
        fee, base_fee = _fee_usd(e, base, quote, pricer)
        quote_price = (
            ONE if quote == "USD" or quote in pricer.par else pricer.currency(e.venue, quote)[0] or ONE
        )
        gross = e.quantity * e.price * quote_price
        cbook = crypto.setdefault((e.venue, base), Book(method=method))
        if e.side == "buy":
            cbook.buy(
                quantity=e.quantity - base_fee,
                cost=gross,
                fee=fee if not base_fee else ZERO,
                when=e.executed_at,
            )
            if base_fee:
                cbook.fees += fee
        else:
            cbook.sell(quantity=e.quantity, proceeds=gross, fee=fee, when=e.executed_at)
        fee_events.append((e.executed_at, fee))
    return Books(crypto=crypto, events=events, fee_events=fee_events)


def _market(snapshot: VenueSnapshot, ticker: str, registry: dict[str, InstrumentInfo]) -> MarketInfo | None:
    market = snapshot.markets.get(ticker)
    if market is not None:
        return market
    info = registry.get(ticker)
    if info is not None and (info.status or info.result):
        settle = info.settle_time.isoformat() if info.settle_time else None
        return MarketInfo(
            status=info.status, result=info.result or None, title=info.title, settle_time=settle
        )
    return None


def _parse_time(value: str | None) -> datetime:
    if value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return datetime.now(UTC)


def _crypto_positions(
    snapshot: VenueSnapshot, books: Books, pricer: _Pricer
) -> tuple[list[PositionRow], list[BalanceRow], list[dict[str, Any]]]:
    venue = snapshot.venue
    positions: list[PositionRow] = []
    balances: list[BalanceRow] = []
    unpriced: list[dict[str, Any]] = []
    held: dict[str, Decimal] = {}
    for b in snapshot.balances:
        price, _ = pricer.currency(venue, b.currency)
        value = b.total * price if price is not None else None
        balances.append(
            BalanceRow(venue, b.currency, b.total, b.available, b.on_hold, price, value, snapshot.status)
        )
        if price is None and b.total:
            unpriced.append({"venue": venue, "currency": b.currency, "quantity": b.total})
        if b.currency.upper() not in pricer.par and b.total:
            held[b.currency.upper()] = b.total
    assets = set(held) | {asset for (v, asset) in books.crypto if v == venue}
    for asset in sorted(assets):
        book = books.crypto.get((venue, asset), Book())
        quantity = held.get(asset, ZERO) if snapshot.has_data else book.quantity
        symbol = pricer.symbol_for(venue, asset)
        price, source = pricer.currency(venue, asset)
        basis_qty = min(quantity, book.quantity)
        cost_basis = book.cost * basis_qty / book.quantity if book.quantity > 0 and basis_qty > 0 else None
        market_value = quantity * price if price is not None else None
        unrealized = basis_qty * price - cost_basis if cost_basis is not None and price is not None else None
        positions.append(
            PositionRow(
                venue=venue,
                instrument=symbol,
                instrument_type="crypto",
                asset=asset,
                outcome=None,
                status="open" if quantity > 0 else "closed",
                quantity=quantity,
                quantity_tracked=book.quantity,
                average_price=book.average_price,
                price=price,
                price_source=source,
                market_value=market_value,
                cost_basis=cost_basis,
                cost_basis_source="k2" if cost_basis is not None else None,
                unrealized_pnl=unrealized,
                realized_pnl=book.realised,
                settlement_pnl=ZERO,
                fees=book.fees,
                venue_status=snapshot.status,
            )
        )
    return positions, balances, unpriced


def _event_positions(
    snapshot: VenueSnapshot, books: Books, pricer: _Pricer, registry: dict[str, InstrumentInfo]
) -> list[PositionRow]:
    venue = snapshot.venue
    venue_positions = {p.instrument: p for p in snapshot.positions if p.outcome}
    tickers = set(venue_positions) | {t for (v, t) in books.events if v == venue}
    rows: list[PositionRow] = []
    for ticker in sorted(tickers):
        book = books.events.get((venue, ticker), EventBook())
        market = _market(snapshot, ticker, registry)
        vp = venue_positions.get(ticker)
        result = market.result if market else None
        settled = bool(market and market.status in SETTLED_STATUSES and result)
        held_before = book.held_outcome
        if settled and vp is None and result:
            book.settle(result=result, when=_parse_time(market.settle_time if market else None))
        if vp is not None:
            outcome, contracts = vp.outcome or "yes", abs(vp.quantity)
        else:
            # Nothing at the venue (closed, settled) or the venue did not answer: K2's own record.
            outcome = held_before or "yes"
            contracts = ZERO if snapshot.has_data else book.side(outcome).quantity
        side = book.side(outcome)
        yes_price, source = pricer.instrument(venue, ticker)
        if result:
            price: Decimal | None = ONE if outcome == result else ZERO
            source = "payout"
        elif yes_price is not None:
            price = yes_price if outcome == "yes" else ONE - yes_price
        else:
            price = None
        basis_qty = min(contracts, side.quantity)
        cost_basis: Decimal | None = None
        basis_source: str | None = None
        if side.quantity > 0 and basis_qty > 0:
            cost_basis, basis_source = side.cost * basis_qty / side.quantity, "k2"
        elif vp is not None and vp.cost is not None and contracts > 0:
            cost_basis, basis_source, basis_qty = abs(vp.cost), "venue", contracts
        market_value = contracts * price if price is not None else None
        unrealized = (
            basis_qty * price - cost_basis
            if cost_basis is not None and price is not None and contracts
            else None
        )
        realised = book.yes.realised + book.no.realised
        status = "open" if contracts > 0 else ("settled" if book.settled_outcome or settled else "closed")
        rows.append(
            PositionRow(
                venue=venue,
                instrument=ticker,
                instrument_type="event",
                asset=ticker,
                outcome=outcome,
                status=status,
                quantity=contracts,
                quantity_tracked=side.quantity if contracts else book.settled_quantity,
                average_price=side.average_price,
                price=price,
                price_source=source,
                market_value=market_value,
                cost_basis=cost_basis,
                cost_basis_source=basis_source,
                unrealized_pnl=unrealized,
                realized_pnl=realised,
                settlement_pnl=book.yes.settlement_pnl + book.no.settlement_pnl,
                fees=book.yes.fees + book.no.fees,
                max_payout=contracts * ONE,
                market_status=market.status if market else None,
                result=result,
                title=market.title if market else "",
                venue_status=snapshot.status,
            )
        )
    return rows


def _display_rate(currency: str, feed_prices: dict[str, Decimal]) -> tuple[str, Decimal]:
    """(currency used, display units per USD). Without a live price the answer stays in USD."""
    if currency == "USD":
        return "USD", ONE
    price = feed_prices.get(f"{currency}-USD")
    if price:
        return currency, ONE / price
    return "USD", ONE


def portfolio_get(*, user: Any, method: Method = "average") -> Portfolio:
    """The user's whole portfolio, now. Each venue is read (or served from the short cache)
    within `K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS`; a venue that fails is marked, never fatal."""
    executions = _executions(user)
    links_venues = [link.exchange for link in exchange_link_list(user=user)]
    registry = _registry(links_venues, {e.instrument for e in executions})
    snapshots = _venue_snapshots(user, executions, registry)
    wanted = set(registry)
    requested = getattr(user, "display_currency", "USD") or "USD"
    feed = _feed_prices(wanted | {f"{c}-USD" for c in _par() | {requested}}, registry)
    currency, rate = _display_rate(requested, feed)
    pricer = _Pricer(snapshots, registry, feed)
    books = books_build(executions, registry, pricer, method=method)
    balances: list[BalanceRow] = []
    positions: list[PositionRow] = []
    unpriced: list[dict[str, Any]] = []
    for snapshot in snapshots:
        p, b, u = _crypto_positions(snapshot, books, pricer)
        balances += b
        unpriced += u
        positions += [
            row for row in p if row.quantity or row.quantity_tracked or row.realized_pnl or row.fees
        ]
        positions += _event_positions(snapshot, books, pricer, registry)
    return Portfolio(
        user_id=user.pk,
        currency=currency,
        requested_currency=requested,
        rate=rate,
        venues=snapshots,
        balances=balances,
        positions=positions,
        executions=executions,
        registry=registry,
        books=books,
        unpriced=unpriced,
    )


def position_get(*, user: Any, instrument: str) -> list[PositionRow]:
    """The user's position(s) in one instrument (one per venue holding it; usually one)."""
    symbol = instrument.strip().upper()
    return [p for p in portfolio_get(user=user).positions if p.instrument.upper() == symbol]


# ---- summary ------------------------------------------------------------------------------------


def _pct(part: Decimal, whole: Decimal) -> Decimal | None:
    return part / whole * 100 if whole else None


def portfolio_summary(portfolio: Portfolio, *, day_change: dict[str, Any] | None) -> dict[str, Any]:
    """Totals and allocation, in the display currency."""
    rate = portfolio.rate
    by_venue: dict[str, Decimal] = defaultdict(Decimal)
    by_asset: dict[str, Decimal] = defaultdict(Decimal)
    by_type: dict[str, Decimal] = defaultdict(Decimal)
    par = _par()
    for b in portfolio.balances:
        if b.value is None:
            continue
        by_venue[b.venue] += b.value
        by_asset[b.currency] += b.value
        by_type["cash" if b.currency.upper() in par else "crypto"] += b.value
    unrealized = realized = fees = ZERO
    for p in portfolio.positions:
        realized += p.realized_pnl
        fees += p.fees
        unrealized += p.unrealized_pnl or ZERO
        if p.instrument_type == "event" and p.market_value is not None:
            by_venue[p.venue] += p.market_value
            by_asset[p.instrument] += p.market_value
            by_type["event"] += p.market_value
    total = sum(by_venue.values(), ZERO)

    def allocation(values: dict[str, Decimal], key: str) -> list[dict[str, Any]]:
        return [
            {key: name, "value": value * rate, "percent": _pct(value, total)}
            for name, value in sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    return {
        "currency": portfolio.currency,
        "requested_currency": portfolio.requested_currency,
        "total_value": total * rate,
        "cash_value": by_type.get("cash", ZERO) * rate,
        "unrealized_pnl": unrealized * rate,
        "realized_pnl": realized * rate,
        "fees": fees * rate,
        "day_change": day_change,
        "allocation": {
            "by_venue": allocation(by_venue, "venue"),
            "by_asset": allocation(by_asset, "asset"),
            "by_instrument_type": allocation(by_type, "instrument_type"),
        },
        "venues": venue_statuses(portfolio),
        "unpriced": portfolio.unpriced,
        "as_of": portfolio.as_of,
    }


def venue_statuses(portfolio: Portfolio) -> list[dict[str, Any]]:
    now = portfolio.as_of
    rows = []
    for s in portfolio.venues:
        as_of = datetime.fromisoformat(s.fetched_at) if s.fetched_at else None
        rows.append(
            {
                "venue": s.venue,
                "status": s.status,
                "error_code": s.error_code,
                "as_of": as_of,
                "age_seconds": round((now - as_of).total_seconds(), 3) if as_of else None,
                "latency_ms": s.latency_ms,
                "prices_complete": s.quote_error is None,
            }
        )
    return rows
