"""Kalshi Trade API v2 REST client: RSA-PSS signed headers, read/write token buckets, retries.

- Every request is signed (`timestamp_ms + METHOD + /trade-api/v2/...`, query excluded); public
  market data is signed too when credentials exist (harmless, and some docs say it is needed).
- Rate limits are the venue's token model (spec section 6): separate Read and Write buckets per
  key, 10 tokens per request unless the endpoint costs differ (V2 cancel 2), kept in Redis through
  the shared `RateLimiter`, with 20 % headroom so K2 waits a little rather than earning a 429.
- Only safe requests are retried (reads, cancels by id), with exponential backoff and jitter;
  a definite 429 (nothing executed) is backed off and retried for every request. An order
  submission that may have reached the venue without a definite answer raises
  `OrderOutcomeUnknown` and is never resent (`_may_have_executed` says which answers those are).
- Every request reports `(venue, method, latency_ms, outcome, error_code)` to `on_call`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import CallOutcome, Credentials, OnCall
from apps.exchanges.adapters.kalshi import signing, translate
from apps.exchanges.adapters.ratelimit import RateLimiter, RateRule
from apps.exchanges.adapters.transport import transport_error, venue_http_client

VENUE = "kalshi"
Bucket = Literal["read", "write"]
DEFAULT_COST = 10
HEADROOM = 0.8

# Spec section 6: tokens per second (read, write) and how many seconds of budget a bucket holds.
TIERS: dict[str, tuple[int, int, float, float]] = {
    "basic": (200, 100, 2.0, 1.0),
    "advanced": (300, 300, 2.0, 2.0),
    "expert": (600, 600, 1.0, 2.0),
    "premier": (1000, 1000, 1.0, 2.0),
    "paragon": (2000, 2000, 1.0, 2.0),
    "prime": (4000, 4000, 1.0, 2.0),
    "prestige": (10000, 8000, 1.0, 2.0),
}


def tier_rules(tier: str, headroom: float = HEADROOM) -> dict[str, RateRule]:
    read, write, read_s, write_s = TIERS[tier]
    return {
        "read": RateRule(capacity=read * read_s * headroom, per_second=read * headroom),
        "write": RateRule(capacity=write * write_s * headroom, per_second=write * headroom),
    }


@dataclass(frozen=True)
class RestSettings:
    """Timeouts, retry and limit bounds; production defaults, tests shrink them."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    max_attempts: int = 4
    backoff_base: float = 0.1
    backoff_cap: float = 4.0
    rate_limit_max_wait: float = 2.0
    rate_limits: bool = True  # off only for benchmarks against a simulator
    tier: str = "basic"
    max_connections: int = 20
    max_pages: int = 20


class _RetryAfterRateLimit(ex.RateLimited):
    """Internal: a definite 429 (nothing executed); any request may be retried after backing off."""


