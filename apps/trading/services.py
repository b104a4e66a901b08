"""Trading writes. Every status change goes through `order_transition` on a locked row, inside
a transaction, audited, and announced after commit; the one exception is the venue's answer to
a submit, written without a lock by one statement that only applies while the row is as the
placing request left it (else it takes the locked path). No transaction is open while a venue is
called: the intent is stored and committed first, the venue is called with a bounded timeout,
and its answer is recorded in a new transaction.

    order_place          validate -> store intent (pending) -> risk (submitted | rejected)
                         -> send -> record (open/partial/filled/cancelled | rejected | unknown)
    order_cancel         cancel one order (locally when pending, else at the venue)
    orders_cancel_all    cancel a user's live orders, optionally by instrument or venue
    order_apply_venue_state / execution_record
                         what the venue says (submit answer, user stream, reconciliation)
    order_reconcile      ask the venue about one order by K2's client order id; settle it
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import (
    ExchangeAdapter,
    Fill,
    OrderRequest,
    OrderState,
)
from apps.exchanges.adapters.base import OrderStatus as VenueStatus
from apps.exchanges.adapters.base import OrderType as VenueOrderType
from apps.exchanges.adapters.base import Outcome as VenueOutcome
from apps.exchanges.adapters.base import Side as VenueSide
from apps.exchanges.adapters.base import TimeInForce as VenueTimeInForce
from apps.exchanges.calls import CallRecorder
from apps.exchanges.models import ExchangeLink
from apps.exchanges.selectors import exchange_link_active
from apps.exchanges.services import link_credentials
from apps.marketdata.models import Instrument
from apps.trading import risk, selectors
from apps.trading.choices import TERMINAL_STATUSES, OrderStatus
from apps.trading.events import (
    order_announce,
    order_announcement_of,
    order_domain_event,
    order_updates_batched,
)
from apps.trading.exceptions import (
    ExchangeNotLinked,
    IdempotencyKeyReused,
    InstrumentUnknown,
    OrderNotCancellable,
    OrderNotFound,
    OrderRejected,
    RiskRejection,
)
from apps.trading.models import Order, OrderExecution
from apps.trading.state import NOT_FOUND_AT_VENUE, can_transition
from apps.trading.venue import venue_call
from k2.api.exceptions import ApplicationError
from k2.audit.services import atomic_audited, audit_entry, audit_held, held_entries, record
from k2.core.queries import pipelined, row_insert, row_update, row_update_if
from k2.observability.logging import get_logger

log = get_logger(__name__)

SUBMISSION_ABANDONED = "SUBMISSION_ABANDONED"
UNKNOWN_OUTCOME_ERRORS: tuple[type[ex.ExchangeError], ...] = (
    ex.OrderOutcomeUnknown,  # sent, no definite answer
    ex.ExchangeTimeout,  # includes our own deadline
    ex.UnexpectedResponse,  # an answer we could not read: it may have been a yes
    ex.DuplicateOrder,  # the venue already holds an order with our id: it is ours
)

VENUE_TO_STATUS: dict[VenueStatus, str] = {
    VenueStatus.NEW: OrderStatus.OPEN,
    VenueStatus.OPEN: OrderStatus.OPEN,
    VenueStatus.PARTIALLY_FILLED: OrderStatus.PARTIAL,
    VenueStatus.FILLED: OrderStatus.FILLED,
    VenueStatus.CANCELLED: OrderStatus.CANCELLED,
    VenueStatus.EXPIRED: OrderStatus.CANCELLED,
    VenueStatus.REJECTED: OrderStatus.REJECTED,
}


# ---- the state machine ---------------------------------------------------------------------------


def order_transition(
    order: Order,
    *,
    status: str,
    source: str,
    actor: Any = None,
    error_code: str = "",
    error_message: str = "",
    details: dict[str, Any] | None = None,
) -> bool:
    """Move a locked order to `status` if the state machine allows it; audit the move.
    Returns False (and changes nothing) for an illegal or stale move. The caller saves."""
    current = order.status
    if status == current:
        return False
    if not can_transition(current, status, error_code=order.error_code):
        log.info(
            "order_transition_ignored", order_id=str(order.pk), current=current, target=status, source=source
        )
        return False
    correction = current == OrderStatus.REJECTED
    now = timezone.now()
    order.status = status
    order.closed_at = now if status in TERMINAL_STATUSES else None
    if status == OrderStatus.SUBMITTED:
        order.submitted_at = now
    if status == OrderStatus.REJECTED:
        order.error_code = error_code or order.error_code or "REJECTED"
        order.error_message = error_message or order.error_message
    elif correction:
        order.metadata = {**order.metadata, "corrected_from": {"error_code": order.error_code}}
        order.error_code, order.error_message = "", ""
    elif error_code:
        order.error_code, order.error_message = error_code, error_message
    record(
        actor,
        "order.corrected" if correction else f"order.{status}",
        order,
        {
            "from": current,
            "to": status,
            "source": source,
            "user_id": str(order.user_id),
            "client_order_id": order.client_order_id,
            "filled_quantity": str(order.filled_quantity),
            **({"error_code": order.error_code} if order.error_code else {}),
            **(details or {}),
        },
    )
    return True


_SAVE_FIELDS = [
    "status", "exchange_order_id", "filled_quantity", "avg_fill_price", "fees", "fee_currency",
    "submitted_at", "closed_at", "cancel_requested_at", "reconciled_at", "error_code", "error_message",
    "metadata", "notional", "updated_at",
]  # fmt: skip


def _save(order: Order) -> None:
    """Write the order and, in the same statement, the audit entries its change recorded."""
    row_update(order, _SAVE_FIELDS, along=held_entries())


def _order_move(
    order: Order,
    *,
    status: str,
    source: str,
    actor: Any = None,
    note: dict[str, Any] | None = None,
    **why: Any,
) -> None:
    """Move a locked order to `status` (`order_transition`; `why`: its error code, message and
    details); if it moved, add `note` to its metadata, write it with its audit entries and
    announce it after commit. An order that did not move is left as it was."""
    if order_transition(order, status=status, source=source, actor=actor, **why):
        if note:
            order.metadata = {**order.metadata, **note}
        _save(order)
        order_announce(order, status_changed_to=order.status)


def _merge_numbers(
    order: Order, *, filled: Decimal, avg: Decimal | None, fees: Decimal, fee_currency: str | None
) -> bool:
    """Fill numbers only grow: a late or duplicate message never takes them back. Fees follow a
    view covering at least the fills we know of (a rebate can lower them), and only in the
    order's fee currency; an older view can only raise them."""
    changed = False
    if filled > order.quantity:
        log.error("venue_overfill", order_id=str(order.pk), filled=str(filled), quantity=str(order.quantity))
        filled = order.quantity
    current = filled >= order.filled_quantity
    if filled > order.filled_quantity:
        order.filled_quantity = filled
        if avg is not None:
            order.avg_fill_price = avg
        changed = True
    same_currency = not fee_currency or not order.fee_currency or fee_currency == order.fee_currency
    if same_currency and fees != order.fees and (current or fees > order.fees):
        order.fees = fees
        changed = True
    if fee_currency and not order.fee_currency:
        order.fee_currency = fee_currency
        changed = True
    return changed


