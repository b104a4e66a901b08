"""The HTTP client every venue adapter uses, and what a transport failure means for a venue
request, the same for every venue."""

from __future__ import annotations

import functools
import ssl
from typing import Any

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


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process, shared by every venue client. Building one loads
    the CA bundle: 20-40 ms of CPU with the GIL held, which httpx would spend on every client
    (every pooled adapter, every one-off venue call), stalling the whole process meanwhile."""
    return httpx.create_ssl_context()


def venue_http_client(settings: Any) -> httpx.AsyncClient:
    """A keep-alive client for one adapter, sized and timed out by the venue's `RestSettings`."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        limits=httpx.Limits(
            max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
        ),
        headers={"User-Agent": "k2/1"},
        verify=tls_context(),
    )
