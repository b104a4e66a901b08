"""Synthetic liquidity: a bounded random-walk fair price, a market maker quoting around it and a
noise taker printing trades, so simulated books, tickers, trades and candles move on their own
and users' orders can fill. Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from apps.exchanges.simulators.engine import (
    Account,
    EngineReject,
    MatchingEngine,
    PublicTrade,
    SimInstrument,
    SimOrder,
    SimSide,
    SimStatus,
)

MM_ACCOUNT = "sim-market-maker"
TAKER_ACCOUNT = "sim-noise-taker"


@dataclass
class LiquidityConfig:
    levels: int = 12
    spread_bps: Decimal = Decimal("4")
    level_step_bps: Decimal = Decimal("2")
    level_notional: Decimal = Decimal("25000")
    volatility_bps: float = 6.0
    trade_probability: float = 0.6
    band: tuple[float, float] = (0.5, 2.0)


def _quantize(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


class SyntheticMarket:
    """Drives every instrument of an engine one `tick()` at a time."""

    def __init__(
        self, engine: MatchingEngine, *, seed: int = 7, config: LiquidityConfig | None = None
    ) -> None:
        self.engine = engine
        self.rng = random.Random(seed)  # noqa: S311 - simulation, not crypto
        self.config = config or LiquidityConfig()
        self.mid: dict[str, Decimal] = {s: i.start_price for s, i in engine.instruments.items()}
        for account_id in (MM_ACCOUNT, TAKER_ACCOUNT):
            engine.add_account(Account(account_id, account_id, "", is_system=True))
        self.ids: Callable[[], str] = engine.next_id

    def seed_history(self, minutes: int = 180, now_ns: int | None = None) -> None:
        """Back-fill one synthetic trade per instrument per minute so candles exist from the start."""
        import time

        end = now_ns or time.time_ns()
        for symbol, inst in self.engine.instruments.items():
            price = inst.start_price
            walk = []
            for _ in range(minutes):
                price = self._step(inst, price)
                walk.append(price)
            walk.reverse()  # walk backwards from the start price so history ends at it
            for i, p in enumerate(walk):
                t = end - (minutes - i) * 60_000_000_000 + self.rng.randrange(0, 50_000_000_000)
                qty = (
                    _quantize(Decimal(self.rng.uniform(0.5, 5)) * inst.min_qty * 10, inst.qty_step)
                    or inst.qty_step
                )
                side = SimSide.BUY if self.rng.random() < 0.5 else SimSide.SELL
                self.engine.trades[symbol].append(PublicTrade(self.ids(), symbol, p, qty, side, t))
        for symbol in self.engine.instruments:
            self._requote(symbol)

    def _step(self, inst: SimInstrument, price: Decimal) -> Decimal:
        lo, hi = (inst.start_price * Decimal(str(b)) for b in self.config.band)
        shock = math.exp(self.rng.gauss(0, self.config.volatility_bps / 10_000))
        nxt = _quantize(price * Decimal(str(shock)), inst.tick_size)
        return min(max(nxt, lo), hi)

    def tick(self) -> None:
        """Move every fair price one step, requote, and maybe print a trade."""
        for symbol, inst in self.engine.instruments.items():
            if not inst.tradable:
                continue
            self.mid[symbol] = self._step(inst, self.mid[symbol])
            self._requote(symbol)
            if self.rng.random() < self.config.trade_probability:
                self._noise_trade(inst)

    def _requote(self, symbol: str) -> None:
        inst = self.engine.instruments[symbol]
        self.engine.cancel_all(MM_ACCOUNT, symbol)
        mid, cfg = self.mid[symbol], self.config
        for i in range(cfg.levels):
            offset = mid * (cfg.spread_bps / 2 + cfg.level_step_bps * i) / Decimal(10_000)
            qty = _quantize(cfg.level_notional / mid * Decimal(self.rng.uniform(0.3, 1.5)), inst.qty_step)
            qty = max(qty, inst.min_qty)
            for side, price in ((SimSide.BUY, mid - offset), (SimSide.SELL, mid + offset)):
                price = _quantize(price, inst.tick_size)
                if price <= 0:
                    continue
                self._place(inst, MM_ACCOUNT, side, "limit", qty, price)

    def _noise_trade(self, inst: SimInstrument) -> None:
        side = SimSide.BUY if self.rng.random() < 0.5 else SimSide.SELL
        notional = self.config.level_notional * Decimal(self.rng.uniform(0.01, 0.2))
        qty = max(_quantize(notional / self.mid[inst.symbol], inst.qty_step), inst.min_qty)
        self._place(inst, TAKER_ACCOUNT, side, "market", qty, None)

    def _place(
        self, inst: SimInstrument, account: str, side: SimSide, kind: str, qty: Decimal, price: Decimal | None
    ) -> SimOrder | None:
        oid = self.ids()
        order = SimOrder(
            order_id=oid,
            client_oid=oid,
            account_id=account,
            instrument=inst.symbol,
            side=side,
            order_type=kind,
            time_in_force="gtc" if kind == "limit" else "ioc",
            quantity=qty,
            price=price,
        )
        try:
            return self.engine.submit(order)
        except EngineReject:
            return None

    def prune(self, keep: int = 2000) -> None:
        """Forget finished system orders so a long-running simulator does not grow without bound."""
        for account_id in (MM_ACCOUNT, TAKER_ACCOUNT):
            orders = self.engine.account_orders[account_id]
            if len(orders) <= keep:
                continue
            done = [o for o in orders if o.status not in (SimStatus.NEW, SimStatus.ACTIVE)]
            for order in done[: len(orders) - keep]:
                self.engine.orders.pop(order.order_id, None)
                self.engine.orders_by_client.pop((account_id, order.client_oid), None)
            live = {o.order_id for o in done[: len(orders) - keep]}
            self.engine.account_orders[account_id] = [o for o in orders if o.order_id not in live]
            self.engine.fills[account_id] = self.engine.fills[account_id][-keep:]
