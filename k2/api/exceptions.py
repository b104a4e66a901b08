"""One error contract for the whole API.

Services raise `ApplicationError` subclasses carrying a stable upper-snake `code`, a message and
`details`; `exception_handler` renders them, DRF's own exceptions and Django's into the envelope
`{"error": {"code", "message", "details"}, "meta": {...}}` with the right HTTP status.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework import status
from rest_framework.response import Response

from k2.observability.logging import get_logger

log = get_logger(__name__)


class ApplicationError(Exception):
    """A domain error with a stable code. Subclass per case; never put secrets in details."""

    code: str = "APPLICATION_ERROR"
    status_code: int = status.HTTP_400_BAD_REQUEST
    default_message = "The request could not be completed."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        super().__init__(self.message)


class NotFoundError(ApplicationError):
    code = "NOT_FOUND"
    status_code = status.HTTP_404_NOT_FOUND
    default_message = "Not found."


class ConflictError(ApplicationError):
    code = "CONFLICT"
    status_code = status.HTTP_409_CONFLICT
    default_message = "The request conflicts with the current state."


class ValidationFailed(ApplicationError):
    code = "VALIDATION_ERROR"
    status_code = status.HTTP_400_BAD_REQUEST
    default_message = "Invalid input."


# DRF exception class -> (code, fixed message or None to keep DRF's text)
_DRF_CODES: list[tuple[type[drf.APIException], str]] = [
    (drf.ValidationError, "VALIDATION_ERROR"),
    (drf.ParseError, "MALFORMED_REQUEST"),
    (drf.NotAuthenticated, "UNAUTHENTICATED"),
    (drf.AuthenticationFailed, "UNAUTHENTICATED"),
    (drf.PermissionDenied, "FORBIDDEN"),
    (drf.NotFound, "NOT_FOUND"),
    (drf.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (drf.NotAcceptable, "NOT_ACCEPTABLE"),
    (drf.UnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE"),
    (drf.Throttled, "RATE_LIMITED"),
]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _flatten_detail(detail: Any) -> Any:
    """DRF ErrorDetail trees -> plain lists/dicts of strings."""
    if isinstance(detail, dict):
        return {str(k): _flatten_detail(v) for k, v in detail.items()}
    if isinstance(detail, list):
        return [_flatten_detail(v) for v in detail]
    return str(detail)


def _validation_details(detail: Any) -> dict[str, Any]:
    flat = _flatten_detail(detail)
    if isinstance(flat, dict):
        return {"fields": flat}
    if isinstance(flat, list):
        return {"fields": {"non_field_errors": flat}}
    return {"fields": {"non_field_errors": [flat]}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every error gets the envelope (this never returns None)."""
    # Imported here: rest_framework.views resolves DEFAULT_AUTHENTICATION_CLASSES at import
    # time, and authentication classes import this module.
    from rest_framework.views import set_rollback

    headers: dict[str, str] = {}
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = drf.ValidationError(detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, SuspiciousOperation):
        exc = drf.ParseError("The request was malformed.")

    if isinstance(exc, ApplicationError):
        set_rollback()
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)

    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), None)
        if code is None:
            code = str(exc.default_code).upper()
        if isinstance(exc, drf.ValidationError):
            message, details = "Invalid input.", _validation_details(exc.detail)
        else:
            message, details = str(_flatten_detail(exc.detail)), {}
        if isinstance(exc, drf.Throttled):
            raw_wait = getattr(exc, "wait", None)
            wait = int(raw_wait) if raw_wait else 1
            headers["Retry-After"] = str(max(wait, 1))
            details = {"retry_after_seconds": max(wait, 1)}
        status_code = exc.status_code
        if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
            # DRF downgrades these to 403 when the auth class sends no challenge; the contract is 401.
            status_code = status.HTTP_401_UNAUTHORIZED
            headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or 'Bearer realm="api"'
        set_rollback()
        return Response(error_body(code, message, details), status=status_code, headers=headers)

    # Anything else is a bug: log it with its traceback (and Sentry picks it up), answer generically.
    log.exception("unhandled_exception", exc_type=type(exc).__name__)
    _report_to_sentry(exc)
    set_rollback()
    return Response(
        error_body("INTERNAL_ERROR", "An unexpected error occurred. Quote the request id to support."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _report_to_sentry(exc: Exception) -> None:
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover - sentry-sdk is a base dependency
        return
    if sentry_sdk.get_client().is_active():
        sentry_sdk.capture_exception(exc)
