"""The HTTP side of `k2.asgi`: Django's sync middleware and views run in one thread hop per
request (signals, middleware and view together), with the same responses as Django's handler."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from asgiref.testing import ApplicationCommunicator
from django.core import signals

from k2.handlers import SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def handler(settings: Any) -> SyncChainASGIHandler:
    settings.ROOT_URLCONF = "tests.k2.urls"
    return SyncChainASGIHandler()


@pytest.fixture
def threads() -> Any:
    """The thread each request signal ran on."""
    seen: dict[str, list[int]] = {"started": [], "finished": []}

    def started(**kwargs: Any) -> None:
        seen["started"].append(threading.get_ident())

    def finished(**kwargs: Any) -> None:
        seen["finished"].append(threading.get_ident())

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    yield seen
    signals.request_started.disconnect(started)
    signals.request_finished.disconnect(finished)


async def call(handler: Any, method: str, path: str, body: bytes = b"", **headers: str) -> dict[str, Any]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
        "method": method, "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    app = ApplicationCommunicator(handler, scope)
    await app.send_input({"type": "http.request", "body": body})
    start = await app.receive_output(10)
    chunks = []
    while True:
        message = await app.receive_output(10)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    await app.wait(10)
    headers_out = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return {"status": start["status"], "headers": headers_out, "body": b"".join(chunks)}


async def test_a_request_is_one_hop_from_the_loop(handler: Any, threads: Any) -> None:
    assert not asyncio.iscoroutinefunction(handler._middleware_chain)  # built for sync, not adapted
    body = json.dumps({"name": "k2", "amount": "1.50"}).encode()
    response = await call(handler, "POST", "/v1/test/echo", body, content_type="application/json")
    assert response["status"] == 201, response["body"]
    assert json.loads(response["body"])["data"]["name"] == "k2"
    assert response["headers"]["x-request-id"]
    assert response["headers"]["server-timing"].startswith("app;dur=")
    loop_thread = threading.get_ident()
    assert len(threads["started"]) == len(threads["finished"]) == 1
    assert threads["started"] == threads["finished"]  # one worker thread, before and after
    assert threads["started"][0] != loop_thread


async def test_requests_run_side_by_side(handler: Any, threads: Any) -> None:
    """A request waiting (on the database, on a venue) does not hold up the next one: each of
    these two waits for the other to arrive, which on a single thread would never happen."""
    from tests.k2 import api_views

    api_views.RENDEZVOUS.reset()
    first, second = await asyncio.gather(
        call(handler, "GET", "/v1/test/rendezvous"), call(handler, "GET", "/v1/test/rendezvous")
    )
    assert (first["status"], second["status"]) == (200, 200), (first["body"], second["body"])
    assert len(set(threads["started"])) == 2
    assert sorted(threads["started"]) == sorted(threads["finished"])


async def test_request_threads_are_reused(handler: Any) -> None:
    """One after another, requests run on a few pooled threads, not one new thread each as under
    Django's handler (thread idents can be recycled, thread objects' names are not). Not exactly
    one: a request can arrive before the previous thread has marked itself idle, and the pool
    then starts another."""
    names: list[str] = []

    def started(**kwargs: Any) -> None:
        names.append(threading.current_thread().name)

    signals.request_started.connect(started)
    try:
        for _ in range(10):
            assert (await call(handler, "GET", "/v1/test/protected"))["status"] == 401
            await asyncio.sleep(0.02)  # room for the finished thread to go idle
    finally:
        signals.request_started.disconnect(started)
    assert len(names) == 10
    assert len(set(names)) <= 3, names


async def test_errors_keep_the_api_envelope(handler: Any) -> None:
    response = await call(handler, "POST", "/v1/test/echo", b"{not json", content_type="application/json")
    assert response["status"] == 400
    assert json.loads(response["body"])["error"]["code"]
    response = await call(handler, "GET", "/v1/no/such/thing")
    assert response["status"] == 404
    assert json.loads(response["body"])["error"]["code"] == "NOT_FOUND"
    response = await call(handler, "GET", "/v1/test/boom")
    assert response["status"] == 500
    assert b"hunter2" not in response["body"]
    assert json.loads(response["body"])["error"]["code"] == "INTERNAL_ERROR"


# Django's own handler warns the same: a file response's iterator is read off the event loop.
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous iterators")
async def test_a_streamed_file_is_sent_whole_and_then_closed(handler: Any, threads: Any) -> None:
    expected = (Path(django.contrib.admin.__file__).parent / "static/admin/css/base.css").read_bytes()
    response = await call(handler, "GET", "/static/admin/css/base.css")
    assert response["status"] == 200
    assert response["body"] == expected
    assert len(threads["finished"]) == 1  # closed (request_finished) after the body went out


async def test_a_response_is_sent_before_its_thread_closes_it(handler: Any) -> None:
    """The client has the whole response while the request's thread is still closing it (the
    request's audit entry, request_finished); the handler returns once that is done too."""
    from k2.audit.models import AuditEntry

    closing = threading.Event()
    sent = threading.Event()

    def finished(**kwargs: Any) -> None:
        closing.set()
        sent.wait(10)  # held until the test has read the response

    signals.request_finished.connect(finished)
    try:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
            "method": "GET", "path": "/v1/test/protected", "raw_path": b"/v1/test/protected",
            "query_string": b"", "root_path": "", "headers": [], "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        app = ApplicationCommunicator(handler, scope)
        await app.send_input({"type": "http.request", "body": b""})
        start = await app.receive_output(5)
        body = await app.receive_output(5)
        assert (start["status"], body.get("more_body", False)) == (401, False)
        request_id = {k.lower(): v for k, v in start["headers"]}[b"x-request-id"].decode()
        assert await asyncio.to_thread(closing.wait, 5)  # the thread is closing it now
        sent.set()
        await app.wait(5)
    finally:
        sent.set()
        signals.request_finished.disconnect(finished)
    entry = await AuditEntry.objects.aget(action="api.request", request_id=request_id)
    assert (entry.details["status"], entry.details["path"]) == (401, "/v1/test/protected")


