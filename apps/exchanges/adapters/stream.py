"""What every venue's WebSocket stream does the same way: one connection at a time, kept alive by
reconnecting with exponential backoff and jitter after any drop, and normalised events handed to
the consumer through a bounded queue (`async for event in stream`), ending with the error that
stopped the stream, if one did. A venue's stream says how to connect and what a session is.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import StreamStatus
from k2.aio import cancel_and_wait

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
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:  # a consumer this slow must resync from scratch anyway
            self._queue.get_nowait()
            self._queue.put_nowait(item)

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
                self.emit(exc)
                return
            except DROPS as exc:
                if (refused := self.refusal(exc)) is not None:
                    self.emit(refused)
                    return
                self.emit(StreamStatus("disconnected", attempt, f"{type(exc).__name__}: {exc}"[:200]))
            finally:
                self._ws = None
            attempt += 1
            self.stats.reconnects += 1
            if self.settings.max_reconnects is not None and attempt > self.settings.max_reconnects:
                self.emit(ex.ExchangeUnavailable("stream gave up reconnecting", venue=self.venue))
                return
            await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        cap = min(self.settings.reconnect_cap, self.settings.reconnect_base * 2 ** min(attempt, 16))
        return random.uniform(cap / 2, cap)  # noqa: S311 - jitter
