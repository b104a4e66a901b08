"""Crypto.com Exchange v1 REST client: signing (spec section 2), envelopes, rate limits, retries.

- Private calls are POST with `{id, method, params, api_key, sig, nonce}`; `id` is a JSON integer,
  every number inside `params` a string (booleans lowercase), `params` always an object.
- Only safe requests are retried (reads, cancels), with exponential backoff and jitter. An
  order submission that may have reached the venue without a definite answer (timeout, reset,
  5xx, a proxy's 408, the venue's own timeout or internal error) raises `OrderOutcomeUnknown`
  and is never resent. A definite 42901 answer (nothing was executed) is backed off and retried
  for every request.
- Every request reports `(venue, method, latency_ms, outcome, error_code)` to `on_call`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import CallOutcome, Credentials, OnCall
from apps.exchanges.adapters.cryptocom import translate
from apps.exchanges.adapters.ratelimit import RateLimiter, RateRule
from apps.exchanges.adapters.transport import transport_error, venue_http_client

VENUE = "cryptocom"
MAX_LEVEL = 3

# Spec section 6: per API key, per method group; public per IP and method. K2 keeps 20 % headroom
# below the venue's limits so network jitter (requests bunching up in flight) never earns a 429.
HEADROOM = 0.8


def _rule(count: int, seconds: float) -> RateRule:
    return RateRule(capacity=max(1, int(count * HEADROOM)), per_second=count / seconds * HEADROOM)


PRIVATE_RULES: dict[str, RateRule] = {
    "private/create-order": _rule(15, 0.1),
    "private/cancel-order": _rule(15, 0.1),
    "private/cancel-all-orders": _rule(15, 0.1),
    "private/get-order-detail": _rule(30, 0.1),
    "private/get-trades": _rule(1, 1.0),
    "private/get-order-history": _rule(1, 1.0),
    "private/other": _rule(3, 0.1),
}
PUBLIC_RULE = _rule(100, 1.0)


def rate_group(method: str) -> str:
    if method.startswith("public/"):
        return method
    return method if method in PRIVATE_RULES else "private/other"


# ---- signing --------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_string(value: Any, level: int = 0) -> str:
    """flatten(params) from spec section 2: keys in byte order, lists in order, depth cap 3."""
    if level >= MAX_LEVEL:
        return _text(value)
    if isinstance(value, Mapping):
        parts: list[str] = []
        for key in sorted(value, key=lambda k: str(k).encode()):
            item = value[key]
            parts.append(str(key))
            parts.append(param_string(item, level + 1) if isinstance(item, Mapping | list) else _text(item))
        return "".join(parts)
    if isinstance(value, list):
        return "".join(
            param_string(v, level + 1) if isinstance(v, Mapping | list) else _text(v) for v in value
        )
    return _text(value)


def sign(
    *, secret: str, method: str, req_id: int, api_key: str, params: Mapping[str, Any], nonce: int
) -> str:
    """HMAC-SHA256 hex over method + id + api_key + param_string + nonce."""
    payload = f"{method}{req_id}{api_key}{param_string(params) if params else ''}{nonce}"
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


# ---- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RestSettings:
    """Timeouts and retry/limit bounds; the defaults suit production, tests shrink them."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_attempts: int = 4
    backoff_base: float = 0.1
    backoff_cap: float = 4.0
    rate_limit_max_wait: float = 2.0
    rate_limits: bool = True  # off only for benchmarks against a simulator
    max_connections: int = 20


class _RetryAfterRateLimit(ex.RateLimited):
    """Internal: a definite 42901 answer; safe to retry any request after backing off."""