def _in_order_terms(order: Order, outcome: str | None, price: Decimal | None) -> Decimal | None:
    """A venue's price for `outcome` as a price of the order's own outcome. Kalshi describes a NO
    bought against a YES position (and its fills) as YES sold, at the YES price: 1 - the NO price."""
    if price is None or not outcome or not order.outcome or str(outcome) == order.outcome:
        return price
    return 1 - price


def _status_from_fills(order: Order, proposed: str) -> str:
    """What the order's fills make of the `proposed` status: a live order with fills is partial
    or filled. So is one rejected only because the venue did not show it (`NOT_FOUND_AT_VENUE`):
    a fill proves the venue had it."""
    not_found = proposed == OrderStatus.REJECTED and order.error_code == NOT_FOUND_AT_VENUE
    if not_found or proposed in (
        OrderStatus.OPEN, OrderStatus.PARTIAL, OrderStatus.SUBMITTED, OrderStatus.UNKNOWN,
    ):  # fmt: skip
        if order.filled_quantity >= order.quantity:
            return OrderStatus.FILLED
        if order.filled_quantity > 0:
            return OrderStatus.PARTIAL
    return proposed


def _order_lock_audited(*, order_id: Any, calls: CallRecorder | None, actor: Any) -> Order | None:
    """Lock an order (inside a transaction) and audit there the venue requests whose answer is
    about to be recorded: the entries exist exactly when the answer does."""
    order = selectors.order_lock(order_id=order_id)
    if calls is not None:
        calls.flush(actor, order or ("trading.order", str(order_id)))
    return order


def _fold_state(order: Order, state: OrderState, *, source: str, actor: Any) -> tuple[bool, bool]:
    """Fold what the venue says into `order` (in memory, transition audited): (numbers or ids
    changed, status moved)."""
    changed = _merge_numbers(
        order,
        filled=state.filled_quantity,
        avg=_in_order_terms(order, state.outcome, state.avg_fill_price),
        fees=state.fees,
        fee_currency=state.fee_currency,
    )
    if state.venue_order_id and not order.exchange_order_id:
        order.exchange_order_id = state.venue_order_id
        changed = True
    target = _status_from_fills(order, VENUE_TO_STATUS[state.status])
    moved = order_transition(
        order,
        status=target,
        source=source,
        actor=actor,
        error_code=(state.reject_code or "EXCHANGE_REJECTED") if target == OrderStatus.REJECTED else "",
        error_message=state.reason or "",
    )
    if source == "reconcile":
        order.reconciled_at = timezone.now()
    return changed, moved


def order_apply_venue_state(
    *,
    order_id: Any,
    state: OrderState,
    source: str,
    actor: Any = None,
    calls: CallRecorder | None = None,
    written: Order | None = None,
) -> Order | None:
    """Record what the venue says about an order (any source, any order, any number of times).
    `calls`: the venue requests that produced `state`, audited in the same transaction.
    `written`: the order as this process last wrote it, if it did; while the row is unchanged
    since, the answer is recorded without a lock (`_order_apply_unchanged`)."""
    if written is not None:
        applied = _order_apply_unchanged(written, state=state, source=source, actor=actor, calls=calls)
        if applied is not None:
            return applied
    with atomic_audited():
        order = _order_lock_audited(order_id=order_id, calls=calls, actor=actor)
        if order is None:
            return None
        changed, moved = _fold_state(order, state, source=source, actor=actor)
        if changed or moved or source == "reconcile":
            _save(order)
        if changed or moved:
            order_announce(order, status_changed_to=order.status if moved else None)
            if source == "stream" and _cancel_outstanding(order):
                _reconcile_soon(order)  # which carries the cancel out, with the link's credentials
    return order


