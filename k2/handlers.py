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
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[HttpResponseBase] = loop.create_future()

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

        job: asyncio.Future[Any] = asyncio.ensure_future(sync_to_async(respond, thread_sensitive=False)())
        try:
            await asyncio.wait([ready, job], return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                await job  # it raised before there was a response: raise that
            response = ready.result()
            try:
                await self.send_response(response, send)
            finally:
                await job
        finally:
            body_file.close()
        if response.streaming:  # a file or generator: close once it has been sent
            await sync_to_async(response.close, thread_sensitive=True)()