class KalshiRestClient:
    """Signed, rate-limited, retried JSON calls under `{base_url}` (`.../trade-api/v2`)."""

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
        self.base_path = urlsplit(self.base_url).path  # "/trade-api/v2": part of what is signed
        self.credentials = credentials
        self.settings = settings
        self.on_call = on_call
        self.http = http or venue_http_client(settings)
        self._owns_http = http is None
        if settings.tier not in TIERS:
            raise ValueError(f"unknown Kalshi tier {settings.tier!r}")
        self.limiter = RateLimiter(
            venue=VENUE,
            credential=credentials.api_key if credentials else "anonymous",
            rules=tier_rules(settings.tier) if settings.rate_limits else {},
            redis=redis,
            max_wait=settings.rate_limit_max_wait,
        )

    async def close(self) -> None:
        if self._owns_http:
            await self.http.aclose()

    def headers(self, method: str, path: str) -> dict[str, str]:
        if self.credentials is None:
            return {}
        return signing.auth_headers(
            self.credentials.api_key, self.credentials.api_secret, method, self.base_path + path
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        bucket: Bucket = "read",
        cost: float = DEFAULT_COST,
        safe: bool = True,
        auth: bool = True,
    ) -> dict[str, Any]:
        """One venue call; `safe=False` (order submission) is never resent on doubt."""
        if auth and self.credentials is None:
            raise ex.AuthFailed("this adapter has no credentials", venue=VENUE)
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        content = json.dumps(body, separators=(",", ":")) if body is not None else None

        async def once() -> dict[str, Any]:
            await self.limiter.acquire(bucket, cost)
            return await self._send(method, path, query, content, bucket=bucket, safe=safe)

        return await self._with_retries(once, safe=safe)

    async def _with_retries(
        self, once: Callable[[], Awaitable[dict[str, Any]]], *, safe: bool
    ) -> dict[str, Any]:
        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, _RetryAfterRateLimit):
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
                    return await once()
        except _RetryAfterRateLimit as exc:
            raise ex.RateLimited(
                exc.message, venue=VENUE, venue_code=exc.venue_code, http_status=429
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any],
        content: str | None,
        *,
        bucket: Bucket,
        safe: bool,
    ) -> dict[str, Any]:
        name = f"{method} {_route(path)}"
        started = time.perf_counter()
        outcome: CallOutcome = "error"
        code: str | None = None
        headers = {"Content-Type": "application/json", **self.headers(method, path)}
        try:
            response = await self.http.request(
                method, self.base_url + path, params=query or None, content=content, headers=headers
            )
            result = self._parse(name, response, safe=safe)
            outcome = "ok"
            return result
        except ex.OrderOutcomeUnknown as exc:
            outcome, code = "unknown", exc.code
            raise
        except ex.ExchangeError as exc:
            code = exc.venue_code or exc.code
            if isinstance(exc, ex.RateLimited):
                await self.limiter.penalize(bucket, self.settings.backoff_base * 2)
            raise
        except httpx.TransportError as exc:
            error, code = transport_error(exc, venue=VENUE, call=name, safe=safe)
            if isinstance(error, ex.OrderOutcomeUnknown):
                outcome = "unknown"
            raise error from exc
        finally:
            if self.on_call is not None:
                self.on_call(VENUE, name, (time.perf_counter() - started) * 1000, outcome, code)

    @staticmethod
    def _parse(name: str, response: httpx.Response, *, safe: bool) -> dict[str, Any]:
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = None
        status = response.status_code
        if 200 <= status < 300:
            if not isinstance(body, dict):
                raise ex.UnexpectedResponse(f"{name}: not a JSON object", venue=VENUE, http_status=status)
            return body
        error = translate.error_for(status, body)
        if isinstance(error, ex.RateLimited):
            raise _RetryAfterRateLimit(
                error.message, venue=VENUE, venue_code=error.venue_code, http_status=429
            )
        if not safe and _may_have_executed(status, error):
            raise ex.OrderOutcomeUnknown(
                f"HTTP {status} to {name}: {error.message}",
                venue=VENUE,
                venue_code=error.venue_code,
                http_status=status,
            )
        raise error


def _may_have_executed(status: int, error: ex.ExchangeError) -> bool:
    """Whether an error answer leaves open that a request which is not safe to repeat (an order
    submission) was carried out all the same, so that it is `OrderOutcomeUnknown`, not a refusal.

    - 5xx (500, 502, 503, 504, ...): yes. The venue failed while handling it, or a proxy or the
      venue's gateway gave up waiting for the venue (502/504) after passing the request on.
    - 408 Request Timeout: yes. A proxy or gateway in front of the venue answers it when its wait
      ran out, which may be after it forwarded the request (the order then rests at the venue).
    - Any other status whose body is the venue's own internal or timeout error (`ExchangeUnavailable`,
      `ExchangeTimeout`): yes, as the Crypto.com client treats its venue's 40801/50001.
    - A body saying the exchange is paused or closed (`ExchangeMaintenance`: `exchange_paused`,
      `exchange_closed`), whatever the status, 503 included: no. That is the venue's own word that
      it takes no orders, not a failure while handling one (the Crypto.com client likewise takes its
      venue's 9010001 SYSTEM_MAINTENANCE as a refusal).
    - 429: no, and never reaches here. The limit is checked before the request is processed (spec
      section 6), so it is backed off and retried like a safe request.
    - 400 (invalid order, price, count; insufficient balance), 401/403 (authentication, scope), 404
      (unknown market), 409 (duplicate client order id, market closed) and other 4xx: no. The venue
      looked at the request and refused it: a definite answer.
    """
    if isinstance(error, ex.ExchangeMaintenance):
        return False
    if status >= 500 or status == 408:
        return True
    return isinstance(error, ex.ExchangeUnavailable | ex.ExchangeTimeout)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return value


def _route(path: str) -> str:
    """`/portfolio/orders/abc-123` -> `/portfolio/orders/{id}`: audit names without ids."""
    parts = path.split("/")
    known = {"orders", "markets", "events", "series", "orderbook", "portfolio", "trades", "fills"}
    out = []
    for i, part in enumerate(parts):
        previous = parts[i - 1] if i else ""
        out.append(
            "{id}"
            if previous in ("orders", "markets", "events", "series") and part not in known and part
            else part
        )
    return "/".join(out)
