"""Query helpers shared by the apps' selectors."""

from __future__ import annotations

from typing import TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)


def one_or_none(queryset: models.QuerySet[M]) -> M | None:
    """The row a lookup by a unique key finds, or None.

    `.first()` adds `ORDER BY pk`, which decides nothing when at most one row matches, and
    compiling it costs more than running the query: this sits on every API request's path."""
    return next(iter(queryset[:1]), None)
