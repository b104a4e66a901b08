"""Running adapter calls from Django code, with every venue request audited.

Adapters are async and never import Django; this module opens one with the configured base
URLs, collects its per-request `on_call` reports, and writes them to the audit log from sync
code once the call is done (the ORM is not used inside the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.conf import settings

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import CallOutcome, Credentials, ExchangeAdapter
from apps.exchanges.exceptions import ExchangeAuthFailed, ExchangeRequestFailed, ExchangeUnavailable
from apps.exchanges.venues import venue_spec
from k2.audit.services import record

T = TypeVar("T")


@dataclass
class CallRecorder:
    """An adapter `on_call` hook that remembers calls until `flush` writes them to the audit log."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(
        self, venue: str, method: str, latency_ms: float, outcome: CallOutcome, error_code: str | None
    ) -> None:
        self.calls.append(
            {
                "venue": venue,
                "method": method,
                "latency_ms": round(latency_ms, 2),
                "outcome": outcome,
                "error_code": error_code,
            }
        )

    def flush(self, actor: Any, target: Any = None) -> None:
        pending, self.calls = self.calls, []
        for call in pending:
            record(actor, "exchange.call", target, call)


@asynccontextmanager
async def open_adapter(
    venue: str, *, credentials: Credentials | None = None, recorder: CallRecorder | None = None
) -> AsyncIterator[ExchangeAdapter]:
    """An adapter at the configured URLs sharing a Redis rate limiter; closed on exit."""
    import redis.asyncio as aioredis
    from django.utils.module_loading import import_string

    spec = venue_spec(venue)
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    factory = import_string(spec.adapter_path)
    adapter: ExchangeAdapter = factory(
        credentials=credentials, on_call=recorder, redis=redis, **spec.adapter_kwargs()
    )
    try:
        yield adapter
    finally:
        await adapter.close()
        await redis.aclose()


def translate_error(error: ex.ExchangeError) -> Exception:
    """Adapter errors -> API errors (stable codes, no venue internals)."""
    details = {"venue": error.venue, "code": error.code}
    if isinstance(error, ex.FatalError):
        return ExchangeAuthFailed(details=details)
    if isinstance(error, ex.RetryableError | ex.OrderOutcomeUnknown):
        return ExchangeUnavailable(details=details)
    return ExchangeRequestFailed(error.message, details=details, code=error.code)


def run_venue_call(
    venue: str,
    call: Callable[[ExchangeAdapter], Awaitable[T]],
    *,
    credentials: Credentials | None = None,
    actor: Any = None,
    target: Any = None,
    timeout: float | None = None,
) -> T:
    """Run `call(adapter)` to completion from sync code, audit each venue request, and turn
    adapter errors into API errors. A timeout counts as the venue being unavailable."""
    recorder = CallRecorder()
    limit = timeout or settings.K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS

    async def runner() -> T:
        async with open_adapter(venue, credentials=credentials, recorder=recorder) as adapter:
            return await asyncio.wait_for(call(adapter), timeout=limit)

    try:
        return async_to_sync(runner)()
    except ex.ExchangeError as error:
        raise translate_error(error) from error
    except TimeoutError as error:
        raise ExchangeUnavailable(details={"venue": venue, "code": "TIMEOUT"}) from error
    finally:
        recorder.flush(actor, target)
