"""One client socket's outgoing side: conflation, bounded buffers, per-channel sequence numbers.

Every frame is a JSON object with `channel` and `seq` (1, 2, 3... per channel per socket) plus
the message itself. A jump in `seq` means the server dropped messages on that channel for this
socket (its buffer overflowed); the client re-subscribes (prices) or re-reads over REST (orders).

- Prices are conflated per instrument: one pending slot per subscribed instrument holds the
  newest update, and an instrument is sent at most `max_rate` times per second. Memory per
  socket is bounded by its subscriptions, whatever the tick rate or the client's speed.
- Other messages (status, errors, acks, heartbeats, user channels) go through a bounded queue
  that drops its oldest entry when full.
- One writer task per socket sends; a client that stops reading blocks only its own writer,
  and a send blocked longer than `send_timeout` gets the socket closed by the hub's sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from k2.aio import cancel_and_wait

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]

PRICES = "prices"
SYSTEM = "system"
CLOSE_SLOW_CONSUMER = 4008
CLOSE_UNAUTHENTICATED = 4401


def fragment(message: dict[str, Any]) -> str:
    """A message as the inside of a JSON object (so `channel`/`seq` can be prepended cheaply)."""
    return json.dumps(message, separators=(",", ":"))[1:-1]


class ClientSession:
    def __init__(
        self,
        send: SendText,
        close: CloseSocket,
        *,
        max_rate: float,
        max_queue: int,
        send_timeout: float,
        max_subscriptions: int,
    ) -> None:
        self._send = send
        self._close = close
        self.min_interval = 1.0 / max_rate if max_rate > 0 else 0.0
        self.max_queue = max(1, max_queue)
        self.send_timeout = send_timeout
        self.max_subscriptions = max_subscriptions
        self.loop = asyncio.get_running_loop()
        self.subscriptions: dict[str, str] = {}  # instrument -> venue
        self.muted: set[str] = set()  # user channels the client turned off
        self.user_id: str | None = None
        self.auth_deadline: float | None = None
        self.token_expires_at: float | None = None  # epoch seconds
        self.seqs: dict[str, int] = {}
        self.pending: dict[str, str] = {}  # instrument -> newest price fragment not yet sent
        self.last_feed_seq: dict[str, int] = {}
        self.awaiting_snapshot: set[str] = set()
        self.next_allowed: dict[str, float] = {}
        self.queue: deque[tuple[str, str]] = deque()
        self.dropped = 0
        self.sent = 0
        self.sending_since: float | None = None
        self.closed = False
        self.closing: tuple[int, str] | None = None
        self.close_code: int | None = None
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._writer: asyncio.Task[None] | None = None
        self._inflight: asyncio.Task[None] | None = None  # an eager send waiting for the transport
        self._draining = False

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._writer = self.loop.create_task(self._run())

    async def stop(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._inflight is not None:
            self._inflight.cancel()
        if self._writer is not None and self._writer is not asyncio.current_task():
            await cancel_and_wait(self._writer)
        self.pending.clear()
        self.queue.clear()

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once the queued messages (e.g. the error saying why) are sent."""
        if self.closed or self.closing is not None:
            return
        self.closing = (code, reason)
        self._wake.set()

    def kill(self, code: int, reason: str) -> None:
        """Close the socket from the server side (slow consumer, failed socket): buffers are
        freed now; the close frame goes out when the transport lets it."""
        already = self.closed
        self.closed = True
        for task in (self._writer, self._inflight):
            if task is not None:
                task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self.pending.clear()
        self.queue.clear()
        if not already:
            self.close_code = code
            self.loop.create_task(self._close_quietly(code, reason))

    async def _close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self._close(code, reason)

    # ---- producers ------------------------------------------------------------------------
    def offer_price(self, instrument: str, feed_seq: int, frag: str) -> None:
        """Latest-wins slot per instrument. An update no newer (by the feed's per-instrument
        sequence) than one already accepted is ignored, so a snapshot read racing a live update
        can never move a client backwards. The first message sent after (re)subscribing is
        flagged `"snapshot":true`."""
        if self.closed or instrument not in self.subscriptions:
            return
        if feed_seq <= self.last_feed_seq.get(instrument, -1):
            return
        self.last_feed_seq[instrument] = feed_seq
        ready_at = self.next_allowed.get(instrument, 0.0)
        now = self.loop.time()
        if (
            ready_at <= now
            and not self.pending
            and not self.queue
            and self._inflight is None
            and not self._draining
            and self.closing is None
        ):
            # the common case: nothing queued for this socket, so send now, in the caller's
            # turn of the loop (no task switch per message); see `_send_eagerly`
            self.next_allowed[instrument] = now + self.min_interval
            self._send_eagerly(self._price_text(instrument, frag))
            return
        self.pending[instrument] = frag
        if ready_at <= now:
            self._wake.set()
        else:
            self._schedule(ready_at)

    def enqueue(self, channel: str, message: dict[str, Any] | str) -> None:
        """Queue a non-price message; the oldest is dropped (and its seq skipped) when full."""
        if self.closed:
            return
        if len(self.queue) >= self.max_queue:
            old_channel, _ = self.queue.popleft()
            self.seqs[old_channel] = self.seqs.get(old_channel, 0) + 1  # the client sees the gap
            self.dropped += 1
        self.queue.append((channel, message if isinstance(message, str) else fragment(message)))
        self._wake.set()

    def watch(self, instrument: str, venue: str) -> None:
        self.subscriptions[instrument] = venue
        self.awaiting_snapshot.add(instrument)

    def forget(self, instrument: str) -> None:
        self.subscriptions.pop(instrument, None)
        self.pending.pop(instrument, None)
        self.last_feed_seq.pop(instrument, None)
        self.next_allowed.pop(instrument, None)
        self.awaiting_snapshot.discard(instrument)

    # ---- writer ---------------------------------------------------------------------------
    def _schedule(self, when: float) -> None:
        if self._timer is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wake.set()

    def _text(self, channel: str, frag: str, prefix: str = "") -> str:
        seq = self.seqs.get(channel, 0) + 1
        self.seqs[channel] = seq
        return f'{{"channel":"{channel}","seq":{seq},{prefix}{frag}}}'

    def _price_text(self, instrument: str, frag: str) -> str:
        if instrument in self.awaiting_snapshot:
            self.awaiting_snapshot.discard(instrument)
            return self._text(PRICES, frag, '"snapshot":true,')
        return self._text(PRICES, frag, '"snapshot":false,')

    async def _emit(self, channel: str, frag: str, prefix: str = "") -> None:
        await self._send_text(self._text(channel, frag, prefix))

    async def _send_text(self, text: str) -> None:
        self.sending_since = self.loop.time()
        await self._send(text)
        self.sending_since = None
        self.sent += 1

    def _send_eagerly(self, text: str) -> None:
        """Run the send coroutine right here until it completes or must wait for the transport
        (Python 3.12's eager tasks, by hand). Writing to a writable socket never waits, so a
        price reaches the socket without a task switch; a send that does wait (the client is
        not reading) continues as a task that the writer waits for, keeping the order."""
        self.sending_since = self.loop.time()
        coro: Any = self._send(text)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            self.sending_since = None
            self.sent += 1
            return
        except Exception:  # the socket is gone: the consumer's disconnect cleans up
            self.closed = True
            return
        self._inflight = self.loop.create_task(self._finish(coro, waiting_on))

    async def _finish(self, coro: Any, waiting_on: Any) -> None:
        try:
            while True:
                if waiting_on is None:
                    await asyncio.sleep(0)
                else:
                    # what a Task does with a yielded future: clear the flag, then wait on it
                    waiting_on._asyncio_future_blocking = False
                    await waiting_on
                try:
                    waiting_on = coro.send(None)
                except StopIteration:
                    break
            self.sending_since = None
            self.sent += 1
        except asyncio.CancelledError:
            coro.close()
            raise
        except Exception:
            coro.close()
            self.closed = True
        finally:
            self._inflight = None
            if self.pending or self.queue:
                self._wake.set()

    async def _run(self) -> None:
        try:
            while not self.closed:
                await self._wake.wait()
                self._wake.clear()
                self._draining = True
                try:
                    if self._inflight is not None:
                        await self._inflight
                    await self._drain()
                finally:
                    self._draining = False
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket is gone: the consumer's disconnect cleans up
            self.closed = True

    async def _drain(self) -> None:
        while not self.closed:
            while self.queue:
                channel, frag = self.queue.popleft()
                await self._emit(channel, frag)
            if self.closing is not None:
                code, reason = self.closing
                self.closed = True
                self.close_code = code
                self.pending.clear()
                await self._close_quietly(code, reason)
                return
            if not self.pending:
                return
            now = self.loop.time()
            earliest: float | None = None
            for instrument in list(self.pending):
                ready_at = self.next_allowed.get(instrument, 0.0)
                if ready_at > now:
                    earliest = ready_at if earliest is None else min(earliest, ready_at)
                    continue
                if instrument not in self.pending:
                    continue
                frag = self.pending.pop(instrument)
                self.next_allowed[instrument] = now + self.min_interval
                await self._send_text(self._price_text(instrument, frag))
                if self.queue:  # control and user messages do not wait behind a price burst
                    break
            else:
                if earliest is not None:
                    self._schedule(earliest)
                if not self.queue:
                    return

    # ---- health ---------------------------------------------------------------------------
    def stuck_for(self, now: float) -> float:
        return 0.0 if self.sending_since is None else now - self.sending_since

    def buffered(self) -> int:
        return len(self.pending) + len(self.queue)
