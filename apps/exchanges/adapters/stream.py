"""What every venue's WebSocket stream does the same way: one connection at a time, kept alive by
reconnecting with exponential backoff and jitter after any drop, and normalised events handed to
the consumer through a bounded queue (`async for event in stream`), ending with the error that
stopped the stream, if one did. A venue's stream says how to connect and what a session is.

A drop is a broken socket, a retryable venue error (auth answered "rate limited", say) or a
message we could not read or translate: the consumer sees "disconnected", then "connected" after
the reconnect, and resyncs (the user-stream follower reconciles the link's orders), so whatever
the unread message carried is recovered. A consumer too slow for the queue is resynced the same
way. Any other error ends the stream with that error, never a silently dead task.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import random
import time
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import StreamStatus
from k2.aio import cancel_and_wait
from k2.observability.logging import get_logger

log = get_logger(__name__)

E = TypeVar("E")
_CLOSED = object()


class ReconnectSettings(Protocol):
    @property
    def open_timeout(self) -> float: ...
    @property
    def close_timeout(self) -> float: ...
    @property
    def reconnect_base(self) -> float: ...
    @property
    def reconnect_cap(self) -> float: ...
    @property
    def stable_seconds(self) -> float: ...  # a connection held this long resets the back-off
    @property
    def max_reconnects(self) -> int | None: ...  # None = forever
    @property
    def queue_size(self) -> int: ...


S = TypeVar("S", bound=ReconnectSettings)


class Reconnect(Exception):
    """Leave the session and reconnect (a silent socket, a subscription the venue ended, ...)."""


# A drop: reconnect. (A venue's `FatalError` or `NonRetryableError` ends the stream instead.)
DROPS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    ConnectionClosed,
    InvalidHandshake,
    InvalidURI,
    Reconnect,
)
# Also reconnect after, as for a drop: a venue's retryable answer (auth "rate limited") and a
# message we could not read (invalid JSON, a missing key, a wrong type) or translate (that is
# `UnexpectedResponse`, retryable too). The reconnect's "connected" makes the consumer resync.
RECOVERABLE: tuple[type[BaseException], ...] = (
    ex.RetryableError,
    ValueError,  # json.JSONDecodeError, int("x")
    LookupError,
    TypeError,
    decimal.DecimalException,
)


class ReconnectingStream(Generic[E, S]):
    """One auto-reconnecting socket. Subclasses give `connect_options` and `_session`, which runs
    one connection until it drops (raising), and `emit` what they read."""

    venue = ""
    stats: Any  # the venue's counters; `reconnects` is counted here

    def __init__(self, *, url: str, settings: S) -> None:
        self.url = url
        self.settings = settings
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None

    # ---- the consumer's side --------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[E]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[E]:
        self._start()
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        """Stop the connection loop; bounded in time even if the socket will not close politely."""
        if self._task is not None:
            ended = await cancel_and_wait(self._task, timeout=self.settings.close_timeout + 1)
            if not ended and self._ws is not None:
                self._ws.transport.abort()
            self._task = None
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_CLOSED)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def emit(self, item: Any) -> None:
        """Queue an event read in a session. A full queue loses it, so the session is dropped:
        the reconnect's "connected" comes after every lost event and the consumer resyncs."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("stream_queue_full", venue=self.venue, size=self._queue.maxsize)
            raise Reconnect("consumer too slow: event queue full") from None

    def _disconnected(self, attempt: int, detail: str) -> None:
        """Tell the consumer the connection dropped, unless it is too far behind to hear it: a full
        queue keeps its events, and the reconnect's "connected" is what makes it resync."""
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(StreamStatus("disconnected", attempt, detail))

    def _end(self, error: BaseException) -> None:
        """The stream's last word, making room for it if the consumer is behind."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(error)

    # ---- the connection loop --------------------------------------------------------------
    def connect_options(self) -> dict[str, Any]:
        """`websockets.connect` options besides the URL and timeouts (headers, pings)."""
        return {}

    async def _session(self, ws: ClientConnection, attempt: int) -> None:
        raise NotImplementedError

    def refusal(self, exc: BaseException) -> ex.ExchangeError | None:
        """The error that ends the stream, if `exc` (raised connecting or in a session) is a
        refusal no reconnect will change (a venue's 401 on the upgrade, say)."""
        return None

    async def _run(self) -> None:
        attempt = 0
        while True:
            began = time.monotonic()
            try:
                async with connect(
                    self.url,
                    open_timeout=self.settings.open_timeout,
                    close_timeout=self.settings.close_timeout,
                    max_size=2**22,
                    **self.connect_options(),
                ) as ws:
                    self._ws = ws
                    await self._session(ws, attempt)
            except asyncio.CancelledError:
                raise
            except (ex.FatalError, ex.NonRetryableError) as exc:
                self._end(exc)
                return
            except DROPS as exc:
                if (refused := self.refusal(exc)) is not None:
                    self._end(refused)
                    return
                self._disconnected(attempt, f"{type(exc).__name__}: {exc}"[:200])
            except RECOVERABLE as exc:
                # Only the type and codes: a message's text can quote the message it failed on.
                detail = _describe(exc)
                log.warning("stream_dropped_on_error", venue=self.venue, attempt=attempt, error=detail)
                self._disconnected(attempt, detail)
            except Exception as exc:
                log.exception("stream_failed", venue=self.venue, attempt=attempt, error=_describe(exc))
                self._end(exc)
                return
            finally:
                self._ws = None
            if time.monotonic() - began >= self.settings.stable_seconds:
                attempt = 0  # a connection that held: back off from the start, not from the cap
            attempt += 1
            self.stats.reconnects += 1
            if self.settings.max_reconnects is not None and attempt > self.settings.max_reconnects:
                self._end(ex.ExchangeUnavailable("stream gave up reconnecting", venue=self.venue))
                return
            await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        cap = min(self.settings.reconnect_cap, self.settings.reconnect_base * 2 ** min(attempt, 16))
        return random.uniform(cap / 2, cap)  # noqa: S311 - jitter


def _describe(exc: BaseException) -> str:
    """An error for logs and statuses without its message, which may quote venue data."""
    if isinstance(exc, ex.ExchangeError):
        return f"{type(exc).__name__} {exc.code}" + (f" [{exc.venue_code}]" if exc.venue_code else "")
    return type(exc).__name__
