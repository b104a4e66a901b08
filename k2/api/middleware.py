"""Refuse, before any view runs, what no view can take, in the error envelope: an oversized body
(413) and a NUL character in the path (400 MALFORMED_REQUEST) or a query parameter (400
VALIDATION_ERROR on that field): PostgreSQL text cannot hold one, so a symbol with it reached a
query and failed there as a 500."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from k2.api.responses import error_response


class RequestLimitsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return error_response(400, "MALFORMED_REQUEST", "NUL characters are not allowed in a URL.")
        if "%00" in request.META.get("QUERY_STRING", ""):
            refused = ["NUL characters are not allowed."]
            fields = {
                name: refused
                for name, values in request.GET.lists()
                if "\x00" in name or any("\x00" in value for value in values)
            }
            return error_response(400, "VALIDATION_ERROR", "Invalid input.", {"fields": fields})
        limit = int(settings.K2_REQUEST_MAX_BODY_BYTES)
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return error_response(400, "MALFORMED_REQUEST", "Invalid Content-Length header.")
        if length > limit:
            return error_response(
                413, "PAYLOAD_TOO_LARGE", "The request body is too large.", {"max_bytes": limit}
            )
        return self.get_response(request)