async def test_garbage_is_collected_after_a_response_when_no_other_request_is_in_flight(
    handler: Any,
) -> None:
    import gc

    before, enabled = gc.get_threshold(), gc.isenabled()
    gc.disable()  # as under `k2.serve`: only the handler collects
    gc.set_threshold(100_000, *before[1:])
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    try:
        # Cyclic garbage, well past half the threshold: objects other threads free while the
        # request is served lower the count (see the next test).
        for _ in range(90_000):
            cycle: list[Any] = []
            cycle.append(cycle)
        del cycle
        assert gc.get_count()[0] >= 50_000
        gc.callbacks.append(seen)
        assert (await call(handler, "GET", "/v1/test/protected"))["status"] == 401
        assert collections  # the handler's thread collected after sending
        assert gc.get_count()[0] < 50_000
    finally:
        if seen in gc.callbacks:
            gc.callbacks.remove(seen)
        gc.set_threshold(*before)
        if enabled:
            gc.enable()


def test_the_web_process_tick_collects_when_idle_and_past_the_backstop_when_busy() -> None:
    """`k2.serve` turns the automatic collector off; its loop's tick collects instead: what is
    due when no request is in flight, and with requests in flight only past the backstop.

    The young generation's count is per process, and an object freed on another thread (an
    in-process simulator, the venue loop) lowers it: in CI such frees once took the count below
    the backstop. A switch interval of a second keeps those threads off the interpreter for the
    few milliseconds the test counts (nothing here waits on I/O)."""
    import gc
    import sys

    from k2.handlers import BACKSTOP, collect_on_tick

    before, enabled = gc.get_threshold(), gc.isenabled()
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    def garbage(count: int) -> None:
        for _ in range(count):
            cycle: list[Any] = []
            cycle.append(cycle)

    switch = sys.getswitchinterval()
    gc.collect()
    gc.disable()
    gc.set_threshold(1_000, *before[1:])
    gc.callbacks.append(seen)
    sys.setswitchinterval(1.0)
    try:
        garbage(2_000)  # due, not past the backstop
        collect_on_tick(in_flight=1)
        assert collections == []
        assert gc.get_count()[0] >= 2_000
        collect_on_tick(in_flight=0)
        assert collections
        assert gc.get_count()[0] < 1_000

        collections.clear()
        garbage(BACKSTOP * 1_000 + 1_000)
        collect_on_tick(in_flight=3)
        assert collections
        assert gc.get_count()[0] < 1_000
    finally:
        sys.setswitchinterval(switch)
        gc.callbacks.remove(seen)
        gc.set_threshold(*before)
        if enabled:
            gc.enable()
