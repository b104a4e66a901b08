"""Plain-Django JSON responses in the envelope, for code paths outside DRF views."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from k2.api.envelope import meta
from k2.api.exceptions import error_body


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    body = error_body(code, message, details)
    body["meta"] = meta()
    return JsonResponse(body, status=status)


def data_response(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse({"data": data, "meta": meta()}, status=status)
