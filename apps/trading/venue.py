"""Calling a venue from trading code.

Order placement is latency-critical, so venue calls do not build a client per call: each process
keeps one background event loop ("venue loop") holding pooled adapters (keep-alive HTTP
connections, one Redis client for the shared rate limiter), keyed by venue, URLs and credentials.
Sync code (views, tasks, admin) hands a coroutine to that loop and waits for it with a deadline.

Every venue request is audited as with `apps.exchanges.calls.run_venue_call`, but the adapter's
own errors come back unmapped, because trading must tell a definite refusal from an unknown
outcome (`OrderOutcomeUnknown`, or our own deadline) and never treat the latter as failed.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar, cast

from django.conf import settings
from django.utils.module_loading import import_string

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import CallOutcome, Capabilities, Credentials, ExchangeAdapter
from apps.exchanges.calls import CallRecorder
from apps.exchanges.venues import venue_spec
from k2.observability.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
MAX_ADAPTERS = 256

_recorder: contextvars.ContextVar[CallRecorder | None] = contextvars.ContextVar(
    "venue_recorder", default=None
)


class VenueCallTimeout(ex.ExchangeTimeout):
    """Our own deadline passed before the venue answered: for an order command, outcome unknown."""


def venue_capabilities(venue: str) -> Capabilities:
    """What the venue's adapter declares (STYLE 6): read as data, no adapter instance needed."""
    return cast(Capabilities, import_string(venue_spec(venue).adapter_path).capabilities)


def _on_call(
    venue: str, method: str, latency_ms: float, outcome: CallOutcome, error_code: str | None
) -> None:
    """The pooled adapters' audit hook: reports go to the recorder of the call in progress."""
    recorder = _recorder.get()
    if recorder is not None:
        recorder(venue, method, latency_ms, outcome, error_code)


class VenueLoop:
    """One event loop thread per process with an LRU pool of open adapters."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.adapters: OrderedDict[tuple[str, ...], ExchangeAdapter] = OrderedDict()
        self.redis: Any = None
        self.thread = threading.Thread(target=self._run, name="venue-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _adapter(self, venue: str, credentials: Credentials | None) -> ExchangeAdapter:
        """On the loop: the pooled adapter for these URLs and credentials (built on first use)."""
        spec = venue_spec(venue)
        kwargs = spec.adapter_kwargs()
        secret = hashlib.sha256(credentials.api_secret.encode()).hexdigest() if credentials else ""
        key = (venue, repr(sorted(kwargs.items())), credentials.api_key if credentials else "", secret)
        adapter = self.adapters.get(key)
        if adapter is not None:
            self.adapters.move_to_end(key)
            return adapter
        if self.redis is None:
            import redis.asyncio as aioredis

            self.redis = aioredis.Redis.from_url(settings.REDIS_URL)
        factory = import_string(spec.adapter_path)
        adapter = factory(credentials=credentials, on_call=_on_call, redis=self.redis, **kwargs)
        self.adapters[key] = adapter
        while len(self.adapters) > MAX_ADAPTERS:
            _, old = self.adapters.popitem(last=False)
            self.loop.create_task(old.close())
        return adapter

    def run(
        self,
        venue: str,
        call: Callable[[ExchangeAdapter], Awaitable[T]],
        credentials: Credentials | None,
        recorder: CallRecorder,
        timeout: float,
    ) -> T:
        async def runner() -> T:
            _recorder.set(recorder)
            return await call(self._adapter(venue, credentials))

        future = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout as error:
            future.cancel()
            raise VenueCallTimeout(f"no answer within {timeout}s", venue=venue) from error

    def close(self) -> None:
        async def shutdown() -> None:
            for adapter in self.adapters.values():
                await adapter.close()
            self.adapters.clear()
            if self.redis is not None:
                await self.redis.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


_lock = threading.Lock()
_venue_loop: VenueLoop | None = None


def get_venue_loop() -> VenueLoop:
    global _venue_loop
    with _lock:
        if _venue_loop is None or _venue_loop.pid != os.getpid():  # a forked worker builds its own
            _venue_loop = VenueLoop()
        return _venue_loop


def venue_loop_reset() -> None:
    """Close every pooled adapter (tests, shutdown)."""
    global _venue_loop
    with _lock:
        loop, _venue_loop = _venue_loop, None
    if loop is not None and loop.pid == os.getpid():
        loop.close()


def venue_call(
    venue: str,
    call: Callable[[ExchangeAdapter], Awaitable[T]],
    *,
    credentials: Credentials | None,
    timeout: float,
    actor: Any = None,
    target: Any = None,
    recorder: CallRecorder | None = None,
) -> T:
    """Run `call(adapter)` from sync code within `timeout` seconds; audit every venue request.
    Raises the adapter's `ExchangeError`s as they are, and `VenueCallTimeout` on our deadline.

    With a `recorder` the caller writes the audit entries (`recorder.flush`), typically in the
    transaction that records the venue's answer; without one they are written here."""
    calls = recorder if recorder is not None else CallRecorder()
    try:
        return get_venue_loop().run(venue, call, credentials, calls, timeout)
    finally:
        if recorder is None:
            calls.flush(actor, target)
