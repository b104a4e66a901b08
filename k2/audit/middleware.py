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
        """The entries are made now, in the request's context (its id, IP, user agent), and
        written when the response is closed: by the server once it is sent, so the client does
        not wait for them (Django's test client closes it before returning)."""
        from k2.audit.services import audit_entry
        from k2.core.queries import rows_insert

        user = getattr(request, "user", None)
        details = {
            "method": request.method,
            "path": request.path[:512],
            "status": response.status_code,
            "latency_ms": round(latency_ms, 2),
        }
        try:
            entries = [audit_entry(user, "api.request", details=details)]
            if response.status_code >= 500:
                error = getattr(response, "k2_error_type", "")
                entries.append(audit_entry(user, "api.error", details={**details, "error": error}))
        except Exception:
            log.exception("audit_request_record_failed", path=request.path)
            return

        def write() -> None:
            try:
                rows_insert(entries)
            except Exception:
                log.exception("audit_request_record_failed", path=details["path"])

        response._resource_closers.append(write)  # type: ignore[attr-defined]  # run by close()
