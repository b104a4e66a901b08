"""Cursor pagination: `?limit=20&cursor=...`, limit capped, cursor opaque and tamper-checked."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response


class EnvelopeCursorPagination(CursorPagination):
    page_size = 20
    page_size_query_param = "limit"
    cursor_query_param = "cursor"
    ordering = ("-created_at", "-id")

    @property
    def max_page_size(self) -> int:  # type: ignore[override]
        return int(settings.K2_PAGINATION_MAX_LIMIT)

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            value = int(raw)
        except ValueError:
            raise exceptions.ValidationError({"limit": ["Must be an integer."]}) from None
        if value < 1:
            raise exceptions.ValidationError({"limit": ["Must be at least 1."]})
        return min(value, self.max_page_size)

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from None

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> tuple[str, ...]:
        ordering = tuple(super().get_ordering(request, queryset, view))
        # A unique tie-breaker keeps pages stable when the sort key repeats.
        if "id" not in {o.lstrip("-") for o in ordering}:
            ordering = (*ordering, "-id" if ordering[0].startswith("-") else "id")
        return ordering

    def get_paginated_response(self, data: Any) -> Response:
        response = Response(data)
        response.envelope_meta = {  # type: ignore[attr-defined]
            "pagination": {
                "limit": self.page_size,
                "next_cursor": self._cursor_param(self.get_next_link()),
                "previous_cursor": self._cursor_param(self.get_previous_link()),
            }
        }
        return response

    def _cursor_param(self, link: str | None) -> str | None:
        if not link:
            return None
        from urllib.parse import parse_qs, urlsplit

        values = parse_qs(urlsplit(link).query).get(self.cursor_query_param)
        return values[0] if values else None

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return schema
