"""Kalshi translation: the one price table, both payload eras, errors. Payloads follow the field
lists of the spec digest (`shared/specs/kalshi-trade-v2.md` sections 3-6)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    InstrumentStatus,
    OrderRequest,
    OrderStatus,
    OrderType,
    Outcome,
    Side,
    TimeInForce,
)
from apps.exchanges.adapters.kalshi import translate, ws_url_for

D = Decimal


@pytest.mark.parametrize(
    ("side", "outcome", "price", "book_side", "yes_price"),
    [
        (Side.BUY, Outcome.YES, "0.56", "bid", "0.5600"),
        (Side.BUY, Outcome.NO, "0.40", "ask", "0.6000"),
        (Side.SELL, Outcome.YES, "0.58", "ask", "0.5800"),
        (Side.SELL, Outcome.NO, "0.45", "bid", "0.5500"),
    ],
)
def test_one_table_turns_k2_orders_into_v2_orders(side, outcome, price, book_side, yes_price):
    request = OrderRequest(
        "KXBTC-24DEC31-B100000", side, OrderType.LIMIT, D(10), "c1", price=D(price), outcome=outcome
    )
    body = translate.order_body(request)
    assert body == {
        "ticker": "KXBTC-24DEC31-B100000",
        "side": book_side,
        "count": "10.00",
        "price": yes_price,
        "time_in_force": "good_till_canceled",
        "self_trade_prevention_type": "taker_at_cross",
        "client_order_id": "c1",
    }


def test_order_body_rejects_what_kalshi_would():
    base = OrderRequest("X", Side.BUY, OrderType.LIMIT, D(1), "c", price=D("0.50"), outcome=Outcome.YES)
    for bad in (
        OrderRequest("X", Side.BUY, OrderType.LIMIT, D(1), "c", price=D("0.50")),  # no outcome
        OrderRequest("X", Side.BUY, OrderType.LIMIT, D("1.5"), "c", price=D("0.50"), outcome=Outcome.YES),
        OrderRequest("X", Side.BUY, OrderType.LIMIT, D(1), "c", price=D("0.999"), outcome=Outcome.YES),
        OrderRequest("X", Side.BUY, OrderType.LIMIT, D(1), "c", price=D("0.505"), outcome=Outcome.YES),
        OrderRequest("X", Side.BUY, OrderType.LIMIT, D(1), "c", outcome=Outcome.YES),
    ):
        with pytest.raises(ex.InvalidOrder):
            translate.order_body(bad)
    market = OrderRequest("X", Side.SELL, OrderType.MARKET, D(2), "c", outcome=Outcome.NO)
    assert translate.order_body(market)["price"] == "0.9900"  # sell NO at 0.01 = bid YES at 0.99
    assert translate.order_body(market)["time_in_force"] == "immediate_or_cancel"
    assert translate.order_body(base)["count"] == "1.00"


def test_v2_create_answer():
    request = OrderRequest("X", Side.BUY, OrderType.LIMIT, D(10), "c", price=D("0.40"), outcome=Outcome.NO,
                           time_in_force=TimeInForce.IOC)  # fmt: skip
    ack = {"order_id": "o1", "client_order_id": "c", "fill_count": "4.00", "remaining_count": "0.00",
           "average_fill_price": "0.6100", "average_fee_paid": "0.0200", "ts_ms": 1703123456789}  # fmt: skip
    state = translate.order_from_ack(request, ack)  # type: ignore[arg-type]
    assert state.status is OrderStatus.CANCELLED
    assert state.filled_quantity == 4
    assert state.avg_fill_price == D("0.3900")  # a NO price: 1 - the YES fill price
    assert state.fees == D("0.0800")
    assert state.created_at == datetime(2023, 12, 21, 1, 50, 56, 789000, UTC)


ERA_C_ORDER = {
    "order_id": "ee1b4ef8", "user_id": "u", "client_order_id": "c2", "ticker": "FED-23DEC-T3.00",
    "outcome_side": "no", "book_side": "ask", "side": "no", "action": "buy", "type": "limit",
    "status": "resting", "yes_price_dollars": "0.5600", "no_price_dollars": "0.4400",
    "initial_count_fp": "10.00", "fill_count_fp": "4.00", "remaining_count_fp": "6.00",
    "taker_fill_cost_dollars": "1.7600", "maker_fill_cost_dollars": "0.0000",
    "taker_fees_dollars": "0.0700", "maker_fees_dollars": "0.0000",
    "created_time": "2026-04-22T15:01:02Z", "last_update_time": "2026-04-22T15:01:03Z",
}  # fmt: skip
ERA_A_ORDER = {
    "order_id": "ee1b4ef8", "client_order_id": "c2", "ticker": "FED-23DEC-T3.00", "side": "no",
    "action": "buy", "type": "limit", "status": "resting", "yes_price": 56, "no_price": 44,
    "initial_count": 10, "fill_count": 4, "remaining_count": 6, "taker_fill_cost": 176,
    "maker_fill_cost": 0, "taker_fees": 7, "maker_fees": 0, "created_time": "2026-01-22T15:01:02Z",
}  # fmt: skip


@pytest.mark.parametrize("row", [ERA_C_ORDER, ERA_A_ORDER], ids=["fixed-point", "cents"])
def test_orders_of_both_eras(row):
    state = translate.order(row)
    assert (state.side, state.outcome, state.status) == (Side.BUY, Outcome.NO, OrderStatus.PARTIALLY_FILLED)
    assert (state.price, state.quantity, state.filled_quantity) == (D("0.44"), 10, 4)
    assert state.avg_fill_price == D("0.44")
    assert state.fees == D("0.07")


def test_order_with_only_book_side():
    row = {
        **ERA_C_ORDER,
        "side": "",
        "action": "",
        "outcome_side": "yes",
        "book_side": "ask",
        "status": "executed",
    }
    state = translate.order(row)
    assert (state.side, state.outcome, state.price, state.status) == (
        Side.SELL,
        Outcome.YES,
        D("0.56"),
        OrderStatus.FILLED,
    )


def test_fills_of_both_eras():
    era_c = {"fill_id": "f1", "order_id": "o", "ticker": "T", "outcome_side": "yes", "book_side": "bid",
             "side": "yes", "action": "buy", "count_fp": "3.00", "yes_price_dollars": "0.5600",
             "no_price_dollars": "0.4400", "is_taker": True, "fee_cost": "0.0600",
             "created_time": "2026-04-22T15:01:02Z"}  # fmt: skip
    era_a = {"trade_id": "f1", "order_id": "o", "market_ticker": "T", "side": "yes", "action": "buy",
             "count": 3, "yes_price": 56, "no_price": 44, "is_taker": True, "ts": 1776870062}  # fmt: skip
    for row in (era_c, era_a):
        fill = translate.fill(row)
        assert (fill.venue_trade_id, fill.instrument, fill.quantity, fill.price) == ("f1", "T", 3, D("0.56"))
        assert fill.outcome is Outcome.YES
        assert fill.side is Side.BUY
    assert translate.fill(era_c).fee == D("0.06")


def test_books_are_yes_terms_and_best_bid_is_last():
    payload = {"yes_dollars": [["0.4000", "5.00"], ["0.4200", "13.00"]], "no_dollars": [["0.5600", "7.00"]]}
    book = translate.yes_book("T", *translate.orderbook_sides(payload))
    assert [(lv.price, lv.quantity) for lv in book.bids] == [(D("0.42"), 13), (D("0.40"), 5)]
    assert [(lv.price, lv.quantity) for lv in book.asks] == [(D("0.44"), 7)]
    era_a = {"yes": [[40, 5], [42, 13]], "no": [[56, 7]]}
    assert translate.yes_book("T", *translate.orderbook_sides(era_a)).bids == book.bids


def test_market_balance_position_settlement():
    market = {"ticker": "KXBTC-24DEC31-B100000", "event_ticker": "KXBTC-24DEC31", "status": "determined",
              "result": "yes", "close_time": "2024-12-31T22:00:00Z", "yes_bid_dollars": "0.0000",
              "yes_ask_dollars": "1.0000",
              "price_ranges": [{"start": "0", "end": "1", "step": "0.01"}]}  # fmt: skip
    instrument = translate.instrument(market)
    assert instrument.status is InstrumentStatus.CLOSED
    assert instrument.tick_size == D("0.01")
    assert translate.market(market).result is Outcome.YES
    assert translate.ticker(market).bid is None
    assert translate.ticker(market).ask is None
    balance = translate.balance({"balance": 123456, "portfolio_value": 100}, 1050)
    assert (balance.available, balance.on_hold, balance.total) == (D("1234.56"), D("10.50"), D("1245.06"))
    short = translate.position({"ticker": "T", "position_fp": "-4.00", "market_exposure_dollars": "1.6000"})
    assert (short.quantity, short.outcome, short.cost) == (D(-4), Outcome.NO, D("1.6"))
    assert translate.position({"ticker": "T", "position": 3, "market_exposure": 150}).cost == D("1.5")
    settlement = translate.settlement(
        {"ticker": "T", "market_result": "no", "no_count_fp": "4.00", "revenue": 400}
    )
    assert (settlement.revenue, settlement.result, settlement.no_count) == (D(4), Outcome.NO, 4)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (
            401,
            {"error": {"code": "authentication_error", "details": "INCORRECT_API_KEY_SIGNATURE"}},
            ex.AuthFailed,
            "EXCHANGE_AUTH_FAILED",
        ),
        (
            400,
            {"error": {"code": "insufficient_balance", "message": "x"}},
            ex.InsufficientBalance,
            "INSUFFICIENT_BALANCE",
        ),
        (409, {"error": {"code": "market_closed", "message": "x"}}, ex.MarketClosed, "MARKET_CLOSED"),
        (
            400,
            {"error": {"code": "invalid_order", "message": "exactly one of yes_price..."}},
            ex.InvalidOrder,
            "INVALID_ORDER",
        ),
        (400, {"error": {"code": "invalid_price"}}, ex.InvalidOrder, "INVALID_ORDER"),
        (409, {"error": {"code": "order_already_exists"}}, ex.DuplicateOrder, "DUPLICATE_ORDER"),
        (404, {"error": {"code": "not_found"}}, ex.OrderNotFound, "ORDER_NOT_FOUND"),
        (429, {"error": "too many requests"}, ex.RateLimited, "RATE_LIMITED"),
        (503, {}, ex.ExchangeUnavailable, "EXCHANGE_UNAVAILABLE"),
        (403, {"error": {"code": "scope_required"}}, ex.PermissionDenied, "EXCHANGE_PERMISSION_DENIED"),
    ],
)
def test_errors_map_to_k2_codes(status, body, cls, code):
    error = translate.error_for(status, body)
    assert isinstance(error, cls)
    assert error.code == code
    assert error.venue == "kalshi"


def test_ws_url_from_base_url():
    assert (
        ws_url_for("https://external-api.kalshi.com/trade-api/v2")
        == "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
    )
    assert ws_url_for("http://127.0.0.1:8602/trade-api/v2") == "ws://127.0.0.1:8602/trade-api/ws/v2"