class CryptocomRestClient:
    """Signed, rate-limited, retried JSON calls to `{base_url}/{method}`."""

    def __init__(
        self,
        *,
        base_url: str,
        credentials: Credentials | None,
        settings: RestSettings,
        redis: Any = None,
        on_call: OnCall | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.settings = settings
        self.on_call = on_call
        self._ids = itertools.count(int(time.time() * 1000) % 10**9)
        self.http = http or venue_http_client(settings)
        self._owns_http = http is None
        credential = credentials.api_key if credentials else "anonymous"
        self.private_limiter = RateLimiter(
            venue=VENUE,
            credential=credential,
            rules=PRIVATE_RULES if settings.rate_limits else {},
            redis=redis,
            max_wait=settings.rate_limit_max_wait,
        )
        self.public_limiter = RateLimiter(
            venue=VENUE,
            credential="public-ip",
            rules={},
            redis=redis,
            max_wait=settings.rate_limit_max_wait,
        )

    async def close(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    # public --------------------------------------------------------------------------------
    async def public(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        query = {
            k: translate.wire(v) if not isinstance(v, str | int) else v for k, v in (params or {}).items()
        }
        return await self._with_retries(method, lambda: self._public_once(method, query), safe=True)

    async def _public_once(self, method: str, query: Mapping[str, Any]) -> dict[str, Any]:
        if self.settings.rate_limits:
            self.public_limiter.rules.setdefault(method, PUBLIC_RULE)
        await self.public_limiter.acquire(method)
        return await self._send(method, "GET", params=query, safe=True)

    # private -------------------------------------------------------------------------------
    async def private(
        self, method: str, params: Mapping[str, Any] | None = None, *, safe: bool
    ) -> dict[str, Any]:
        """Call a private method. `safe=False` (order submission) is never resent on doubt."""
        if self.credentials is None:
            raise ex.AuthFailed("this adapter has no credentials", venue=VENUE)
        body_params = dict(params or {})
        return await self._with_retries(
            method, lambda: self._private_once(method, body_params, safe), safe=safe
        )

    async def _private_once(self, method: str, params: dict[str, Any], safe: bool) -> dict[str, Any]:
        assert self.credentials is not None
        await self.private_limiter.acquire(rate_group(method))
        req_id, nonce = next(self._ids), int(time.time() * 1000)
        body = {
            "id": req_id,
            "method": method,
            "params": params,
            "api_key": self.credentials.api_key,
            "sig": sign(
                secret=self.credentials.api_secret,
                method=method,
                req_id=req_id,
                api_key=self.credentials.api_key,
                params=params,
                nonce=nonce,
            ),
            "nonce": nonce,
        }
        return await self._send(method, "POST", content=json.dumps(body, separators=(",", ":")), safe=safe)

    # transport -----------------------------------------------------------------------------
    async def _with_retries(self, method: str, once: Any, *, safe: bool) -> dict[str, Any]:
        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, _RetryAfterRateLimit | ex.InvalidNonce):
                return True
            return safe and isinstance(exc, ex.RetryableError)

        retrying = AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=wait_random_exponential(
                multiplier=self.settings.backoff_base, max=self.settings.backoff_cap
            ),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    result: dict[str, Any] = await once()
                    return result
        except _RetryAfterRateLimit as exc:
            raise ex.RateLimited(
                exc.message, venue=VENUE, venue_code=exc.venue_code, http_status=429
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, method: str, verb: str, *, safe: bool, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base_url}/{method}"
        started = time.perf_counter()
        outcome: CallOutcome = "error"
        code: str | None = None
        try:
            response = await self.http.request(
                verb, url, headers={"Content-Type": "application/json"}, **kwargs
            )
            result = self._parse(method, response, safe=safe)
            outcome = "ok"
            return result
        except ex.OrderOutcomeUnknown as exc:
            outcome, code = "unknown", exc.code
            raise
        except ex.ExchangeError as exc:
            code = exc.venue_code or exc.code
            if isinstance(exc, ex.RateLimited):
                await self.private_limiter.penalize(rate_group(method), self.settings.backoff_base * 2)
            raise
        except httpx.TransportError as exc:
            error, code = transport_error(exc, venue=VENUE, call=method, safe=safe)
            if isinstance(error, ex.OrderOutcomeUnknown):
                outcome = "unknown"
            raise error from exc
        finally:
            if self.on_call is not None:
                self.on_call(VENUE, method, (time.perf_counter() - started) * 1000, outcome, code)

    def _parse(self, method: str, response: httpx.Response, *, safe: bool) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "code" not in body:
            # Not the venue's answer but a proxy's or gateway's: a 5xx or a 408 (its wait ran out)
            # may come after it passed the request on, so an order may be live.
            if (response.status_code >= 500 or response.status_code == 408) and not safe:
                raise ex.OrderOutcomeUnknown(
                    f"HTTP {response.status_code} to {method}", venue=VENUE, http_status=response.status_code
                )
            if response.status_code == 429:
                raise _RetryAfterRateLimit("HTTP 429", venue=VENUE, http_status=429)
            raise (ex.ExchangeUnavailable if response.status_code >= 500 else ex.UnexpectedResponse)(
                f"HTTP {response.status_code} without a venue envelope",
                venue=VENUE,
                http_status=response.status_code,
            )
        code = int(body.get("code") or 0)
        if code == 0:
            result = body.get("result")
            return result if isinstance(result, dict) else {}
        error = translate.error_for(
            code, str(body.get("message", "")), http_status=response.status_code, result=body.get("result")
        )
        if isinstance(error, ex.RateLimited):
            raise _RetryAfterRateLimit(error.message, venue=VENUE, venue_code=str(code), http_status=429)
        if not safe and isinstance(error, ex.ExchangeUnavailable):
            # The venue's timeout and internal errors (40801 with HTTP 408, 50001 with 400, 10001 with
            # any status) do not say the request was not carried out: an order may be live.
            raise ex.OrderOutcomeUnknown(f"{method}: {error.message}", venue=VENUE, venue_code=str(code))
        raise error
