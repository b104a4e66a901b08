"""Average-cost P&L books built from K2's recorded executions (pure: no Django, no I/O).

Method (average cost, fees included):

- A buy adds its quantity and its cost (quantity x price + fee) to the book, so the average
  price is (sum of costs incl. fees) / quantity held.
- A sell closes at most what the book holds: realised P&L = proceeds - fee - closed x average
  cost; the average of what remains does not change. Quantity sold beyond what K2 recorded
  buying (coins deposited or bought elsewhere) has no K2 cost basis and realises nothing.
- A fee paid in the base asset (Crypto.com can charge the received coin) reduces the quantity
  received instead; its value is still reported under `fees`.
- Event contracts (Kalshi) net YES against NO as Kalshi does: buying NO while holding YES sells
  YES at 1 - price, and selling more YES than held opens NO at 1 - price. A settled market
  closes the remaining contracts at its payout (1.00 for the winning outcome, 0 otherwise):
  that is the settlement P&L, part of realised P&L.

FIFO lots are available with `method="fifo"` (same rules, closing the oldest lots first).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

ZERO = Decimal(0)
ONE = Decimal(1)
Method = Literal["average", "fifo"]


@dataclass
class Realisation:
    """One realised P&L amount and when it happened (for per-range performance figures)."""

    time: datetime
    amount: Decimal
    settlement: bool = False


@dataclass
class Book:
    """One long-only holding (a crypto asset, or one outcome of one market)."""

    method: Method = "average"
    quantity: Decimal = ZERO
    cost: Decimal = ZERO  # cost basis of `quantity`, fees included
    realised: Decimal = ZERO
    settlement_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    bought: Decimal = ZERO
    sold: Decimal = ZERO
    untracked_sold: Decimal = ZERO  # sold beyond what K2 recorded buying
    realisations: list[Realisation] = field(default_factory=list)
    lots: deque[list[Decimal]] = field(default_factory=deque)  # fifo: [quantity, cost]

    @property
    def average_price(self) -> Decimal | None:
        return self.cost / self.quantity if self.quantity > 0 else None

    def buy(self, *, quantity: Decimal, cost: Decimal, fee: Decimal, when: datetime) -> None:
        """Add `quantity` that cost `cost` (gross, quote) plus `fee` (quote value)."""
        if quantity <= 0:
            self.fees += fee
            self.realised -= fee
            self.realisations.append(Realisation(when, -fee))
            return
        self.quantity += quantity
        self.cost += cost + fee
        self.fees += fee
        self.bought += quantity
        if self.method == "fifo":
            self.lots.append([quantity, cost + fee])

    def sell(
        self, *, quantity: Decimal, proceeds: Decimal, fee: Decimal, when: datetime, settlement: bool = False
    ) -> Decimal:
        """Close up to `quantity`; returns the part that was not held (untracked)."""
        self.fees += fee
        closing = min(quantity, self.quantity)
        excess = quantity - closing
        if closing <= 0:
            self.untracked_sold += excess
            return excess
        closed_cost = self._close_cost(closing)
        pnl = (proceeds - fee) * closing / quantity - closed_cost
        self.quantity -= closing
        self.cost -= closed_cost
        if self.quantity == 0:
            self.cost = ZERO
        self.realised += pnl
        self.sold += closing
        if settlement:
            self.settlement_pnl += pnl
        self.realisations.append(Realisation(when, pnl, settlement))
        self.untracked_sold += excess
        return excess

    def _close_cost(self, closing: Decimal) -> Decimal:
        if self.method != "fifo":
            return self.cost * closing / self.quantity
        remaining, total = closing, ZERO
        while remaining > 0 and self.lots:
            lot = self.lots[0]
            take = min(remaining, lot[0])
            part = lot[1] * take / lot[0]
            total += part
            lot[0] -= take
            lot[1] -= part
            remaining -= take
            if lot[0] <= 0:
                self.lots.popleft()
        return total


@dataclass
class EventBook:
    """Both outcomes of one market, netted the way Kalshi nets them."""

    method: Method = "average"
    yes: Book = field(default_factory=Book)
    no: Book = field(default_factory=Book)
    settled_quantity: Decimal = ZERO
    settled_outcome: str = ""

    def __post_init__(self) -> None:
        self.yes.method = self.no.method = self.method

    def side(self, outcome: str) -> Book:
        return self.yes if outcome == "yes" else self.no

    def trade(
        self, *, side: str, outcome: str, quantity: Decimal, price: Decimal, fee: Decimal, when: datetime
    ) -> None:
        held, other = self.side(outcome), self.side("no" if outcome == "yes" else "yes")
        if side == "buy":
            # Buying an outcome first closes the opposite one at 1 - price.
            closing = min(quantity, other.quantity)
            opening = quantity - closing
            if closing > 0:
                other.sell(
                    quantity=closing,
                    proceeds=closing * (ONE - price),
                    fee=fee * closing / quantity,
                    when=when,
                )
            if opening > 0:
                held.buy(quantity=opening, cost=opening * price, fee=fee * opening / quantity, when=when)
            return
        closing = min(quantity, held.quantity)
        opening = quantity - closing
        if closing > 0:
            held.sell(quantity=closing, proceeds=closing * price, fee=fee * closing / quantity, when=when)
        if opening > 0:
            # Selling more than held opens the opposite outcome at 1 - price.
            other.buy(quantity=opening, cost=opening * (ONE - price), fee=fee * opening / quantity, when=when)

    def settle(self, *, result: str, when: datetime) -> None:
        """Close what is still held at the payout: 1.00 for `result`, 0 for the other outcome."""
        if self.settled_outcome:
            return
        for outcome, book in (("yes", self.yes), ("no", self.no)):
            if book.quantity > 0:
                payout = ONE if outcome == result else ZERO
                self.settled_quantity += book.quantity
                book.sell(
                    quantity=book.quantity,
                    proceeds=book.quantity * payout,
                    fee=ZERO,
                    when=when,
                    settlement=True,
                )
        self.settled_outcome = result

    @property
    def held_outcome(self) -> str | None:
        if self.yes.quantity > 0:
            return "yes"
        if self.no.quantity > 0:
            return "no"
        return None