# What another writer changes on an order row: `_save` refreshes updated_at, reconciliation's
# touch sets reconciled_at alone.
_UNCHANGED_SINCE = ("status", "updated_at", "reconciled_at")


def _order_apply_unchanged(
    written: Order, *, state: OrderState, source: str, actor: Any, calls: CallRecorder | None
) -> Order | None:
    """`order_apply_venue_state` for an order whose row is still exactly as `written` (an order
    being placed: no one else has seen it at the venue yet, usually): the change and its audit
    entries in one conditional statement, no lock, no transaction. None, with nothing written,
    when the row changed meanwhile (a user-stream message, a cancel, reconciliation): the caller
    then records the answer on the locked row."""
    unchanged = {name: getattr(written, name) for name in _UNCHANGED_SINCE}
    order = copy.copy(written)  # `written` stays as the row was, for the locked path
    pending = list(calls.calls) if calls is not None else []
    with audit_held():
        if calls is not None:
            calls.flush(actor, order)
        changed, moved = _fold_state(order, state, source=source, actor=actor)
        domain_event = order_domain_event(order, status_changed_to=order.status if moved else None)
        recorded = (changed or moved) and row_update_if(
            order, _SAVE_FIELDS, unchanged=unchanged, along=held_entries()
        )
    if not recorded:  # nothing written: the locked path records the answer and its calls
        if calls is not None:
            calls.calls[:0] = pending
        return None
    try:
        order_announcement_of(order, domain_event=domain_event)()  # updated_at as written
    except Exception:  # as on_commit(robust=True): the change is recorded; log and go on
        log.exception("order_announce_failed", order_id=str(order.pk))
    return order


def execution_record(*, venue: str, fill: Fill, source: str) -> bool:
    """Record one fill exactly once (unique venue trade id) and fold it into its order.
    Returns False for a duplicate or for a fill of an order K2 did not place."""
    order_id = selectors.order_find_for_venue(
        venue=venue, venue_client_order_id=fill.client_order_id, exchange_order_id=fill.venue_order_id
    )
    if order_id is None:
        return False
    with atomic_audited():
        order = selectors.order_lock(order_id=order_id)
        if order is None:
            return False
        try:
            with transaction.atomic():
                execution = OrderExecution.objects.create(
                    order=order,
                    user_id=order.user_id,
                    exchange=venue,
                    exchange_exec_id=fill.venue_trade_id,
                    instrument=order.instrument,
                    side=order.side,
                    outcome=order.outcome,
                    quantity=fill.quantity,
                    price=_in_order_terms(order, fill.outcome, fill.price),
                    fee=fill.fee,
                    fee_currency=fill.fee_currency or "",
                    liquidity=str(fill.liquidity) if fill.liquidity else "",
                    executed_at=fill.time,
                )
        except IntegrityError:
            return False
        record(
            None,
            "order.execution",
            order,
            {
                "execution_id": str(execution.pk),
                "exchange_exec_id": fill.venue_trade_id,
                "quantity": str(fill.quantity),
                "price": str(execution.price),
                "fee": str(fill.fee),
                "fee_currency": fill.fee_currency,
                "source": source,
            },
        )
        totals = selectors.execution_totals(order_id=order.pk)
        _merge_numbers(
            order, filled=totals.quantity, avg=None, fees=totals.fees, fee_currency=totals.fee_currency
        )
        if totals.mixed_fee_currencies:
            log.warning(
                "order_fees_mixed_currencies",
                order_id=str(order.pk),
                fee_currency=totals.fee_currency,
                other_fees={currency: str(amount) for currency, amount in totals.other_fees},
            )
        if totals.quantity >= order.filled_quantity and totals.vwap is not None:
            # Every fill recorded: their average is the order's, whatever an order message said
            # (a venue may leave it out or round it, and a count seen first kept it stale).
            order.avg_fill_price = totals.vwap
        if fill.venue_order_id and not order.exchange_order_id:
            order.exchange_order_id = fill.venue_order_id
        moved = order_transition(order, status=_status_from_fills(order, order.status), source=source)
        _save(order)
        order_announce(order, status_changed_to=order.status if moved else None)
    return True


