"""The risk checks that count what the user holds and has resting: event-contract sells close
contracts held (never open the other outcome), reduce-only and max position count the user's
other live orders, and a cancelled order's daily notional is only what filled. Against the
Kalshi and Crypto.com simulators."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.exchanges.calls import run_venue_call
from apps.marketdata.models import Instrument
from apps.trading.models import KillSwitch, Order, RiskLimit
from apps.trading.services import order_reconcile
from tests.trading.conftest import Trader, order_of
from tests.trading.test_kalshi import kalshi  # noqa: F401 (fixture)
from tests.trading.test_risk import refused as refused_by

pytestmark = pytest.mark.django_db

CENT = Decimal("0.01")


class EventTrader:
    """A user linked to a Kalshi simulator account, trading one open, priced market."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.user = User.objects.create_user("event-seller@example.com", "correct horse battery staple")
        self.account = sim.create_account()
        self.client = APIClient()
        self.client.force_authenticate(self.user)
        state = self.client.get("/v1/auth/link/kalshi/initiate").json()["data"]["state"]
        body = {
            "state": state,
            "api_key_id": self.account["api_key_id"],
            "private_key": self.account["private_key_pem"],
        }
        assert self.client.post("/v1/auth/link/kalshi/callback", body, format="json").status_code == 201
        self.instrument, self.ask = _market_with_ask()

    def place(self, **body: Any) -> Any:
        body = {"instrument": self.instrument.symbol, "order_type": "limit", "outcome": "yes", **body}
        return self.client.post("/v1/orders", body, format="json")

    def venue_state(self) -> dict[str, Any]:
        return self.sim.account_state(self.account["api_key_id"])

    def buy_yes(self, contracts: str) -> None:
        """Hold `contracts` YES contracts (bought at the ask, filled, recorded)."""
        response = self.place(side="buy", quantity=contracts, price=str(self.ask), time_in_force="ioc")
        assert response.status_code == 201, response.content
        order = order_of(response)
        order_reconcile(order_id=order.pk)
        order.refresh_from_db()
        assert order.filled_quantity == Decimal(contracts), order.status

    def resting_sell_price(self) -> str:
        """A YES sell above the ask (it rests), inside the fat-finger band."""
        return str(min(Decimal("0.99"), self.ask + Decimal("0.05")))


def refused(trader: Trader | EventTrader, code: str, **body: Any) -> dict[str, Any]:
    """`test_risk.refused` for either venue's trader (it uses only `place` and `venue_state`)."""
    return refused_by(cast(Trader, trader), code, **body)


def _ask(symbol: str) -> Decimal | None:
    ask: Decimal | None = run_venue_call("kalshi", lambda adapter: adapter.get_ticker(symbol)).ask
    return ask


def _market_with_ask() -> tuple[Instrument, Decimal]:
    for instrument in Instrument.objects.filter(venue="kalshi", status="open", instrument_type="event"):
        ask = _ask(instrument.symbol)
        if ask is not None and Decimal("0.10") <= ask <= Decimal("0.80"):
            return instrument, ask
    raise AssertionError("no open Kalshi market with an ask")


@pytest.fixture
def seller(settings: Any, kalshi: Any) -> EventTrader:  # noqa: F811 (the imported fixture)
    """`test_kalshi`'s settings and synced registry, and: each order reads its positions from the
    venue (the user stream, not run here, is what drops a cached snapshot when a fill lands)."""
    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 0
    settings.K2_TRADING_BALANCE_STALE_SECONDS = 0
    kalshi.configure(market_auto=False)  # nothing trades against the resting orders
    return EventTrader(kalshi)


# ---- event contracts: a sell closes contracts held -------------------------------------------


def test_an_event_sell_beyond_the_contracts_held_is_refused(seller: EventTrader) -> None:
    seller.buy_yes("3")
    price = seller.resting_sell_price()
    details = refused(seller, "INSUFFICIENT_POSITION", side="sell", quantity="5", price=price)
    assert details == {
        **details,
        "instrument": seller.instrument.symbol,
        "outcome": "yes",
        "held": "3",
        "attempted": "5",
    }
    # Selling NO while holding only YES would open a NO position: refused, nothing held of it.
    no_price = str(Decimal(1) - seller.ask + CENT)
    details = refused(
        seller, "INSUFFICIENT_POSITION", side="sell", outcome="no", quantity="1", price=no_price
    )
    assert (details["outcome"], details["held"], details["attempted"]) == ("no", "0", "1")


