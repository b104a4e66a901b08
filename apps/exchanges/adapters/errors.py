"""Normalised exchange errors.

Every venue failure becomes an `ExchangeError` with a stable K2 `code` (the API's upper-snake
codes) and one retry class:

- `RetryableError`: transient, safe to repeat *if the request itself is safe to repeat*;
- `NonRetryableError`: the venue refused this request; repeating gives the same answer;
- `FatalError`: credentials or configuration are wrong; stop using this link until fixed;
- `OrderOutcomeUnknown`: an order command may or may not have been executed. Never resend it;
  reconcile by client order id.

Adapters raise the concrete subclasses below; callers branch on the class or on `code`. The
layer stays free of Django: the API maps `code` to its envelope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class ExchangeError(Exception):
    """Base of all adapter errors. `venue_code` is the venue's own code/text, for logs and audit."""

    code: ClassVar[str] = "EXCHANGE_ERROR"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        venue: str | None = None,
        venue_code: str | None = None,
        http_status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message or self.code
        self.details: Mapping[str, Any] = details or {}
        self.venue = venue
        self.venue_code = venue_code
        self.http_status = http_status
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f"{self.venue} " if self.venue else ""
        vc = f" [{self.venue_code}]" if self.venue_code else ""
        return f"{self.code}: {where}{self.message}{vc}"


# ---- retry classes --------------------------------------------------------------------------


class RetryableError(ExchangeError):
    """Transient: the same safe request may succeed later (with backoff)."""

    retryable = True


class NonRetryableError(ExchangeError):
    """The venue rejected this request for a reason that repeating will not change."""


class FatalError(ExchangeError):
    """Credentials, permissions or configuration are wrong: stop and tell someone."""


class OrderOutcomeUnknown(ExchangeError):
    """An order command was sent and no definite answer came back (timeout, reset, 5xx).

    The order may exist at the venue. Never resend: look it up by `client_order_id`.
    """

    code = "ORDER_OUTCOME_UNKNOWN"

    def __init__(
        self,
        message: str = "",
        *,
        client_order_id: str | None = None,
        venue: str | None = None,
        venue_code: str | None = None,
        http_status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.client_order_id = client_order_id
        super().__init__(
            message, venue=venue, venue_code=venue_code, http_status=http_status, details=details
        )


# ---- concrete errors ------------------------------------------------------------------------


class ExchangeUnavailable(RetryableError):
    code = "EXCHANGE_UNAVAILABLE"


class ExchangeTimeout(RetryableError):
    code = "EXCHANGE_TIMEOUT"


class RateLimited(RetryableError):
    code = "RATE_LIMITED"

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        venue: str | None = None,
        venue_code: str | None = None,
        http_status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            message, venue=venue, venue_code=venue_code, http_status=http_status, details=details
        )


class InvalidNonce(RetryableError):
    """The request's clock was off; a fresh request with a new nonce may pass."""

    code = "EXCHANGE_CLOCK_SKEW"


class AuthFailed(FatalError):
    code = "EXCHANGE_AUTH_FAILED"


class PermissionDenied(FatalError):
    code = "EXCHANGE_PERMISSION_DENIED"


class InsufficientBalance(NonRetryableError):
    code = "INSUFFICIENT_BALANCE"


class InvalidOrder(NonRetryableError):
    code = "INVALID_ORDER"


class OrderWouldTakeLiquidity(InvalidOrder):
    """Post-only order that would have crossed."""

    code = "POST_ONLY_WOULD_TAKE"


class OrderNotFilled(NonRetryableError):
    """IOC/FOK order that could not be (fully) filled and was cancelled."""

    code = "ORDER_NOT_FILLED"


class InstrumentNotFound(NonRetryableError):
    code = "INSTRUMENT_NOT_FOUND"


class MarketClosed(NonRetryableError):
    code = "MARKET_CLOSED"


class DuplicateOrder(NonRetryableError):
    code = "DUPLICATE_ORDER"


class OrderNotFound(NonRetryableError):
    code = "ORDER_NOT_FOUND"


class OrderNotOpen(NonRetryableError):
    """The order exists but is finished, so it cannot be cancelled or amended."""

    code = "ORDER_NOT_OPEN"


class TooManyOpenOrders(NonRetryableError):
    code = "TOO_MANY_OPEN_ORDERS"


class BadRequest(NonRetryableError):
    code = "EXCHANGE_BAD_REQUEST"


class ExchangeMaintenance(RetryableError):
    code = "EXCHANGE_MAINTENANCE"


class UnexpectedResponse(RetryableError):
    """The venue answered with something we could not parse."""

    code = "EXCHANGE_BAD_RESPONSE"


ALL_ERRORS: tuple[type[ExchangeError], ...] = (
    ExchangeUnavailable,
    ExchangeTimeout,
    RateLimited,
    InvalidNonce,
    AuthFailed,
    PermissionDenied,
    InsufficientBalance,
    InvalidOrder,
    OrderWouldTakeLiquidity,
    OrderNotFilled,
    InstrumentNotFound,
    MarketClosed,
    DuplicateOrder,
    OrderNotFound,
    OrderNotOpen,
    TooManyOpenOrders,
    BadRequest,
    ExchangeMaintenance,
    UnexpectedResponse,
    OrderOutcomeUnknown,
)
