from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.exchanges.choices import LinkStatus
from apps.exchanges.models import ExchangeLink
from k2.core.queries import row_get


def exchange_link_list(*, user: Any) -> QuerySet[ExchangeLink]:
    return ExchangeLink.objects.filter(user=user).order_by("exchange")


def exchange_link_active(*, user: Any, venue: str) -> ExchangeLink | None:
    return row_get(ExchangeLink, user_id=user.pk, exchange=venue, status=LinkStatus.ACTIVE)


def exchange_link_ids_to_check(*, limit: int = 500) -> list[Any]:
    return list(
        ExchangeLink.objects.filter(status=LinkStatus.ACTIVE)
        .order_by("last_checked_at")
        .values_list("pk", flat=True)[:limit]
    )
