"""Health probes and the JSON error handlers Django uses outside DRF (unknown routes, CSRF...)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.http import require_GET

from k2.api.envelope import meta
from k2.api.responses import error_response
from k2.observability.logging import get_logger

log = get_logger(__name__)


def _is_admin(request: HttpRequest) -> bool:
    return request.path.startswith("/admin/")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"data": {"status": "ok"}, "meta": meta()})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _check_broker() -> None:
    from k2.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: PostgreSQL, Redis and the Celery broker reachable; 503 naming the failures."""
    checks: dict[str, str] = {}
    for name, check in (("postgresql", _check_database), ("redis", _check_redis), ("broker", _check_broker)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness_check_failed", check=name, error_type=type(exc).__name__)
            checks[name] = "unavailable"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        body = {
            "error": {
                "code": "NOT_READY",
                "message": f"Not ready: {', '.join(failed)} unreachable.",
                "details": {"checks": checks, "failed": failed},
            },
            "meta": meta(),
        }
        return JsonResponse(body, status=503)
    return JsonResponse({"data": {"status": "ready", "checks": checks}, "meta": meta()})


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_admin(request):
        return defaults.bad_request(request, exception or Exception())
    return error_response(400, "MALFORMED_REQUEST", "The request was malformed.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_admin(request):
        return defaults.permission_denied(request, exception or Exception())
    return error_response(403, "FORBIDDEN", "You do not have permission to perform this action.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_admin(request):
        return defaults.page_not_found(request, exception)
    return error_response(404, "NOT_FOUND", f"No route for {request.method} {request.path}.")


def server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(
        500, "INTERNAL_ERROR", "An unexpected error occurred. Quote the request id to support."
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if _is_admin(request):
        from django.views.csrf import csrf_failure as django_csrf_failure

        return django_csrf_failure(request, reason)
    return error_response(403, "CSRF_FAILED", "CSRF verification failed.")