# ---- placing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderInput:
    instrument: str
    side: str
    order_type: str
    quantity: Decimal
    price: Decimal | None = None
    outcome: str = ""
    time_in_force: str = "gtc"
    post_only: bool = False
    client_order_id: str | None = None

    def fingerprint(self) -> str:
        """The request's identity: same fingerprint = same order (decimals compared by value)."""

        def num(value: Decimal | None) -> str | None:
            return None if value is None else format(value.normalize(), "f")

        body = {
            "instrument": self.instrument.strip().upper(),
            "side": self.side,
            "order_type": self.order_type,
            "quantity": num(self.quantity),
            "price": num(self.price),
            "outcome": self.outcome or None,
            "time_in_force": self.time_in_force,
            "post_only": self.post_only,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass
class PlaceResult:
    order: Order
    created: bool


def _instrument_and_link(*, symbol: str, user: Any) -> tuple[Instrument, ExchangeLink | None]:
    """The instrument and the user's active link to its venue (None: not linked), in one read."""
    instrument, link = selectors.instrument_with_link(symbol=symbol.strip().upper(), user_id=user.pk)
    if instrument is None:
        raise InstrumentUnknown(f"Unknown instrument {symbol!r}.", details={"instrument": symbol})
    return instrument, link


def order_rejection_error(order: Order) -> OrderRejected:
    """The API error for a rejected order (the same on every replay of its request)."""
    rejection = order.metadata.get("rejection") or {}
    return OrderRejected(
        code=order.error_code or "REJECTED",
        message=order.error_message or "The order was rejected.",
        details={
            "order_id": str(order.pk),
            "client_order_id": order.client_order_id,
            "status": order.status,
            **rejection,
        },
    )


def order_place(*, user: Any, data: OrderInput, actor: Any = None) -> PlaceResult:
    """Place an order exactly once per (user, client_order_id).

    A replay of the same request returns the original order without calling the venue; the same
    key with a different request raises `IdempotencyKeyReused`. Concurrent duplicates are decided
    by the database's unique constraint: one inserts and proceeds, the others replay.
    """
    actor = actor or user
    instrument, link = _instrument_and_link(symbol=data.instrument, user=user)
    risk.order_validate(
        instrument=instrument,
        side=data.side,
        order_type=data.order_type,
        quantity=data.quantity,
        price=data.price,
        outcome=data.outcome,
        time_in_force=data.time_in_force,
        post_only=data.post_only,
    )
    if instrument.close_time is not None and instrument.close_time <= timezone.now():
        raise risk.InvalidOrderInput(
            f"{instrument.symbol} has closed.",
            code="MARKET_CLOSED",
            details={"instrument": instrument.symbol},
        )
    if link is None:
        raise ExchangeNotLinked(details={"exchange": instrument.venue})
    fingerprint = data.fingerprint()
    # Pending and submitted (or rejected) reach the user's sockets together when this block
    # ends, before the venue hears of the order: only then can the user stream push about it.
    with order_updates_batched():
        order, config = _order_create(
            user=user, data=data, instrument=instrument, fingerprint=fingerprint, actor=actor
        )
        if config is None:
            if order.request_fingerprint != fingerprint:
                record(actor, "order.idempotency_conflict", order, {"client_order_id": order.client_order_id})
                raise IdempotencyKeyReused(
                    details={"client_order_id": order.client_order_id, "order_id": str(order.pk)}
                )
            return PlaceResult(order=order, created=False)

        credentials = link_credentials(link)
        inputs = risk.risk_gather(
            order=order, instrument=instrument, link_id=link.pk, credentials=credentials, config=config
        )
        try:
            order = _order_risk_check(
                order=order, instrument=instrument, link_id=link.pk, inputs=inputs, actor=actor
            )
        except (risk.AccountSnapshotStale, risk.KillSwitchesChanged) as again:
            inputs = risk.risk_gather(
                order=order,
                instrument=instrument,
                link_id=link.pk,
                credentials=credentials,
                allow_stale=False,
                fresh_account=isinstance(again, risk.AccountSnapshotStale),
            )
            order = _order_risk_check(
                order=order, instrument=instrument, link_id=link.pk, inputs=inputs, actor=actor, last_try=True
            )
    if order.status != OrderStatus.SUBMITTED:
        return PlaceResult(order=order, created=True)
    order = order_submit(order=order, credentials=credentials, actor=actor)
    return PlaceResult(order=order, created=True)


def _order_create(
    *, user: Any, data: OrderInput, instrument: Instrument, fingerprint: str, actor: Any
) -> tuple[Order, selectors.RiskConfig | None]:
    """Store the intent (pending) with its audit entry, committed: one statement, so it needs no
    transaction of its own. The order's risk configuration is read in the same round trip.
    Returns the order and that configuration; a concurrent duplicate fails on the unique key and
    replays: the order already stored, and None."""
    client_order_id = data.client_order_id or f"k2-{secrets.token_hex(12)}"
    order = Order(
        user=user,
        client_order_id=client_order_id,
        request_fingerprint=fingerprint,
        exchange=instrument.venue,
        instrument=instrument.symbol,
        instrument_type=instrument.instrument_type,
        side=data.side,
        outcome=data.outcome,
        order_type=data.order_type,
        time_in_force=data.time_in_force,
        post_only=data.post_only,
        quantity=data.quantity,
        price=data.price,
        status=OrderStatus.PENDING,
    )
    created = audit_entry(
        actor,
        "order.created",
        order,
        {
            "client_order_id": client_order_id,
            "venue_client_order_id": order.venue_client_order_id,
            "exchange": order.exchange,
            "instrument": order.instrument,
            "side": order.side,
            "outcome": order.outcome,
            "order_type": order.order_type,
            "quantity": str(order.quantity),
            "price": str(order.price) if order.price is not None else None,
        },
    )
    try:
        # Pipelined, the insert and the read commit together (one implicit transaction), and the
        # read is skipped if the insert fails. Inside a transaction (only a test case's: the
        # blocks that follow are durable) a savepoint keeps that transaction usable after a
        # duplicate.
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext(), pipelined():
            row_insert(order, along=[created])
            config = selectors.risk_config_later(
                user_id=order.user_id, venue=order.exchange, instrument_type=order.instrument_type
            )
    except IntegrityError:
        existing = selectors.order_get_by_client_id(user=user, client_order_id=client_order_id)
        if existing is None:
            raise
        return existing, None
    order_announce(order, status_changed_to=None)
    return order, config()


def _order_risk_check(
    *,
    order: Order,
    instrument: Instrument,
    link_id: Any,
    inputs: risk.RiskInputs,
    actor: Any,
    last_try: bool = False,
) -> Order:
    """`order` is the intent as `_order_create` stored it. While it is still pending nothing else
    has changed it, so only its status is locked and read here. A kill switch that became active
    while the inputs were gathered (`KillSwitchesChanged`), or a refusal that rests on an
    account snapshot in doubt (stale, or holds taken off that its venue read may have counted:
    `AccountSnapshotStale`), sends the caller to gather them again, the account read afresh,
    once (`last_try` then). Under the lock, the holds read with the snapshot are completed with those
    of orders submitted since (`risk.account_holds_apply`), and this order's hold is recorded
    before the lock is let go: concurrent orders of one user are checked against the balance one
    after the other, each seeing the others' holds.

    Pipelined: BEGIN, the lock and the activity read go out together, the order's write at the
    end of the block, then COMMIT: three round trips (and the hold's one in Redis)."""
    now = timezone.now()
    reserved = False
    try:
        with atomic_audited(), pipelined():
            held = risk.risk_lock(order=order, inputs=inputs, now=now)
            status, activity = held.status, held.activity
            if status != OrderStatus.PENDING:
                locked = selectors.order_lock(order_id=order.pk)
                assert locked is not None
                return locked  # cancelled while we gathered inputs
            if not last_try and not held.switch_ids <= {switch.pk for switch in inputs.switches}:
                raise risk.KillSwitchesChanged()  # nothing written: rolled back
            risk.account_holds_apply(inputs=inputs, link_id=link_id, submitted=activity.submitted)
            try:
                verdict = risk.risk_check(
                    order=order, instrument=instrument, inputs=inputs, now=now, activity=activity
                )
            except RiskRejection as rejection:
                if inputs.account_in_doubt and rejection.code in risk.ACCOUNT_CODES and not last_try:
                    raise risk.AccountSnapshotStale() from rejection  # nothing written: rolled back
                order.metadata = {**order.metadata, "rejection": rejection.details, "rejected_by": "risk"}
                order_transition(
                    order,
                    status=OrderStatus.REJECTED,
                    source="risk",
                    actor=actor,
                    error_code=rejection.code,
                    error_message=rejection.message,
                    details=rejection.details,
                )
                record(actor, "order.risk_rejected", order, {"code": rejection.code, **rejection.details})
                _save(order)
                order_announce(order, status_changed_to=order.status)
                return order
            order.notional = verdict.notional
            order.metadata = {
                **order.metadata,
                "reference_price": str(inputs.reference_price or ""),
                "price_source": inputs.price_source,
            }
            if verdict.price_limit is not None:
                order.metadata["price_limit"] = str(verdict.price_limit)
            reserved = risk.account_snapshot_reserve(link_id=link_id, order=order, instrument=instrument)
            _order_move(order, status=OrderStatus.SUBMITTED, source="risk", actor=actor)
    except BaseException:
        if reserved:  # the order was not stored as checked: it will not go out
            risk.account_hold_drop(link_id=link_id, order=order)
        raise
    return order


def _venue_request(order: Order) -> OrderRequest:
    """The order as its venue's adapter takes it. A market order with a protection price (event
    contracts, `risk.event_market_price_limit`) carries it as its price."""
    price = order.price
    if price is None and order.metadata.get("price_limit"):
        price = Decimal(order.metadata["price_limit"])
    return OrderRequest(
        instrument=order.instrument,
        side=VenueSide(order.side),
        order_type=VenueOrderType(order.order_type),
        quantity=order.quantity,
        client_order_id=order.venue_client_order_id,
        price=price,
        time_in_force=VenueTimeInForce(order.time_in_force),
        post_only=order.post_only,
        outcome=VenueOutcome(order.outcome) if order.outcome else None,
    )


def order_submit(*, order: Order, credentials: Any, actor: Any = None) -> Order:
    """Send a `submitted` order to its venue (no transaction open) and record the answer.
    Never resends: an answer that does not settle the outcome leaves the order `unknown`."""
    request = _venue_request(order)
    calls = CallRecorder()  # the venue request is audited with the answer it brought

    async def send(adapter: ExchangeAdapter) -> OrderState:
        return await adapter.place_order(request)

    try:
        state = venue_call(
            order.exchange,
            send,
            credentials=credentials,
            timeout=settings.K2_TRADING_SUBMIT_TIMEOUT_SECONDS,
            recorder=calls,
        )
    except UNKNOWN_OUTCOME_ERRORS as error:
        reason = f"{error.code}: {error.message}"
        return _order_mark_unknown(order_id=order.pk, reason=reason, actor=actor, calls=calls)
    except ex.ExchangeError as error:
        return _order_venue_rejected(order_id=order.pk, error=error, actor=actor, calls=calls)
    except Exception as error:  # a bug after sending must not make the order look failed
        log.exception("order_submit_unexpected", order_id=str(order.pk))
        return _order_mark_unknown(order_id=order.pk, reason=type(error).__name__, actor=actor, calls=calls)
    applied = order_apply_venue_state(
        order_id=order.pk, state=state, source="submit", actor=actor, calls=calls, written=order
    )
    assert applied is not None
    if applied.status == OrderStatus.OPEN and (
        order.order_type == "market" or order.time_in_force in ("ioc", "fok")
    ):
        # Marketable orders usually fill at once; one read shows the user the fill in the answer.
        applied = _order_refresh(order=applied, credentials=credentials, actor=actor) or applied
    if _cancel_outstanding(applied):
        applied = _cancel_as_requested(order=applied, credentials=credentials, actor=actor)
    return applied


def _cancel_outstanding(order: Order) -> bool:
    """The user asked to cancel and the order is live at the venue: typically the cancel came
    while the order was being sent, found nothing to cancel yet, and was answered 202."""
    return order.cancel_requested_at is not None and order.status in (OrderStatus.OPEN, OrderStatus.PARTIAL)


def _cancel_as_requested(*, order: Order, credentials: Any, actor: Any) -> Order:
    """Carry out a cancel the user asked for earlier (`_cancel_outstanding`)."""
    log.info("order_cancel_carried_out", order_id=str(order.pk), status=order.status)
    outcome = _venue_cancel(orders=[order], credentials=credentials, actor=actor)[order.pk]
    return outcome if isinstance(outcome, Order) else order


def venue_ref(order: Order) -> dict[str, str | None]:
    """How to name the order to its venue: the venue's own id once known (a direct lookup;
    Kalshi finds a client id only by listing orders), else K2's client order id."""
    if order.exchange_order_id:
        return {"venue_order_id": order.exchange_order_id, "client_order_id": None}
    return {"venue_order_id": None, "client_order_id": order.venue_client_order_id}


def _order_refresh(*, order: Order, credentials: Any, actor: Any) -> Order | None:
    async def get(adapter: ExchangeAdapter) -> OrderState:
        return await adapter.get_order(**venue_ref(order))

    try:
        state = venue_call(
            order.exchange, get, credentials=credentials, timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS,
            actor=actor, target=order,
        )  # fmt: skip
    except ex.ExchangeError:
        return None  # the user stream or reconciliation will tell
    applied = order_apply_venue_state(order_id=order.pk, state=state, source="submit", actor=actor)
    if state.filled_quantity > 0:
        _reconcile_soon(order)  # the user stream normally records the fills: never missing
    return applied


def _reconcile_soon(order: Order) -> None:
    """Once the transaction commits (at once outside one), queue a reconciliation of `order`."""
    from apps.trading.tasks import order_reconcile_task

    pk, countdown = str(order.pk), settings.K2_TRADING_UNKNOWN_FIRST_CHECK_SECONDS
    transaction.on_commit(lambda: order_reconcile_task.apply_async((pk,), countdown=countdown), robust=True)


def _order_mark_unknown(
    *, order_id: Any, reason: str, actor: Any, calls: CallRecorder | None = None
) -> Order:
    with atomic_audited():
        order = _order_lock_audited(order_id=order_id, calls=calls, actor=actor)
        assert order is not None
        _order_move(
            order,
            status=OrderStatus.UNKNOWN,
            source="submit",
            actor=actor,
            note={"unknown_reason": reason},
            details={"reason": reason},
        )
        _reconcile_soon(order)
    return order


def _order_venue_rejected(
    *, order_id: Any, error: ex.ExchangeError, actor: Any, calls: CallRecorder | None = None
) -> Order:
    with atomic_audited():
        order = _order_lock_audited(order_id=order_id, calls=calls, actor=actor)
        assert order is not None
        details = {"venue": order.exchange, "venue_code": error.venue_code}
        _order_move(
            order,
            status=OrderStatus.REJECTED,
            source="submit",
            actor=actor,
            note={"rejection": {"venue": order.exchange}, "rejected_by": "venue"},
            error_code=error.code,
            error_message=error.message,
            details=details,
        )
    return order


# ---- cancelling -----------------------------------------------------------------------------------


def order_cancel(*, order_id: Any, user: Any = None, actor: Any = None) -> Order:
    """Cancel one order. Pending: cancelled here. Live: cancelled at the venue, then the venue's
    answer is recorded (it may show the order filled first). `user` scopes the lookup (API);
    admin and tasks pass None. Raises `OrderNotCancellable` for a finished order."""
    with atomic_audited():
        qs = Order.objects.select_for_update()
        order = (qs.filter(user=user) if user is not None else qs).filter(pk=order_id).first()
        if order is None:
            raise OrderNotFound()
        if order.status in TERMINAL_STATUSES:
            raise OrderNotCancellable(details={"order_id": str(order.pk), "status": order.status})
        if order.status == OrderStatus.PENDING:
            _order_move(order, status=OrderStatus.CANCELLED, source="cancel", actor=actor or user)
            return order
        order.cancel_requested_at = timezone.now()
        record(actor or user, "order.cancel_requested", order, {"status": order.status})
        _save(order)
    link = exchange_link_active(user=order.user, venue=order.exchange)
    if link is None:
        raise ExchangeNotLinked(details={"exchange": order.exchange, "order_id": str(order.pk)})
    results = _venue_cancel(orders=[order], credentials=link_credentials(link), actor=actor or user)
    outcome = results[order.pk]
    if isinstance(outcome, ApplicationError):
        raise outcome
    return outcome


def _venue_cancel(
    *, orders: list[Order], credentials: Any, actor: Any
) -> dict[Any, Order | ApplicationError]:
    """Cancel `orders` (one venue) concurrently, then read each back and record its state."""
    venue = orders[0].exchange

    async def cancel_and_read(adapter: ExchangeAdapter) -> list[tuple[Any, Any]]:
        async def one(order: Order) -> tuple[Any, Any]:
            try:
                await adapter.cancel_order(**venue_ref(order))
            except (ex.OrderNotOpen, ex.OrderNotFound):
                pass  # already finished (or never arrived): the read below tells which
            except ex.ExchangeError as error:
                return order.pk, error
            try:
                return order.pk, await adapter.get_order(**venue_ref(order))
            except ex.ExchangeError as error:
                return order.pk, error

        return list(await asyncio.gather(*(one(o) for o in orders)))

    out: dict[Any, Order | ApplicationError] = {}
    try:
        answers = venue_call(
            venue, cancel_and_read, credentials=credentials,
            timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS, actor=actor,
        )  # fmt: skip
    except ex.ExchangeError as call_error:
        answers = [(o.pk, call_error) for o in orders]
    by_id = {o.pk: o for o in orders}
    for order_id, answer in answers:
        if isinstance(answer, OrderState):
            applied = order_apply_venue_state(order_id=order_id, state=answer, source="cancel", actor=actor)
            out[order_id] = applied or by_id[order_id]
        elif isinstance(answer, ex.OrderNotFound):
            out[order_id] = by_id[order_id]  # not at the venue (yet): reconciliation settles it
        else:
            failure = answer if isinstance(answer, ex.ExchangeError) else ex.ExchangeError(str(answer))
            unavailable = isinstance(failure, ex.RetryableError | ex.OrderOutcomeUnknown)
            code = "EXCHANGE_UNAVAILABLE" if unavailable else failure.code
            out[order_id] = ApplicationError(
                "The venue did not confirm the cancel; the order will be reconciled.",
                code=code,
                status_code=503 if code == "EXCHANGE_UNAVAILABLE" else 502,
                details={"order_id": str(order_id), "venue": venue},
            )
    return out


def orders_cancel_all(
    *, user: Any, instrument: str | None = None, exchange: str | None = None, actor: Any = None
) -> dict[str, Any]:
    """Cancel the user's live orders (optionally one instrument or venue). Only K2's own orders
    are touched, one by one, never the venue's cancel-all (it would hit orders placed elsewhere)."""
    ids = selectors.order_ids_open_for_user(
        user=user, instrument=instrument.strip().upper() if instrument else None, exchange=exchange
    )
    record(
        actor or user,
        "order.cancel_all_requested",
        None,
        {"instrument": instrument, "exchange": exchange, "count": len(ids)},
    )
    cancelled: list[str] = []
    filled: list[str] = []
    pending: list[str] = []
    failed: list[dict[str, Any]] = []
    live: dict[str, list[Order]] = {}
    for order_id in ids:
        try:
            with atomic_audited():
                order = selectors.order_lock(order_id=order_id)
                if order is None or order.status in TERMINAL_STATUSES:
                    continue
                if order.status == OrderStatus.PENDING:
                    _order_move(order, status=OrderStatus.CANCELLED, source="cancel_all", actor=actor or user)
                    cancelled.append(str(order.pk))
                    continue
                order.cancel_requested_at = timezone.now()
                _save(order)
                live.setdefault(order.exchange, []).append(order)
        except ApplicationError as error:
            failed.append({"order_id": str(order_id), "code": error.code})
    for venue, orders in live.items():
        link = exchange_link_active(user=user, venue=venue)
        if link is None:
            failed.extend({"order_id": str(o.pk), "code": ExchangeNotLinked.code} for o in orders)
            continue
        results = _venue_cancel(orders=orders, credentials=link_credentials(link), actor=actor or user)
        for order_id, outcome in results.items():
            if isinstance(outcome, ApplicationError):
                failed.append({"order_id": str(order_id), "code": outcome.code})
            elif outcome.status == OrderStatus.CANCELLED:
                cancelled.append(str(order_id))
            elif outcome.status == OrderStatus.FILLED:
                filled.append(str(order_id))  # filled before the cancel reached it
            elif outcome.status in TERMINAL_STATUSES:
                code = outcome.error_code or OrderNotCancellable.code
                failed.append({"order_id": str(order_id), "code": code})
            else:
                pending.append(str(order_id))
    return {
        "requested": len(ids),
        "cancelled": cancelled,
        "filled": filled,
        "pending": pending,
        "failed": failed,
    }


# ---- reconciliation -------------------------------------------------------------------------------


def order_reconcile(*, order_id: Any, actor: Any = None) -> Order | None:
    """Bring one order in line with its venue, by K2's client order id. Idempotent: run it any
    number of times, concurrently or after a crash, and the order ends in the venue's state.

    - `pending` past the grace period: its placing request died before sending, so it is
      rejected (`SUBMISSION_ABANDONED`) without asking the venue;
    - not found at the venue while `submitted`/`unknown`, past the grace period: rejected
      (`NOT_FOUND_AT_VENUE`; overturned if the venue ever shows it); while `open`/`partial`
      (acknowledged, so possibly filled): left as it is, with a warning;
    - no active link (unlinked, or its key refused): left as it is, without asking the venue;
    - otherwise the venue's state and any unrecorded fills are applied, and a cancel the user
      asked for that the venue has not carried out (`_cancel_outstanding`) is sent again.

    Every attempt sets `reconciled_at`, which orders the beat's queue (`order_ids_to_reconcile`).
    """
    order = Order.objects.filter(pk=order_id).select_related("user").first()
    if order is None:
        return None
    grace = timedelta(seconds=settings.K2_TRADING_RECONCILE_GRACE_SECONDS)
    now = timezone.now()
    if order.status == OrderStatus.PENDING:
        if now - order.created_at >= grace:
            return _order_settle_missing(
                order_id=order.pk, expect=OrderStatus.PENDING, code=SUBMISSION_ABANDONED, actor=actor
            )
        return order
    if order.status in TERMINAL_STATUSES and order.error_code != NOT_FOUND_AT_VENUE:
        recorded = selectors.execution_totals(order_id=order.pk).quantity
        if recorded >= order.filled_quantity:
            return order  # finished and fully accounted for
    link = exchange_link_active(user=order.user, venue=order.exchange)
    if link is None or not link.access_token:
        log.warning("reconcile_no_credentials", order_id=str(order.pk), venue=order.exchange)
        _touch(order.pk)  # to the back of the queue, until the user links the venue again
        return order
    credentials = link_credentials(link)

    async def get(adapter: ExchangeAdapter) -> OrderState:
        return await adapter.get_order(**venue_ref(order))

    try:
        state = venue_call(
            order.exchange, get, credentials=credentials, timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS,
            actor=actor, target=order,
        )  # fmt: skip
    except ex.OrderNotFound:
        since = order.submitted_at or order.created_at
        if order.status in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN) and now - since >= grace:
            return _order_settle_missing(
                order_id=order.pk, expect=order.status, code=NOT_FOUND_AT_VENUE, actor=actor
            )
        if order.status in (OrderStatus.OPEN, OrderStatus.PARTIAL):
            # The venue acknowledged it once: it cannot be assumed gone (it may have filled), and
            # the linked account is probably not the one that holds it. Left open, for ops.
            log.warning(
                "reconcile_acknowledged_order_not_found", order_id=str(order.pk), venue=order.exchange
            )
        _touch(order.pk)
        return order
    except ex.ExchangeError as error:
        log.warning("reconcile_failed", order_id=str(order.pk), code=error.code)
        _touch(order.pk)  # tried: the next beat takes the orders waiting longest first
        return order
    applied = order_apply_venue_state(order_id=order.pk, state=state, source="reconcile", actor=actor)
    if applied is not None:
        recorded = selectors.execution_totals(order_id=applied.pk).quantity
        if state.filled_quantity > recorded:
            _fetch_fills(
                order=applied,
                credentials=credentials,
                venue_order_id=state.venue_order_id,
                filled=state.filled_quantity,
                actor=actor,
            )
            applied.refresh_from_db()
        if _cancel_outstanding(applied):
            applied = _cancel_as_requested(order=applied, credentials=credentials, actor=actor)
    return applied


