"""Refuse oversized bodies before any view reads them (413 in the error envelope)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from k2.api.responses import error_response


class BodySizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
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
