"""The P&L books: average cost with fees, FIFO, untracked sells, Kalshi netting and settlement."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

from apps.portfolio.pnl import Book, EventBook

T = datetime(2025, 1, 1, tzinfo=UTC)


def test_average_cost_includes_fees_and_sells_realise_against_it() -> None:
    book = Book()
    book.buy(quantity=D("1"), cost=D("100"), fee=D("1"), when=T)
    book.buy(quantity=D("1"), cost=D("200"), fee=D("1"), when=T)
    assert book.average_price == D("151")
    book.sell(quantity=D("1"), proceeds=D("300"), fee=D("2"), when=T)
    assert book.realised == D("300") - D("2") - D("151")
    assert book.quantity == 1
    assert book.average_price == D("151")
    assert book.fees == D("4")


def test_fifo_closes_the_oldest_lot_first() -> None:
    book = Book(method="fifo")
    book.buy(quantity=D("1"), cost=D("100"), fee=D("0"), when=T)
    book.buy(quantity=D("1"), cost=D("200"), fee=D("0"), when=T)
    book.sell(quantity=D("1"), proceeds=D("300"), fee=D("0"), when=T)
    assert book.realised == D("200")
    assert book.cost == D("200")


def test_selling_more_than_recorded_realises_only_the_tracked_part() -> None:
    book = Book()
    book.buy(quantity=D("1"), cost=D("100"), fee=D("0"), when=T)
    excess = book.sell(quantity=D("3"), proceeds=D("300"), fee=D("0"), when=T)
    assert excess == 2
    assert book.realised == D("0")  # 1 unit sold at 100, bought at 100
    assert book.quantity == 0
    assert book.untracked_sold == 2


def test_kalshi_netting_buying_no_while_holding_yes_closes_yes() -> None:
    book = EventBook()
    book.trade(side="buy", outcome="yes", quantity=D("10"), price=D("0.40"), fee=D("0.10"), when=T)
    assert book.yes.quantity == 10
    assert book.yes.average_price == D("0.41")
    book.trade(side="buy", outcome="no", quantity=D("4"), price=D("0.30"), fee=D("0"), when=T)
    # 4 YES sold at 1 - 0.30 = 0.70 against an average cost of 0.41.
    assert book.yes.quantity == 6
    assert book.no.quantity == 0
    assert book.yes.realised == D("4") * (D("0.70") - D("0.41"))
    book.trade(side="sell", outcome="yes", quantity=D("8"), price=D("0.50"), fee=D("0"), when=T)
    # 6 YES closed, 2 more open NO at 0.50.
    assert book.yes.quantity == 0
    assert book.no.quantity == 2
    assert book.no.average_price == D("0.50")


def test_settlement_closes_at_the_payout() -> None:
    won, lost = EventBook(), EventBook()
    for book in (won, lost):
        book.trade(side="buy", outcome="yes", quantity=D("5"), price=D("0.60"), fee=D("0.05"), when=T)
    won.settle(result="yes", when=T)
    lost.settle(result="no", when=T)
    assert won.yes.quantity == lost.yes.quantity == 0
    assert won.settled_quantity == 5
    assert won.yes.settlement_pnl == D("5") - D("3.05")
    assert lost.yes.settlement_pnl == -D("3.05")
    assert won.yes.realised == won.yes.settlement_pnl
    won.settle(result="no", when=T)  # once only
    assert won.yes.settlement_pnl == D("1.95")


def test_fees_on_a_pair_not_quoted_in_usd_are_valued_in_usd() -> None:
    """ETH-BTC at 0.05 BTC with BTC at 60,000 USD: a 0.0001 BTC fee is 6 USD (not 0.0001), and a
    0.001 ETH fee is 0.001 x 0.05 x 60,000 = 3 USD, taken from the ETH received."""
    from apps.portfolio.selectors import Execution, InstrumentInfo, _Pricer, books_build

    registry = {
        "ETH-BTC": InstrumentInfo("ETH-BTC", "cryptocom", "crypto", "ETH", "BTC"),
        "BTC-USD": InstrumentInfo("BTC-USD", "cryptocom", "crypto", "BTC", "USD"),
    }
    pricer = _Pricer([], registry, {"BTC-USD": D("60000")})

    def buy(fee: str, currency: str) -> Execution:
        return Execution(
            venue="cryptocom", instrument="ETH-BTC", instrument_type="crypto", side="buy", outcome="",
            quantity=D("1"), price=D("0.05"), fee=D(fee), fee_currency=currency, executed_at=T,
        )  # fmt: skip

    in_quote = books_build([buy("0.0001", "BTC")], registry, pricer, method="average").crypto
    assert (in_quote["cryptocom", "ETH"].cost, in_quote["cryptocom", "ETH"].fees) == (D("3006"), D("6"))
    in_base = books_build([buy("0.001", "ETH")], registry, pricer, method="average").crypto
    book = in_base["cryptocom", "ETH"]
    assert (book.quantity, book.fees) == (D("0.999"), D("3"))


def test_a_rebate_is_valued_in_its_own_currency_and_lowers_costs() -> None:
    """A negative fee (a maker rebate) is valued like a fee, in the execution's own fee currency,
    and lowers cost basis and fees (or raises proceeds): on BTC-USD a 0.1 USD rebate on the buy and
    0.2 on the sell realise 10.3; on ETH-BTC a 0.0001 BTC rebate is 6 USD off the cost, a 0.001 ETH
    one adds to the ETH received."""
    from apps.portfolio.selectors import Execution, InstrumentInfo, _Pricer, books_build

    registry = {
        "ETH-BTC": InstrumentInfo("ETH-BTC", "cryptocom", "crypto", "ETH", "BTC"),
        "BTC-USD": InstrumentInfo("BTC-USD", "cryptocom", "crypto", "BTC", "USD"),
    }
    pricer = _Pricer([], registry, {"BTC-USD": D("60000")})

    def trade(instrument: str, side: str, price: str, fee: str, currency: str) -> Execution:
        return Execution(
            venue="cryptocom", instrument=instrument, instrument_type="crypto", side=side, outcome="",
            quantity=D("1"), price=D(price), fee=D(fee), fee_currency=currency, executed_at=T,
        )  # fmt: skip

    usd = [trade("BTC-USD", "buy", "100", "-0.1", "USD")]
    book = books_build(usd, registry, pricer, method="average").crypto["cryptocom", "BTC"]
    assert (book.cost, book.fees) == (D("99.9"), D("-0.1"))
    usd.append(trade("BTC-USD", "sell", "110", "-0.2", "USD"))
    books = books_build(usd, registry, pricer, method="average")
    book = books.crypto["cryptocom", "BTC"]
    assert (book.quantity, book.realised, book.fees) == (D("0"), D("10.3"), D("-0.3"))
    assert [fee for _, fee in books.fee_events] == [D("-0.1"), D("-0.2")]

    in_quote = [trade("ETH-BTC", "buy", "0.05", "-0.0001", "BTC")]
    book = books_build(in_quote, registry, pricer, method="average").crypto["cryptocom", "ETH"]
    assert (book.quantity, book.cost, book.fees) == (D("1"), D("2994"), D("-6"))
    in_base = [trade("ETH-BTC", "buy", "0.05", "-0.001", "ETH")]
    book = books_build(in_base, registry, pricer, method="average").crypto["cryptocom", "ETH"]
    assert (book.quantity, book.cost, book.fees) == (D("1.001"), D("3000"), D("-3"))
