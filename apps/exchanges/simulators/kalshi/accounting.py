"""Event-contract money rules for the shared matching engine (spec sections 4.6 and 7).

Each market is one engine book in YES prices: a bid is "buy YES at p", an ask "sell YES at p"
= "buy NO at 1 - p". Positions net (YES and NO in one market offset; signed, + = YES): buying the
side you are short closes contracts and releases $1 - price of collateral each instead of
costing the price. Holds reserve the opening cost plus the worst-case taker fee. Balances are
USD in whole cents (prices are whole cents, counts whole contracts, fees rounded up to a cent).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

from apps.exchanges.simulators.engine import Account, SimInstrument, SimOrder, SimSide, now_ns

if TYPE_CHECKING:
    from apps.exchanges.simulators.engine import MatchingEngine

ONE = Decimal(1)
ZERO = Decimal(0)
CENT = Decimal("0.01")
TAKER_RATE = Decimal("0.07")
MAKER_RATE = Decimal("0.0175")
USD = "USD"


def ceil_cent(value: Decimal) -> Decimal:
    return (value / CENT).to_integral_value(rounding=ROUND_CEILING) * CENT


def trade_fee(price: Decimal, count: Decimal, *, maker: bool, fee_type: str, multiplier: Decimal) -> Decimal:
    """Taker `ceil_to_cent(0.07 x C x P x (1-P))`; maker 0.0175 x ... only on series whose fee
    type charges makers; both times the series' multiplier. Flat fee type: none here."""
    if fee_type == "flat":
        return ZERO
    if maker:
        if not fee_type.startswith("quadratic_with_"):
            return ZERO
        rate = MAKER_RATE * (2 if "combo" in fee_type else 1)
    else:
        rate = TAKER_RATE
    return ceil_cent(rate * count * price * (ONE - price) * multiplier)


class KalshiFees:
    """The engine's `FeeModel`: fee type and multiplier come from the market's series."""

    def fee(self, instrument: SimInstrument, price: Decimal, quantity: Decimal, is_maker: bool) -> Decimal:
        return trade_fee(
            price,
            quantity,
            maker=is_maker,
            fee_type=str(instrument.extra.get("fee_type", "quadratic")),
            multiplier=Decimal(str(instrument.extra.get("fee_multiplier", 1))),
        )


@dataclass
class EventPosition:
    """One account's position in one market (signed contracts, + = YES)."""

    position: Decimal = ZERO
    cost: Decimal = ZERO  # what the open contracts cost
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    total_traded: Decimal = ZERO
    volume: Decimal = ZERO
    updated_ns: int = 0
    settled: bool = False


class EventAccounting:
    """The engine's `Accounting` for binary contracts with netting."""

    def __init__(self) -> None:
        self.engine: MatchingEngine | None = None
        self.positions: dict[tuple[str, str], EventPosition] = {}

    def position(self, account_id: str, ticker: str) -> EventPosition:
        return self.positions.setdefault((account_id, ticker), EventPosition())

    def closable(self, account_id: str, ticker: str, side: SimSide) -> Decimal:
        """Contracts an order on `side` can still close: the opposite position less what this
        account's other open orders on the same side already plan to close."""
        pos = self.positions.get((account_id, ticker))
        held = ZERO if pos is None else (-pos.position if side is SimSide.BUY else pos.position)
        if held <= 0:
            return ZERO
        if self.engine is not None:
            held -= sum(
                (o.remaining for o in self.engine.open_orders(account_id, ticker) if o.side is side),
                ZERO,
            )
        return max(ZERO, held)

    def hold_for(self, instrument: SimInstrument, order: SimOrder, est_cost: Decimal) -> tuple[str, Decimal]:
        price = (
            order.price
            if order.price is not None
            else (Decimal("0.99") if order.side is SimSide.BUY else CENT)
        )
        per_contract = price if order.side is SimSide.BUY else ONE - price
        closing = min(order.quantity, self.closable(order.account_id, instrument.symbol, order.side))
        opening = order.quantity - closing
        fee = KalshiFees().fee(instrument, price, order.quantity, False)
        return USD, opening * per_contract + fee

    def settle_fill(
        self,
        account: Account,
        instrument: SimInstrument,
        order: SimOrder,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
    ) -> Decimal:
        pos = self.position(account.account_id, instrument.symbol)
        buying_yes = order.side is SimSide.BUY
        held = -pos.position if buying_yes else pos.position  # contracts this fill can close
        close = min(qty, max(ZERO, held))
        opening = qty - close
        close_value = (ONE - price) if buying_yes else price  # cash back per closed contract
        open_cost = price if buying_yes else ONE - price
        if close:
            avg_cost = pos.cost / abs(pos.position) if pos.position else ZERO
            pos.realized_pnl += (close_value - avg_cost) * close
            pos.cost -= avg_cost * close
        pos.cost += open_cost * opening
        pos.position += qty if buying_yes else -qty
        if not pos.position:
            pos.cost = ZERO
        pos.fees_paid += fee
        pos.realized_pnl -= fee
        pos.total_traded += price * qty
        pos.volume += qty
        pos.updated_ns = now_ns()
        pos.settled = False
        account.adjust(USD, close_value * close - open_cost * opening - fee)
        return open_cost * opening + fee
