"""`asyncio.wait_for` that never loses a cancellation, on Python 3.11.

On 3.11, when the awaited thing finishes at the moment the caller is cancelled, `wait_for`
returns the result and drops the cancellation (CPython gh-86296; 3.12 rebuilt `wait_for` on
`asyncio.timeout`). redis-py 8 sends every command under `wait_for` (its default
`socket_timeout` is 5 s), so a task cancelled while it talked to Redis went on running about
half the time: a market-data feed that would not stop, a WebSocket consumer's task outliving its
socket. `install()` gives 3.11 the 3.12 implementation, for our code and every library's; it
runs when the `k2` package is imported, so in every process. On 3.12 and later it does nothing.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(fut: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for` as Python 3.12 has it: the awaitable runs under `asyncio.timeout`."""
    if timeout is not None and timeout <= 0:
        task = asyncio.ensure_future(fut)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task})
        try:
            return task.result()
        except asyncio.CancelledError as exc:
            raise TimeoutError from exc
    async with asyncio.timeout(timeout):
        return await fut


def install() -> None:
    if sys.version_info < (3, 12):
        patched: Any = wait_for
        asyncio.wait_for = patched
        asyncio.tasks.wait_for = patched


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, timeout: float | None = None) -> bool:
    """Cancel `tasks` and wait until they have ended (at most `timeout`); True if all did.

    Their outcome, a cancellation or an error, is theirs and is not raised here. A cancellation
    of the caller still is: `with suppress(CancelledError): await task`, the usual spelling,
    cannot tell the two apart and swallowed it.
    """
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if not pending:
        return True
    done, not_done = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved: asyncio does not report it as lost
    return not not_done
