"""What an HTTP transport failure means for a venue request, the same for every venue."""

from __future__ import annotations

import httpx

from apps.exchanges.adapters import errors as ex

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def transport_error(
    exc: httpx.TransportError, *, venue: str, call: str, safe: bool
) -> tuple[ex.ExchangeError, str]:
    """Nothing reached the venue (connect failures): a definite "not done", `ExchangeUnavailable`.
    Sent but unanswered (timeout, reset, protocol error): `OrderOutcomeUnknown` for a request that
    is not safe to repeat, else `ExchangeTimeout`. Returns the error and a short code for the audit."""
    if isinstance(exc, _NOT_SENT):
        return ex.ExchangeUnavailable(f"cannot reach the venue: {type(exc).__name__}", venue=venue), "CONNECT"
    code = type(exc).__name__
    if not safe:
        return ex.OrderOutcomeUnknown(f"no answer to {call}: {code}", venue=venue), code
    return ex.ExchangeTimeout(f"no answer to {call}: {code}", venue=venue), code