def _touch(order_id: Any) -> None:
    Order.objects.filter(pk=order_id).update(reconciled_at=timezone.now())


def _order_settle_missing(*, order_id: Any, expect: str, code: str, actor: Any) -> Order | None:
    messages = {
        SUBMISSION_ABANDONED: "The order was never sent: its request stopped before reaching the venue.",
        NOT_FOUND_AT_VENUE: "The venue has no such order: the submission did not reach it.",
    }
    with atomic_audited():
        order = selectors.order_lock(order_id=order_id)
        if order is None or order.status != expect:
            return order
        order.reconciled_at = timezone.now()
        _order_move(
            order,
            status=OrderStatus.REJECTED,
            source="reconcile",
            actor=actor,
            note={"rejection": {}, "rejected_by": "reconcile"},
            error_code=code,
            error_message=messages[code],
        )
    return order


FILL_PAGE = 100  # fills per venue read (Crypto.com's most)
FILL_PAGES = 10  # venue reads at most, per reconciliation of one order


def _fetch_fills(*, order: Order, credentials: Any, venue_order_id: str, filled: Decimal, actor: Any) -> int:
    """Record the order's fills that K2 has not: the account's fills on the instrument since the
    order was made, newest first, a page at a time (each page ends where the last began) until
    the order's fills add up to `filled` (what the venue says it filled), a page comes back
    short, or `FILL_PAGES` reads: an account trading the instrument since does not hide them."""
    start = order.created_at - timedelta(minutes=1)

    def ours(fill: Fill) -> bool:
        return fill.venue_order_id == venue_order_id or fill.client_order_id == order.venue_client_order_id

    found: dict[str, Fill] = {}
    end: datetime | None = None
    for _ in range(FILL_PAGES):

        async def get(adapter: ExchangeAdapter, end: datetime | None = end) -> list[Fill]:
            return await adapter.get_fills(order.instrument, start=start, end=end, limit=FILL_PAGE)

        try:
            page = venue_call(
                order.exchange, get, credentials=credentials,
                timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS, actor=actor, target=order,
            )  # fmt: skip
        except ex.ExchangeError as error:
            log.warning("reconcile_fills_failed", order_id=str(order.pk), code=error.code)
            break
        new = [fill for fill in page if fill.venue_trade_id not in found]
        found.update((fill.venue_trade_id, fill) for fill in new)
        if len(page) < FILL_PAGE or not new or sum(f.quantity for f in found.values() if ours(f)) >= filled:
            break
        end = min(fill.time for fill in page) + timedelta(milliseconds=1)  # its last instant again
    recorded = 0
    for fill in found.values():
        if ours(fill):
            recorded += execution_record(venue=order.exchange, fill=fill, source="reconcile")
    return recorded


def orders_reconcile_for_link(*, user_id: Any, venue: str) -> int:
    """Queue a reconciliation of every live order of one link (after its user stream
    (re)connects: what it missed while down). Queued, not run here: the stream process handles
    every link's messages, and one link's venue reads (each up to the venue timeout, while
    that venue is failing) would hold up every other user's."""
    from apps.trading.tasks import order_reconcile_task

    ids = selectors.order_ids_live_for_link(user_id=user_id, venue=venue)
    for order_id in ids:
        order_reconcile_task.delay(str(order_id))
    return len(ids)


def orders_reconcile_ids(*, limit: int | None = None) -> list[Any]:
    return selectors.order_ids_to_reconcile(limit=limit or settings.K2_TRADING_RECONCILE_BATCH)
