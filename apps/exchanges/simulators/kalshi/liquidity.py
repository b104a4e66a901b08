"""Synthetic liquidity for event contracts: a fair YES price walking in whole cents inside
0.03-0.97, a market maker quoting five levels each side of it in contracts, and a noise taker
crossing the spread with small IOC orders, so books, tickers and trades move on their own."""

from __future__ import annotations

from decimal import Decimal

from apps.exchanges.simulators.engine import EngineReject, SimInstrument, SimOrder, SimSide
from apps.exchanges.simulators.liquidity import MM_ACCOUNT, TAKER_ACCOUNT, SyntheticMarket

CENT = Decimal("0.01")
LOW, HIGH = Decimal("0.03"), Decimal("0.97")
LEVELS = 5


class EventContractMarket(SyntheticMarket):
    """`SyntheticMarket` with a price process and quotes that suit 0.01-0.99 contracts."""

    def _step(self, inst: SimInstrument, price: Decimal) -> Decimal:
        move = self.rng.random()
        if move < 0.2:
            price -= CENT
        elif move > 0.8:
            price += CENT
        return min(max(price, LOW), HIGH)

    def _requote(self, symbol: str) -> None:
        inst = self.engine.instruments[symbol]
        self.engine.cancel_all(MM_ACCOUNT, symbol)
        if not inst.tradable:
            return
        mid = self.mid[symbol]
        for i in range(1, LEVELS + 1):
            qty = Decimal(self.rng.randrange(20, 400))
            bid, ask = mid - CENT * i, mid + CENT * i
            if bid >= CENT:
                self._submit(inst, MM_ACCOUNT, SimSide.BUY, bid, qty, "gtc")
            if ask <= Decimal("0.99"):
                self._submit(inst, MM_ACCOUNT, SimSide.SELL, ask, qty, "gtc")

    def _noise_trade(self, inst: SimInstrument) -> None:
        side = SimSide.BUY if self.rng.random() < 0.5 else SimSide.SELL
        price = Decimal("0.99") if side is SimSide.BUY else CENT
        self._submit(inst, TAKER_ACCOUNT, side, price, Decimal(self.rng.randrange(1, 25)), "ioc")

    def _submit(
        self, inst: SimInstrument, account: str, side: SimSide, price: Decimal, qty: Decimal, tif: str
    ) -> SimOrder | None:
        oid = self.ids()
        order = SimOrder(
            order_id=oid,
            client_oid=oid,
            account_id=account,
            instrument=inst.symbol,
            side=side,
            order_type="limit",
            time_in_force=tif,
            quantity=qty,
            price=price,
        )
        try:
            return self.engine.submit(order)
        except EngineReject:
            return None
