"""The order state machine: which status may follow which. Pure data, no Django.

    pending ──> submitted ──> open ──> partial ──> filled
       │            │           │         │
       │            ├──> unknown (outcome of the submission not known; reconciliation settles it)
       │            │
       └──> rejected / cancelled, and every live state ──> cancelled / rejected / filled

A status only moves forward: a late venue message never takes an order back (an `open` that
arrives after `partial` is ignored, though its numbers are still merged). `rejected` because the
venue did not know the order (`NOT_FOUND_AT_VENUE`) is the one terminal state evidence can
overturn: if the venue later shows the order, the order follows the venue (audited as a correction).
"""

from __future__ import annotations

from apps.trading.choices import OrderStatus as S

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.SUBMITTED, S.REJECTED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.OPEN, S.PARTIAL, S.FILLED, S.CANCELLED, S.REJECTED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.OPEN, S.PARTIAL, S.FILLED, S.CANCELLED, S.REJECTED}),
    S.OPEN: frozenset({S.PARTIAL, S.FILLED, S.CANCELLED}),
    S.PARTIAL: frozenset({S.FILLED, S.CANCELLED}),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}

# A rejection that only says "the venue did not show this order when we asked".
NOT_FOUND_AT_VENUE = "NOT_FOUND_AT_VENUE"
CORRECTABLE_FROM_REJECTED = frozenset({S.OPEN, S.PARTIAL, S.FILLED, S.CANCELLED})


def can_transition(current: str, target: str, *, error_code: str = "") -> bool:
    """True when `current -> target` is a legal move (a same-status update is not a move)."""
    if target in TRANSITIONS[current]:
        return True
    return current == S.REJECTED and error_code == NOT_FOUND_AT_VENUE and target in CORRECTABLE_FROM_REJECTED
