"""`FieldsBuiltOnceMixin`: fields built once per class, bound per instance, same output."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from apps.trading.api.serializers import OrderSerializer
from apps.trading.models import Order


class PlainOrderSerializer(serializers.ModelSerializer[Order]):
    Meta = OrderSerializer.Meta


def make_order(**overrides: Any) -> Order:
    now = timezone.now()
    return Order(
        **{
            "id": uuid.uuid4(), "user_id": uuid.uuid4(), "client_order_id": "abc-1", "exchange": "cryptocom",
            "instrument": "BTC-USD", "instrument_type": "crypto", "side": "buy", "order_type": "limit",
            "quantity": Decimal("0.00100000"), "price": Decimal("50000.50"), "notional": Decimal("50.0005"),
            "status": "open", "filled_quantity": Decimal("0"), "fees": Decimal("0"), "created_at": now,
            "updated_at": now, **overrides,
        }
    )  # fmt: skip


def test_same_output_as_the_plain_model_serializer() -> None:
    for order in (make_order(), make_order(status="filled", avg_fill_price=Decimal("49999.10000000"))):
        assert OrderSerializer(order).data == PlainOrderSerializer(order).data
    assert OrderSerializer(make_order()).data["price"] == "50000.5"  # normalize_output kept


def test_each_instance_binds_its_own_fields() -> None:
    first, second = make_order(), make_order(client_order_id="abc-2")
    one, two = OrderSerializer(first), OrderSerializer(second)
    assert one.data["client_order_id"] == "abc-1"
    assert two.data["client_order_id"] == "abc-2"
    assert one.fields["id"] is not two.fields["id"]
    assert one.fields["id"].parent is one
    assert two.fields["id"].parent is two
    rows = OrderSerializer([first, second], many=True).data
    assert [row["id"] for row in rows] == [str(first.id), str(second.id)]