def test_event_sells_within_the_contracts_held_less_resting_sells_go_through(seller: EventTrader) -> None:
    seller.buy_yes("3")
    price = seller.resting_sell_price()
    first = seller.place(side="sell", quantity="2", price=price)
    assert first.status_code == 201, first.content
    assert order_of(first).status == "open"
    details = refused(seller, "INSUFFICIENT_POSITION", side="sell", quantity="2", price=price)
    assert (details["held"], details["attempted"]) == ("3", "4")  # 2 resting + 2
    last = seller.place(side="sell", quantity="1", price=price)
    assert last.status_code == 201, last.content
    assert order_of(last).status == "open"


def test_an_event_sell_reads_the_contracts_held_from_the_venue_not_the_cache(
    seller: EventTrader, settings: Any
) -> None:
    """Bought a moment ago (no user stream here to drop the snapshot): a cached snapshot, read
    for the buy, holds none of them; the sell is checked against the venue's positions now."""
    settings.K2_TRADING_BALANCE_CACHE_SECONDS = 30
    seller.buy_yes("3")  # its check cached the positions: none
    response = seller.place(side="sell", quantity="3", price=seller.resting_sell_price())
    assert response.status_code == 201, response.content
    assert order_of(response).status == "open"


# ---- reduce-only counts the other resting sells ----------------------------------------------


def test_reduce_only_refuses_event_sells_that_together_exceed_the_position(seller: EventTrader) -> None:
    seller.buy_yes("3")
    KillSwitch.objects.create(scope="venue", venue="kalshi", mode="reduce_only", reason="wind down")
    price = seller.resting_sell_price()
    assert seller.place(side="sell", quantity="2", price=price).status_code == 201
    details = refused(seller, "REDUCE_ONLY", side="sell", quantity="2", price=price)
    assert (details["position"], details["attempted"]) == ("3", "4")
    assert seller.place(side="sell", quantity="1", price=price).status_code == 201


def test_reduce_only_refuses_crypto_sells_that_together_exceed_the_position(make_trader: Any) -> None:
    trader: Trader = make_trader({"USD": "100000", "BTC": "1"})
    KillSwitch.objects.create(scope="venue", venue="cryptocom", mode="reduce_only", reason="wind down")
    price = str(trader.below_market("1.05"))
    assert trader.place(side="sell", quantity="0.6", price=price).status_code == 201
    details = refused(trader, "REDUCE_ONLY", side="sell", quantity="0.6", price=price)
    assert (details["position"], details["attempted"]) == ("1", "1.2")
    assert trader.place(side="sell", quantity="0.4", price=price).status_code == 201


# ---- max position counts the resting buys ------------------------------------------------------


def test_max_position_counts_resting_buys(make_trader: Any) -> None:
    trader: Trader = make_trader({"USD": "100000", "BTC": "0"})
    RiskLimit.objects.create(
        user=trader.user, instrument_type="crypto", max_position_notional=trader.fair() * Decimal("0.015")
    )
    first = trader.place(side="buy", quantity="0.01")
    assert first.status_code == 201, first.content
    assert order_of(first).status == "open"
    details = refused(trader, "RISK_MAX_POSITION", side="buy", quantity="0.01")
    assert details["position"] == "0"
    assert Decimal(details["attempted"]) > Decimal(details["limit"])


# ---- daily notional: a cancelled order counts what filled ------------------------------------


def test_a_partly_filled_cancelled_order_counts_only_its_filled_part_in_the_daily_notional(
    trader: Trader,
) -> None:
    price = trader.below_market()
    RiskLimit.objects.create(
        user=trader.user, instrument_type="crypto", max_daily_notional=price * Decimal("0.015")
    )
    first = order_of(trader.place(quantity="0.01", price=str(price)))
    assert trader.client.delete(f"/v1/orders/{first.pk}").json()["data"]["status"] == "cancelled"
    # Half of it had filled before the cancel (as reconciliation records a venue's partial fill).
    Order.objects.filter(pk=first.pk).update(filled_quantity=Decimal("0.005"))

    second = trader.place(quantity="0.01", price=str(price))  # 0.005 + 0.01 of 0.015: fits
    assert second.status_code == 201, second.content
    details = refused(trader, "RISK_DAILY_NOTIONAL", quantity="0.01", price=str(price))
    assert Decimal(details["used"]) == price * Decimal("0.015")
