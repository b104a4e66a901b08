"""Trading errors: stable upper-snake codes with their HTTP statuses.

Input that does not fit the instrument is refused before anything is stored. An order the risk
engine or the venue refuses *is* stored (as `rejected`, with `error_code`) and the API answers
`OrderRejected` with that code and the order's id in `details`.
"""

from __future__ import annotations

from typing import Any

from rest_framework import status

from k2.api.exceptions import ApplicationError, ConflictError, NotFoundError


class OrderNotFound(NotFoundError):
    code = "ORDER_NOT_FOUND"
    default_message = "No such order."


class OrderNotCancellable(ConflictError):
    code = "ORDER_NOT_CANCELLABLE"
    default_message = "The order is already finished."


class IdempotencyKeyReused(ConflictError):
    code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "This client_order_id was already used for a different order."


class IdempotencyKeyMismatch(ApplicationError):
    code = "IDEMPOTENCY_KEY_MISMATCH"
    default_message = "The Idempotency-Key header and client_order_id differ."


class InvalidOrderInput(ApplicationError):
    """The order does not fit its instrument (tick, step, minimum, outcome, type...)."""

    code = "INVALID_ORDER"
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_message = "The order does not fit the instrument."


class InstrumentUnknown(ApplicationError):
    code = "INSTRUMENT_NOT_FOUND"
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_message = "Unknown instrument."


class ExchangeNotLinked(ApplicationError):
    code = "EXCHANGE_NOT_LINKED"
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_message = "Link your account at this venue before trading there."


# Risk-engine codes (one per check). Rejections by these never reach a venue.
RISK_CODES: dict[str, str] = {
    "TRADING_HALTED": "Trading is halted.",
    "REDUCE_ONLY": "Only orders that reduce a position are accepted now.",
    "RISK_MAX_NOTIONAL": "The order is larger than the maximum order size.",
    "RISK_DAILY_NOTIONAL": "The order would exceed your daily trading limit.",
    "RISK_VELOCITY": "Too many orders in a short time.",
    "RISK_FAT_FINGER_PRICE": "The price is too far from the market.",
    "RISK_FAT_FINGER_QUANTITY": "The quantity is far beyond your usual order size.",
    "RISK_MAX_POSITION": "The order would exceed the maximum position.",
    "INSUFFICIENT_POSITION": (
        "Your sells would exceed the contracts you hold; to take the other side, buy the other outcome."
    ),
    "INSUFFICIENT_BALANCE": "Insufficient balance at the venue.",
    "PRICE_UNAVAILABLE": "No recent price is known for this instrument; try a limit order later.",
}

_STATUS: dict[str, int] = {
    "TRADING_HALTED": status.HTTP_403_FORBIDDEN,
    "REDUCE_ONLY": status.HTTP_403_FORBIDDEN,
    "RISK_VELOCITY": status.HTTP_429_TOO_MANY_REQUESTS,
    "PRICE_UNAVAILABLE": status.HTTP_503_SERVICE_UNAVAILABLE,
    "EXCHANGE_UNAVAILABLE": status.HTTP_503_SERVICE_UNAVAILABLE,
    "EXCHANGE_MAINTENANCE": status.HTTP_503_SERVICE_UNAVAILABLE,
    "RATE_LIMITED": status.HTTP_503_SERVICE_UNAVAILABLE,
    "EXCHANGE_AUTH_FAILED": status.HTTP_502_BAD_GATEWAY,
    "EXCHANGE_PERMISSION_DENIED": status.HTTP_502_BAD_GATEWAY,
}


def http_status_for(code: str) -> int:
    return _STATUS.get(code, status.HTTP_422_UNPROCESSABLE_ENTITY)


class RiskRejection(Exception):
    """Raised inside the risk engine; becomes a stored rejection and an `OrderRejected`."""

    def __init__(self, code: str, details: dict[str, Any] | None = None, message: str | None = None) -> None:
        self.code = code
        self.details = details or {}
        self.message = message or RISK_CODES.get(code, code)
        super().__init__(self.message)


class OrderRejected(ApplicationError):
    """The order was stored and refused (by the risk engine or the venue)."""

    def __init__(self, *, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message, details=details, code=code, status_code=http_status_for(code))
