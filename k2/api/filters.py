"""`?sort=-created_at`: sorting on a view's declared `sort_fields`, strict about unknown fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request


class SortFilter(OrderingFilter):
    ordering_param = "sort"

    def get_valid_fields(
        self, queryset: Any, view: Any, context: Mapping[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        fields = getattr(view, "sort_fields", None)
        if fields is None:
            return []
        return [(f, f) for f in fields]

    def get_ordering(self, request: Request, queryset: Any, view: Any) -> Any:
        params = request.query_params.get(self.ordering_param)
        if params:
            requested = [p.strip() for p in params.split(",") if p.strip()]
            valid = {name for name, _ in self.get_valid_fields(queryset, view)}
            bad = [p for p in requested if p.lstrip("-") not in valid]
            if bad:
                raise exceptions.ValidationError(
                    {
                        "sort": [
                            f"Unknown sort field(s): {', '.join(bad)}. "
                            f"Allowed: {', '.join(sorted(valid)) or 'none'}."
                        ]
                    }
                )
            return requested
        return self.get_default_ordering(view)
