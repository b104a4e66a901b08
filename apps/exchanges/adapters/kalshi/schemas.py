"""Kalshi Trade API v2 payloads, as the spec lists them (sections 3-5).

TypedDicts only (`total=False`: the API changed shape three times in 2026, so every field may be
absent in some era). Current fields are fixed-point strings (`*_dollars` 4 dp, `*_fp` 2 dp);
era-A integer twins (cents, whole contracts) are kept for the fallback parser.
"""

from __future__ import annotations

from typing import TypedDict


class PriceRangeRow(TypedDict, total=False):
    start: str
    end: str
    step: str


class SeriesRow(TypedDict, total=False):
    ticker: str
    title: str
    category: str
    frequency: str
    tags: list[str]
    fee_type: str
    fee_multiplier: float | str


class MarketRow(TypedDict, total=False):
    ticker: str
    event_ticker: str
    market_type: str
    title: str
    yes_sub_title: str
    no_sub_title: str
    status: str
    open_time: str
    close_time: str
    expected_expiration_time: str
    latest_expiration_time: str
    settlement_ts: str
    result: str
    yes_bid_dollars: str
    yes_ask_dollars: str
    yes_bid_size_fp: str
    yes_ask_size_fp: str
    no_bid_dollars: str
    no_ask_dollars: str
    last_price_dollars: str
    previous_price_dollars: str
    volume_fp: str
    volume_24h_fp: str
    open_interest_fp: str
    settlement_value_dollars: str
    price_level_structure: str
    price_ranges: list[PriceRangeRow]
    fractional_trading_enabled: bool
    # era A
    yes_bid: int
    yes_ask: int
    last_price: int
    previous_price: int
    volume: int
    volume_24h: int
    open_interest: int
    tick_size: int


class EventRow(TypedDict, total=False):
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    mutually_exclusive: bool
    strike_date: str
    markets: list[MarketRow]


class OrderRow(TypedDict, total=False):
    order_id: str
    client_order_id: str
    ticker: str
    status: str
    outcome_side: str
    book_side: str
    side: str  # legacy: yes | no
    action: str  # legacy: buy | sell
    type: str
    yes_price_dollars: str
    no_price_dollars: str
    initial_count_fp: str
    fill_count_fp: str
    remaining_count_fp: str
    taker_fill_cost_dollars: str
    maker_fill_cost_dollars: str
    taker_fees_dollars: str
    maker_fees_dollars: str
    created_time: str
    last_update_time: str
    expiration_time: str | None
    # user_orders (WS)
    created_ts_ms: int
    last_updated_ts_ms: int
    # era A
    yes_price: int
    no_price: int
    initial_count: int
    fill_count: int
    remaining_count: int
    taker_fees: int
    maker_fees: int
    taker_fill_cost: int
    maker_fill_cost: int


class CreateOrderV2Response(TypedDict, total=False):
    order_id: str
    client_order_id: str
    fill_count: str
    remaining_count: str
    average_fill_price: str
    average_fee_paid: str
    ts_ms: int


class FillRow(TypedDict, total=False):
    fill_id: str
    trade_id: str
    order_id: str
    client_order_id: str
    ticker: str
    market_ticker: str
    outcome_side: str
    book_side: str
    side: str
    action: str
    count_fp: str
    yes_price_dollars: str
    no_price_dollars: str
    is_taker: bool
    fee_cost: str
    created_time: str
    ts: int
    ts_ms: int
    post_position_fp: str
    # era A
    count: int
    yes_price: int
    no_price: int
    yes_price_fixed: str
    no_price_fixed: str


class MarketPositionRow(TypedDict, total=False):
    ticker: str
    market_ticker: str
    position_fp: str
    market_exposure_dollars: str
    position_cost_dollars: str
    total_traded_dollars: str
    realized_pnl_dollars: str
    fees_paid_dollars: str
    last_updated_ts: str
    # era A
    position: int
    market_exposure: int
    realized_pnl: int
    fees_paid: int


class SettlementRow(TypedDict, total=False):
    ticker: str
    event_ticker: str
    market_result: str
    yes_count_fp: str
    no_count_fp: str
    yes_total_cost_dollars: str
    no_total_cost_dollars: str
    revenue: int
    value: int
    fee_cost: str
    settled_time: str
    # era A
    yes_count: int
    no_count: int


class BalanceRow(TypedDict, total=False):
    balance: int
    balance_dollars: str
    portfolio_value: int
    updated_ts: int


class TradeRow(TypedDict, total=False):
    trade_id: str
    ticker: str
    market_ticker: str
    count_fp: str
    yes_price_dollars: str
    no_price_dollars: str
    taker_outcome_side: str
    taker_book_side: str
    taker_side: str
    created_time: str
    ts: int
    ts_ms: int
    # era A
    count: int
    yes_price: int


class CandleRow(TypedDict, total=False):
    end_period_ts: int
    price: dict[str, str | None]
    yes_bid: dict[str, str | None]
    yes_ask: dict[str, str | None]
    volume_fp: str
    volume: int


class LifecycleRow(TypedDict, total=False):
    event_type: str
    market_ticker: str
    open_ts: int
    close_ts: int
    determination_ts: int
    settled_ts: int
    result: str
    settlement_value: str
    is_deactivated: bool
