"""Request id: accepted from `X-Request-ID` when valid, else generated; echoed on the response,
bound to every log line of the request and available to the audit log and the API envelope.
The response also carries `Server-Timing: app;dur=<ms>`, the time Django spent on it."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from django.http import HttpRequest, HttpResponse

from k2.observability import context

HEADER = "X-Request-ID"


def client_ip(request: HttpRequest) -> str | None:
    """The peer address. Behind proxies set K2_NUM_PROXIES; the left-most untrusted hop is used."""
    from django.conf import settings

    num_proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if num_proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-min(num_proxies, len(hops))]
    return request.META.get("REMOTE_ADDR") or None


class RequestIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = context.clean_request_id(request.headers.get(HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = context.current.set(
            context.RequestContext(
                request_id=request_id,
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", "")[:512],
            )
        )
        # Cleared and bound at the start (not unbound at the end): Django logs a 5xx after the
        # middleware chain returns, and that line must still carry the request id.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(trace_id=request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            context.current.reset(token)
        response[HEADER] = request_id
        response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response
