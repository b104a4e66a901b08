"""Venue values -> K2 values, from payloads shaped like the spec's documented examples."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    Liquidity,
    OrderRequest,
    OrderStatus,
    OrderType,
    Outcome,
    Side,
    TimeInForce,
)
from apps.exchanges.adapters.cryptocom import symbols, translate
from apps.exchanges.adapters.cryptocom.adapter import stream_url

ORDER = {
    "account_id": "52e7c00f-1324-5a6z-bfgt-de445bde21a5",
    "order_id": "5755600460443882762",
    "client_oid": "my-oid-001",
    "order_type": "LIMIT",
    "time_in_force": "GOOD_TILL_CANCEL",
    "side": "BUY",
    "exec_inst": [],
    "quantity": "0.0100",
    "limit_price": "50000.0",
    "order_value": "500.000000",
    "maker_fee_rate": "0.000250",
    "taker_fee_rate": "0.000400",
    "avg_price": "49999.5",
    "cumulative_quantity": "0.0040",
    "cumulative_value": "199.998",
    "cumulative_fee": "0.080000",
    "status": "ACTIVE",
    "update_user_id": "fd797356-55db-48c2-a44d-157aabf702e8",
    "order_date": "2021-06-17",
    "instrument_name": "BTC_USD",
    "fee_instrument_name": "USD",
    "create_time": 1610905028000,
    "create_time_ns": "1610905028000123456",
    "update_time": 1610905028000,
}
TRADE = {
    "account_id": "ds4f4-5a6z-bfgt-de445bde21a5",
    "event_date": "2021-02-17",
    "journal_type": "TRADING",
    "side": "SELL",
    "instrument_name": "BTC_USD",
    "fees": "-1.025570",
    "trade_id": "6142909895014042762",
    "trade_match_id": "4611686018455978480",
    "create_time": 1613570791060,
    "traded_price": "51282.5",
    "traded_quantity": "0.0200",
    "fee_instrument_name": "USD",
    "client_oid": "d1c70a60-810e-4c92-b2a0-72b931cb31e0",
    "taker_side": "TAKER",
    "order_id": "6142909895036331486",
    "create_time_ns": "1613570791060827635",
}


def test_symbols_round_trip_and_derivatives_pass_through():
    assert symbols.to_venue("BTC-USD") == "BTC_USD"
    assert symbols.from_venue("BTC_USD") == "BTC-USD"
    assert symbols.to_venue("BTCUSD-PERP") == "BTCUSD-PERP"
    assert symbols.to_venue("ETHUSD-230825") == "ETHUSD-230825"
    assert symbols.from_venue("BTCUSD-PERP") == "BTCUSD-PERP"


def test_order_partially_filled_decimal_and_utc():
    state = translate.order(ORDER)  # type: ignore[arg-type]
    assert state.status is OrderStatus.PARTIALLY_FILLED
    assert state.instrument == "BTC-USD"
    assert state.quantity == Decimal("0.0100")
    assert state.filled_quantity == Decimal("0.0040")
    assert state.remaining_quantity == Decimal("0.0060")
    assert state.avg_fill_price == Decimal("49999.5")
    assert state.fees == Decimal("0.080000")
    assert state.time_in_force is TimeInForce.GTC
    assert state.created_at == datetime(2021, 1, 17, 17, 37, 8, 123, tzinfo=UTC)


@pytest.mark.parametrize(
    ("venue", "ours"),
    [
        ("NEW", OrderStatus.NEW),
        ("PENDING", OrderStatus.NEW),
        ("FILLED", OrderStatus.FILLED),
        ("CANCELED", OrderStatus.CANCELLED),
        ("REJECTED", OrderStatus.REJECTED),
        ("EXPIRED", OrderStatus.EXPIRED),
    ],
)
def test_statuses(venue, ours):
    assert translate.order({**ORDER, "status": venue, "cumulative_quantity": "0"}).status is ours  # type: ignore[typeddict-item]


def test_unknown_status_is_an_error():
    with pytest.raises(ex.UnexpectedResponse):
        translate.order({**ORDER, "status": "WEIRD"})  # type: ignore[typeddict-item]


def test_fill_fee_negative_on_wire_becomes_positive_cost():
    fill = translate.fill(TRADE)  # type: ignore[arg-type]
    assert fill.fee == Decimal("1.025570")
    assert fill.fee_currency == "USD"
    assert fill.side is Side.SELL
    assert fill.liquidity is Liquidity.TAKER
    assert fill.time.tzinfo is UTC
    assert fill.time == datetime(2021, 2, 17, 14, 6, 31, 60827, tzinfo=UTC)


def test_order_cumulative_fee_is_a_cost_and_a_rebate_stays_negative():
    """An order's `cumulative_fee` is positive when paid (unlike a trade's `fees`): it is kept as
    it is, so a maker rebate (negative) is not turned into a cost."""
    assert translate.order(ORDER).fees == Decimal("0.080000")  # type: ignore[arg-type]
    rebate = translate.order({**ORDER, "cumulative_fee": "-0.020000"})  # type: ignore[typeddict-item]
    assert rebate.fees == Decimal("-0.020000")
    assert rebate.fee_currency == "USD"


def test_fill_rebate_positive_on_wire_becomes_negative_fee():
    fill = translate.fill({**TRADE, "fees": "0.512785", "taker_side": "MAKER"})  # type: ignore[typeddict-item]
    assert fill.fee == Decimal("-0.512785")
    assert fill.liquidity is Liquidity.MAKER


def test_balances_total_available_hold():
    row = {"position_balances": [{"instrument_name": "BTC", "quantity": "1.5", "reserved_qty": "0.25"}]}
    (balance,) = translate.balances(row)  # type: ignore[arg-type]
    assert (balance.total, balance.available, balance.on_hold) == (
        Decimal("1.5"),
        Decimal("1.25"),
        Decimal("0.25"),
    )


def test_order_params_are_strings_and_post_only():
    request = OrderRequest(
        "BTC-USD",
        Side.BUY,
        OrderType.LIMIT,
        Decimal("0.0100"),
        "oid-1",
        price=Decimal("50000.5"),
        post_only=True,
    )
    params = translate.order_params(request)
    assert params == {
        "instrument_name": "BTC_USD",
        "side": "BUY",
        "type": "LIMIT",
        "client_oid": "oid-1",
        "price": "50000.5",
        "time_in_force": "GOOD_TILL_CANCEL",
        "quantity": "0.0100",
        "exec_inst": ["POST_ONLY"],
    }
    with pytest.raises(ex.InvalidOrder):
        translate.order_params(OrderRequest("BTC-USD", Side.BUY, OrderType.LIMIT, Decimal(1), "x"))
    with pytest.raises(ex.InvalidOrder):
        translate.order_params(
            OrderRequest("BTC-USD", Side.BUY, OrderType.MARKET, Decimal(1), "x", outcome=Outcome.YES)
        )


@pytest.mark.parametrize(
    ("code", "cls", "k2_code"),
    [
        (306, ex.InsufficientBalance, "INSUFFICIENT_BALANCE"),
        (20002, ex.InsufficientBalance, "INSUFFICIENT_BALANCE"),
        (204, ex.DuplicateOrder, "DUPLICATE_ORDER"),
        (209, ex.InstrumentNotFound, "INSTRUMENT_NOT_FOUND"),
        (30003, ex.InstrumentNotFound, "INSTRUMENT_NOT_FOUND"),
        (208, ex.MarketClosed, "MARKET_CLOSED"),
        (213, ex.InvalidOrder, "INVALID_ORDER"),
        (30013, ex.InvalidOrder, "INVALID_ORDER"),
        (40101, ex.AuthFailed, "EXCHANGE_AUTH_FAILED"),
        (10002, ex.AuthFailed, "EXCHANGE_AUTH_FAILED"),
        (42901, ex.RateLimited, "RATE_LIMITED"),
        (10006, ex.RateLimited, "RATE_LIMITED"),
        (40401, ex.OrderNotFound, "ORDER_NOT_FOUND"),
        (10001, ex.ExchangeUnavailable, "EXCHANGE_UNAVAILABLE"),
        (40102, ex.InvalidNonce, "EXCHANGE_CLOCK_SKEW"),
        (10007, ex.InvalidNonce, "EXCHANGE_CLOCK_SKEW"),
        (10004, ex.BadRequest, "EXCHANGE_BAD_REQUEST"),
        (30010, ex.BadRequest, "EXCHANGE_BAD_REQUEST"),
    ],
)
def test_error_codes_including_legacy(code, cls, k2_code):
    error = translate.error_for(code, "x", http_status=400, result=None)
    assert type(error) is cls
    assert error.code == k2_code
    assert error.venue_code == str(code)


def test_retry_classes():
    assert isinstance(translate.error_for(42901, "", http_status=429, result=None), ex.RetryableError)
    assert isinstance(translate.error_for(306, "", http_status=500, result=None), ex.NonRetryableError)
    assert isinstance(translate.error_for(40101, "", http_status=401, result=None), ex.FatalError)
    assert not issubclass(ex.OrderOutcomeUnknown, ex.RetryableError | ex.NonRetryableError | ex.FatalError)
    unknown = translate.error_for(77777, "", http_status=503, result=None)
    assert isinstance(unknown, ex.ExchangeUnavailable)


def test_stream_urls_from_base_url():
    assert (
        stream_url("https://api.crypto.com/exchange/v1", "market")
        == "wss://stream.crypto.com/exchange/v1/market"
    )
    assert (
        stream_url("https://uat-api.3ona.co/exchange/v1", "user")
        == "wss://uat-stream.3ona.co/exchange/v1/user"
    )
    assert stream_url("http://127.0.0.1:8601/exchange/v1", "user") == "ws://127.0.0.1:8601/exchange/v1/user"
