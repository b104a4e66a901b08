"""What every venue's WebSocket stream does the same way: one connection at a time, kept alive by
reconnecting with exponential backoff and jitter after any drop, and normalised events handed to
the consumer through a bounded queue (`async for event in stream`), ending with the error that
stopped the stream, if one did. A venue's stream says how to connect and what a session is.

A drop is a broken socket, a retryable venue error (auth answered "rate limited", say) or a
message we could not read (not JSON) or that broke the protocol: the consumer sees
"disconnected", then "connected" after the reconnect, and resyncs (the user-stream follower
reconciles the link's orders), so whatever the unread message carried is recovered. A consumer
too slow for the queue is resynced the same way. Any other error ends the stream with that
error, never a silently dead task.

A data message (an order update, a ticker, a book row) that reads as JSON but cannot be
translated is not a drop: the venue would send it again after every reconnect (or keep sending
its kind), and each reconnect loses every good message around it. The venue's stream skips it
with a `stream_message_skipped` warning (`skip`) and keeps the connection; a book it leaves in
doubt is resynced instead (a fresh snapshot, as after a sequence gap), and a user stream's
consumer hears "resync" (the skipped message may have been an order update or a fill: the
follower reconciles the link's live orders, as after a reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import json
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
# message we could not read (invalid JSON) or a protocol message of a shape we did not expect (a
# missing key, a wrong type). The reconnect's "connected" makes the consumer resync.
RECOVERABLE: tuple[type[BaseException], ...] = (
    ex.RetryableError,
    ValueError,  # json.JSONDecodeError, int("x")
    LookupError,
    TypeError,
    decimal.DecimalException,
)
# A data message that cannot be translated (a missing key, a wrong type, an unknown value, a
# number that is not one): the venue's stream skips it (`skip`) and keeps the connection.
UNTRANSLATABLE: tuple[type[BaseException], ...] = (
    ex.UnexpectedResponse,
    ValueError,
    LookupError,
    TypeError,
    AttributeError,  # a row that is not an object
    ArithmeticError,  # decimal.InvalidOperation, an out-of-range timestamp
)
PAYLOAD_EXCERPT = 200  # characters of a skipped message kept in the log


class ReconnectingStream(Generic[E, S]):
    """One auto-reconnecting socket. Subclasses give `connect_options` and `_session`, which runs
    one connection until it drops (raising), and `emit` what they read."""

    venue = ""
    # A user stream: a skipped message may have been an order update or a fill, so the consumer
    # is told to resync ("resync": the user-stream follower reconciles the link's live orders).
    resync_on_skip = False
    stats: Any  # the venue's counters; `reconnects` is counted here

    def __init__(self, *, url: str, settings: S) -> None:
        self.url = url
        self.settings = settings
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=settings.queue_size)
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        # Books resynced for data that could not be translated, with no good snapshot since (on
        # this connection): `book_untranslatable`.
        self._bad_books: set[str] = set()

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

    def skip(self, channel: str, error: BaseException, payload: Any, *, resync: bool = True) -> None:
        """Log a data message that could not be translated (`UNTRANSLATABLE`) and go on without
        it. Venue data carries no credentials (those go in headers and the auth command only);
        the excerpt is bounded all the same. On a user stream the consumer then hears "resync"
        (unless `resync` is False: the caller tells it once for several rows, `resync_skipped`)."""
        self.stats.skipped += 1
        log.warning(
            "stream_message_skipped",
            venue=self.venue,
            channel=channel,
            error=f"{type(error).__name__}: {error}"[:PAYLOAD_EXCERPT],
            payload=_excerpt(payload),
            skipped=self.stats.skipped,
        )
        if resync:
            self.resync_skipped(channel)

    def resync_skipped(self, channel: str) -> None:
        """On a user stream, tell the consumer to resync after what `skip` left out."""
        if self.resync_on_skip:
            self.emit(StreamStatus("resync", self.stats.skipped, f"skipped a message on {channel}"[:200]))

    def book_untranslatable(self, book: str, channel: str, error: BaseException, payload: Any) -> bool:
        """Skip a book message that cannot be applied, which leaves that book in doubt. True: resync
        it (a fresh snapshot), the first time since its last good one (`book_translated`). False:
        the fresh snapshot could not be translated either; the book is left out on this connection
        (the consumer holds it invalid since the resync) rather than resynced in a loop."""
        self.skip(channel, error, payload)
        if book in self._bad_books:
            log.warning("stream_book_abandoned", venue=self.venue, channel=channel, book=book)
            return False
        self._bad_books.add(book)
        return True

    def book_translated(self, book: str) -> None:
        """A good snapshot of `book` arrived: a later untranslatable message resyncs it again."""
        self._bad_books.discard(book)

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
                    self._bad_books.clear()
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


def _excerpt(payload: Any) -> str:
    try:
        text = json.dumps(payload, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(payload)
    return text if len(text) <= PAYLOAD_EXCERPT else text[:PAYLOAD_EXCERPT] + "..."


def _describe(exc: BaseException) -> str:
    """An error for logs and statuses without its message, which may quote venue data."""
    if isinstance(exc, ex.ExchangeError):
        return f"{type(exc).__name__} {exc.code}" + (f" [{exc.venue_code}]" if exc.venue_code else "")
    return type(exc).__name__
