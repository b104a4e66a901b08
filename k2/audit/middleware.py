"""Records every API request (method, path, status, user, latency) in the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from k2.observability.logging import get_logger

log = get_logger(__name__)

AUDITED_PREFIXES = ("/v1/", "/admin/")


class AuditRequestMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        if request.path.startswith(AUDITED_PREFIXES) and not (
            request.path.startswith("/admin/") and request.method in ("GET", "HEAD")
        ):
            self._record(request, response, (time.perf_counter() - started) * 1000)
        return response

    @staticmethod
    def _record(request: HttpRequest, response: HttpResponse, latency_ms: float) -> None:
        from k2.audit.services import record

        user = getattr(request, "user", None)
        details = {
            "method": request.method,
            "path": request.path[:512],
            "status": response.status_code,
            "latency_ms": round(latency_ms, 2),
        }
        try:
            record(user, "api.request", details=details)
            if response.status_code >= 500:
                record(
                    user, "api.error", details={**details, "error": getattr(response, "k2_error_type", "")}
                )
        except Exception:
            log.exception("audit_request_record_failed", path=request.path)
