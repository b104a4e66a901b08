from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from apps.trading.choices import OrderStatus, Side
from apps.trading.models import Order, OrderExecution


class _Upper(django_filters.CharFilter):
    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        return super().filter(qs, value.strip().upper() if isinstance(value, str) else value)


class OrderFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    exchange = django_filters.CharFilter()
    instrument = _Upper()
    side = django_filters.ChoiceFilter(choices=Side.choices)
    client_order_id = django_filters.CharFilter()
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields = ("status", "exchange", "instrument", "side", "client_order_id")


class TradeFilter(django_filters.FilterSet):
    exchange = django_filters.CharFilter()
    instrument = _Upper()
    side = django_filters.ChoiceFilter(choices=Side.choices)
    order_id = django_filters.UUIDFilter(field_name="order_id")
    executed_after = django_filters.IsoDateTimeFilter(field_name="executed_at", lookup_expr="gte")
    executed_before = django_filters.IsoDateTimeFilter(field_name="executed_at", lookup_expr="lt")

    class Meta:
        model = OrderExecution
        fields = ("exchange", "instrument", "side")
