"""Django's ASGI handler, with each HTTP request's synchronous work done in one thread hop.

Every K2 view and middleware is synchronous. Django's own `ASGIHandler` builds the middleware
chain for async and adapts each sync piece as it goes: a request crosses between the event loop
and its worker thread about five times (request_started, the middleware, the view inside it,
request_finished), and each crossing waits for the other thread to get the GIL, which under
load is up to a switch interval (5 ms) each time. Here the request runs as under WSGI: signals,
middleware and view in one call on the request's thread, and the loop only reads the body and
writes the response. Async views still work (Django runs them with `async_to_sync`).

That call runs on the loop's pool of threads, as a threaded WSGI server runs requests. Django's
`thread_sensitive` default, under the `ThreadSensitiveContext` its handler opens per request,
starts a new thread for every request and ends it afterwards; the pool's threads are reused
and bounded in number (fewer threads contending for the GIL under a burst: paced-bench overhead
p50/p99 ~17/47 ms -> ~14/36 ms). A thread's database connection (from the web process's pool)
is returned when its request ends, as before.

A response whose body is in memory is handed to the loop to send as soon as the view returns;
its thread closes it meanwhile, so the work done on close (the request's audit entry, see
`k2.audit.middleware`) is not in the client's wait.

Garbage collection runs between requests rather than inside them. A request leaves a few
hundred objects in reference cycles (DRF binds each serializer field to its serializer, the
request and its view refer to each other, ...), so the automatic collector ran every other
request, inside it, holding the GIL: 0.5 ms mostly, a few ms for a second-generation pass,
15-20 ms for a full one, and longer with other threads' work interleaved (the finalizers it runs
are Python code, which lets them in). After sending a response, when no other request is in
flight, the handler collects what is half-way due. The web process (`k2.serve`) turns the
automatic collector off and, on its event loop's tick (every 0.1 s), collects what is due while
no request is in flight (a worker serving only WebSockets), and with requests in flight once
`BACKSTOP` times the young generation's threshold is uncollected (a worker never idle keeps
its garbage bounded). Under another server the automatic collector stays on and is left the
bursts (raising its thresholds instead made each of its passes much longer).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix

# With the automatic collector off: how many times its young-generation threshold may go
# uncollected while requests are in flight.
BACKSTOP = 20


def _collect_from(young_at_least: int) -> None:
    """What the automatic collector does at its young-generation threshold, from
    `young_at_least` allocations on: the generation it would pick (without its extra condition
    for a full collection: one in a hundred of these passes, about every 100 requests)."""
    young, middle, old = gc.get_count()
    _, second, third = gc.get_threshold()
    if young >= young_at_least:
        gc.collect(2 if old >= third else 1 if middle >= second else 0)


def _collect_if_half_due() -> None:
    """What the automatic collector will soon do, once half-way to its threshold."""
    _collect_from(gc.get_threshold()[0] // 2)


def collect_on_tick(in_flight: int) -> None:
    """The web process's event loop, every tick, with the automatic collector off (`k2.serve`):
    what is due while no request is in flight; with `in_flight` requests, only past the backstop."""
    first = gc.get_threshold()[0]
    _collect_from(first if in_flight == 0 else BACKSTOP * first)


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.in_flight = 0  # requests between reading and sending (changed on the loop only)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        self.in_flight += 1
        try:
            await self._handle(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _handle(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[HttpResponseBase] = loop.create_future()
        sent = threading.Event()

        def hand_over(response: HttpResponseBase) -> None:
            loop.call_soon_threadsafe(ready.set_result, response)

        def respond() -> None:
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, error = self.create_request(scope, body_file)
            if request is None:  # a body Django cannot read: its 400 or 413
                assert error is not None
                response: HttpResponseBase = error
            else:
                response = self.get_response(request)
                response._handler_class = self.__class__  # type: ignore[attr-defined]
                if isinstance(response, FileResponse):  # as Django's handler: the server chunks
                    response.block_size = self.chunk_size
            if response.streaming:  # request_finished comes from another thread once it is sent:
                close_old_connections()  # this thread's connection goes back now
                hand_over(response)
                return
            # The body is in memory: the loop sends it while this thread closes the response
            # (its closers, such as the request's audit entry, then request_finished).
            hand_over(response)
            response.close()
            if sent.wait(5) and self.in_flight == 1:  # the collector holds the GIL: no one waits
                _collect_if_half_due()

        job: asyncio.Future[Any] = asyncio.ensure_future(sync_to_async(respond, thread_sensitive=False)())
        try:
            await asyncio.wait([ready, job], return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                await job  # it raised before there was a response: raise that
            response = ready.result()
            try:
                await self.send_response(response, send)
            finally:
                sent.set()
                await job
        finally:
            body_file.close()
        if response.streaming:  # a file or generator: close once it has been sent
            await sync_to_async(response.close, thread_sensitive=True)()
