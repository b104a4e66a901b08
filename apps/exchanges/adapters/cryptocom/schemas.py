"""Crypto.com v1 payloads, field for field as the spec lists them (sections 1, 3 and 4).

TypedDicts only: they document and type the wire; `translate.py` turns them into K2 types.
Decimal-valued fields are strings on the wire; ms times are ints (the newer docs print strings,
so readers accept both).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class Envelope(TypedDict):
    id: int | str
    method: str
    code: int | str
    message: NotRequired[str]
    original: NotRequired[str]
    result: NotRequired[dict[str, Any]]


class InstrumentRow(TypedDict):
    symbol: str
    inst_type: str
    display_name: str
    base_ccy: str
    quote_ccy: str
    quote_decimals: int
    quantity_decimals: int
    price_tick_size: str
    qty_tick_size: str
    max_leverage: str
    tradable: bool
    expiry_timestamp_ms: int
    beta_product: bool
    margin_buy_enabled: NotRequired[bool]
    margin_sell_enabled: NotRequired[bool]
    underlying_symbol: NotRequired[str]
    contract_size: NotRequired[str]


class TickerRow(TypedDict):
    i: str
    h: str | None
    l: str | None  # noqa: E741 - the venue's field name
    a: str | None
    c: str | None
    b: str | None
    k: str | None
    v: str
    vv: str
    oi: str
    t: int
    bs: NotRequired[str | None]
    ks: NotRequired[str | None]


BookLevelRow = list[str]  # [price, quantity, order count]


class BookRow(TypedDict):
    bids: list[BookLevelRow]
    asks: list[BookLevelRow]
    t: int
    tt: NotRequired[int]
    u: NotRequired[int]


class BookUpdateRow(TypedDict):
    update: dict[str, list[BookLevelRow]]
    t: int
    tt: NotRequired[int]
    u: int
    pu: int
    cs: NotRequired[int]


class PublicTradeRow(TypedDict):
    d: str
    t: int
    tn: NotRequired[str]
    p: str
    q: str
    s: str
    i: str
    m: NotRequired[str]


class CandleRow(TypedDict):
    o: str
    h: str
    l: str  # noqa: E741 - the venue's field name
    c: str
    v: str
    t: int


class OrderRow(TypedDict):
    account_id: str
    order_id: str
    client_oid: str
    order_type: str
    time_in_force: str
    side: str
    exec_inst: list[str]
    quantity: str
    limit_price: str
    order_value: str
    avg_price: str
    cumulative_quantity: str
    cumulative_value: str
    cumulative_fee: str
    status: str
    instrument_name: str
    fee_instrument_name: str
    create_time: int
    update_time: int
    create_time_ns: NotRequired[str]
    maker_fee_rate: NotRequired[str]
    taker_fee_rate: NotRequired[str]
    reason: NotRequired[str]
    order_date: NotRequired[str]
    update_user_id: NotRequired[str]
    transaction_time: NotRequired[int]


class TradeRow(TypedDict):
    """A fill (private/get-trades, user.trade); `fees` is negative for a deduction."""

    account_id: str
    event_date: str
    journal_type: str
    order_id: str
    trade_id: str
    trade_match_id: str
    client_oid: str
    traded_quantity: str
    traded_price: str
    side: str
    instrument_name: str
    taker_side: str
    create_time: int
    fees: str
    fee_instrument_name: str
    create_time_ns: NotRequired[str]
    transact_time_ns: NotRequired[str]
    transaction_time: NotRequired[str]


class PositionBalanceRow(TypedDict):
    instrument_name: str
    quantity: str
    market_value: str
    collateral_eligible: str
    haircut: str
    collateral_amount: str
    max_withdrawal_balance: str
    reserved_qty: str


class UserBalanceRow(TypedDict):
    total_available_balance: str
    total_margin_balance: str
    total_cash_balance: str
    instrument_name: str
    position_balances: list[PositionBalanceRow]


class PositionRow(TypedDict):
    account_id: str
    instrument_name: str
    type: str
    quantity: str
    cost: str
    open_position_pnl: str
    open_pos_cost: str
    session_pnl: str
    update_timestamp_ms: int
