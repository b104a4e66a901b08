"""Calling a venue from trading code: audited like `apps.exchanges.calls.run_venue_call`, but the
adapter's own errors come back unmapped, because trading must tell a definite refusal from an
unknown outcome (`OrderOutcomeUnknown`, or our own timeout) and never treat the latter as failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from asgiref.sync import async_to_sync
from django.utils.module_loading import import_string

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import Capabilities, Credentials, ExchangeAdapter
from apps.exchanges.calls import CallRecorder, open_adapter
from apps.exchanges.venues import venue_spec

T = TypeVar("T")


class VenueCallTimeout(ex.ExchangeTimeout):
    """Our own deadline passed before the venue answered: for an order command, outcome unknown."""


def venue_capabilities(venue: str) -> Capabilities:
    """What the venue's adapter declares (STYLE 6): read as data, no adapter instance needed."""
    return cast(Capabilities, import_string(venue_spec(venue).adapter_path).capabilities)


def venue_call(
    venue: str,
    call: Callable[[ExchangeAdapter], Awaitable[T]],
    *,
    credentials: Credentials | None,
    timeout: float,
    actor: Any = None,
    target: Any = None,
) -> T:
    """Run `call(adapter)` from sync code within `timeout` seconds; audit every venue request.
    Raises the adapter's `ExchangeError`s as they are, and `VenueCallTimeout` on our deadline."""
    recorder = CallRecorder()

    async def runner() -> T:
        async with open_adapter(venue, credentials=credentials, recorder=recorder) as adapter:
            return await asyncio.wait_for(call(adapter), timeout=timeout)

    try:
        return async_to_sync(runner)()
    except TimeoutError as error:
        raise VenueCallTimeout(f"no answer within {timeout}s", venue=venue) from error
    finally:
        recorder.flush(actor, target)
