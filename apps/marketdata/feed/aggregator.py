"""The price aggregator of one venue: normalises adapter events into one price per instrument,
drops duplicates and out-of-order input, keeps a sequence-checked local book, and says what to
publish. Pure (no I/O), so every rule is unit-tested on its own.

Rules:
- bid/ask come from the local book while it is valid (built from a snapshot, deltas applied in
  sequence); without a valid book (before the snapshot, after a gap or a crossed book) they come
  from the venue's ticker, which is consistent on its own. A crossed book is never published: the
  book is dropped and the feed asks for a fresh snapshot.
- `price` is the newest of the last trade and the ticker's last price.
- A ticker older than the one we hold, a book delta at or below the book's sequence, and a trade
  id seen before are dropped (counted in `stats`).
- An update that changes nothing a client sees is not published.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from apps.exchanges.adapters.base import BookUpdate, LocalOrderBook, Ticker, Trade
from apps.marketdata.cache import PriceSnapshot

PERCENT = Decimal(100)
CHANGE_QUANTUM = Decimal("0.01")
SEEN_TRADES = 20_000


def _s(value: Decimal | None) -> str | None:
    if value is None or not value.is_finite():
        return None
    return format(value, "f")


def _positive(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value.is_finite() and value > 0 else None


@dataclass
class InstrumentState:
    symbol: str
    book: LocalOrderBook
    book_valid: bool = False
    ticker: Ticker | None = None
    last_trade: Trade | None = None
    published: PriceSnapshot | None = None


@dataclass
class AggregatorStats:
    tickers: int = 0
    book_updates: int = 0
    trades: int = 0
    dropped_tickers: int = 0
    dropped_book_updates: int = 0
    duplicate_trades: int = 0
    crossed_books: int = 0
    resyncs: int = 0
    published: int = 0
    unchanged: int = 0


@dataclass
class Outcome:
    """What one event asks the feed to do."""

    publish: list[PriceSnapshot] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    resubscribe: bool = False


class PriceAggregator:
    def __init__(self, venue: str, instruments: dict[str, str]) -> None:
        """`instruments`: canonical symbol -> venue symbol of every streamed instrument."""
        self.venue = venue
        self.venue_symbols = dict(instruments)
        self.states = {s: InstrumentState(symbol=s, book=LocalOrderBook(s)) for s in instruments}
        self.stats = AggregatorStats()
        # symbol -> price 24 h ago (from K2's candles): venues report 24 h change in different
        # units, so K2 computes it the same way for all of them
        self.reference_24h: dict[str, Decimal] = {}
        self._seen_trades: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ---- lifecycle ------------------------------------------------------------------------
    def reset_books(self) -> None:
        """A new connection: every book waits for its snapshot again."""
        for state in self.states.values():
            state.book_valid = False
            state.book = LocalOrderBook(state.symbol)
            state.published = None  # republish every instrument with its first fresh data

    def on_resync(self, detail: str) -> list[str]:
        """The adapter found a sequence gap and resubscribed: drop the named instrument's book
        (every book when the detail names none) until its fresh snapshot arrives."""
        self.stats.resyncs += 1
        hit = [s for s, vs in self.venue_symbols.items() if _mentions(detail, vs) or _mentions(detail, s)]
        for symbol in hit or list(self.states):
            self.states[symbol].book_valid = False
        return hit or list(self.states)

    # ---- events ---------------------------------------------------------------------------
    def on_ticker(self, ticker: Ticker) -> Outcome:
        state = self.states.get(ticker.instrument)
        if state is None:
            return Outcome()
        if state.ticker is not None and ticker.time < state.ticker.time:
            self.stats.dropped_tickers += 1
            return Outcome()
        self.stats.tickers += 1
        state.ticker = ticker
        return self._maybe_publish(state, ticker.time)

    def on_book(self, update: BookUpdate) -> Outcome:
        state = self.states.get(update.instrument)
        if state is None:
            return Outcome()
        if update.is_snapshot:
            state.book = LocalOrderBook(state.symbol)
            state.book.apply(update)
            state.book_valid = True
        elif not state.book_valid:
            self.stats.dropped_book_updates += 1  # waiting for a snapshot
            return Outcome()
        elif (
            update.sequence is not None
            and state.book.sequence is not None
            and update.sequence <= state.book.sequence
        ):
            self.stats.dropped_book_updates += 1  # replayed or out of order
            return Outcome()
        else:
            state.book.apply(update)
        self.stats.book_updates += 1
        bid, ask = _best(state.book)
        if bid is not None and ask is not None and bid >= ask:
            self.stats.crossed_books += 1
            state.book_valid = False
            outcome = self._maybe_publish(state, update.time)
            outcome.resubscribe = True
            return outcome
        return self._maybe_publish(state, update.time)

    def on_trade(self, trade: Trade) -> Outcome:
        state = self.states.get(trade.instrument)
        if state is None:
            return Outcome()
        key = (trade.instrument, trade.trade_id)
        if key in self._seen_trades:
            self.stats.duplicate_trades += 1
            return Outcome()
        self._seen_trades[key] = None
        if len(self._seen_trades) > SEEN_TRADES:
            self._seen_trades.popitem(last=False)
        self.stats.trades += 1
        outcome = Outcome(trades=[trade])
        if state.last_trade is None or trade.time >= state.last_trade.time:
            state.last_trade = trade
            outcome.publish = self._maybe_publish(state, trade.time).publish
        return outcome

    # ---- snapshots ------------------------------------------------------------------------
    def snapshot(self, state: InstrumentState, when: datetime) -> PriceSnapshot | None:
        ticker, trade = state.ticker, state.last_trade
        if ticker is None and trade is None and not state.book_valid:
            return None
        bid = ask = bid_size = ask_size = None
        if state.book_valid:
            bid, ask = _best(state.book)
            bid_size = state.book.bids.get(bid) if bid is not None else None
            ask_size = state.book.asks.get(ask) if ask is not None else None
        elif ticker is not None:
            bid, ask, bid_size, ask_size = ticker.bid, ticker.ask, ticker.bid_size, ticker.ask_size
        if bid is not None and ask is not None and bid >= ask:
            bid = ask = bid_size = ask_size = None  # never publish a crossed quote
        price = None
        if trade is not None and (ticker is None or ticker.last is None or trade.time >= ticker.time):
            price = trade.price
        elif ticker is not None:
            price = ticker.last
        change = None
        reference = self.reference_24h.get(state.symbol)
        if reference and price is not None and price > 0:
            change = ((price - reference) / reference * PERCENT).quantize(CHANGE_QUANTUM)
        times = [t for t in (ticker.time if ticker else None, trade.time if trade else None, when) if t]
        return PriceSnapshot(
            instrument=state.symbol,
            venue=self.venue,
            price=_s(_positive(price)),
            bid=_s(_positive(bid)),
            ask=_s(_positive(ask)),
            bid_size=_s(bid_size),
            ask_size=_s(ask_size),
            change_24h=_s(change),
            volume_24h=_s(ticker.volume_24h) if ticker else None,
            high_24h=_s(ticker.high_24h) if ticker else None,
            low_24h=_s(ticker.low_24h) if ticker else None,
            timestamp=max(times).isoformat().replace("+00:00", "Z"),
        )

    def _maybe_publish(self, state: InstrumentState, when: datetime) -> Outcome:
        snap = self.snapshot(state, when)
        if snap is None:
            return Outcome()
        if snap.same_quote(state.published):
            self.stats.unchanged += 1
            return Outcome()
        state.published = snap
        self.stats.published += 1
        return Outcome(publish=[snap])

    def all_snapshots(self, when: datetime) -> list[PriceSnapshot]:
        """Current prices of every instrument (republished after a venue comes back)."""
        out = []
        for state in self.states.values():
            snap = self.snapshot(state, when)
            if snap is not None:
                state.published = snap
                out.append(snap)
        return out


def _best(book: LocalOrderBook) -> tuple[Decimal | None, Decimal | None]:
    bid = max(book.bids) if book.bids else None
    ask = min(book.asks) if book.asks else None
    return bid, ask


def _mentions(text: str, symbol: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_-]){re.escape(symbol)}(?![A-Za-z0-9_-])", text) is not None
