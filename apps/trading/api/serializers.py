from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.trading.choices import OrderType, Outcome, Side, TimeInForce
from apps.trading.models import Order, OrderExecution
from k2.api.serializers import FieldsBuiltOnceMixin

CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,50}$"
TINY = Decimal("0.00000001")


class AmountField(serializers.DecimalField):
    """An amount as the API takes it: a string of ASCII digits (or a whole JSON number). Never a
    JSON fraction, a binary float that may not be the amount the client meant (0.1 + 0.2 is sent
    as 0.30000000000000004), nor other scripts' digits, which Python's Decimal reads (fullwidth "1" is 1)."""

    default_error_messages = {
        "float": 'Send amounts as strings, such as "0.01".',
        "ascii": "Use the digits 0-9.",
    }

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, float):
            self.fail("float")
        if isinstance(data, str):
            if not data.isascii():
                self.fail("ascii")
            data = data.strip()
            if "." in data and data.replace(".", "", 1).isdigit():
                data = data.rstrip("0").rstrip(".") or "0"  # "0.0100000000" is 0.01: within 8 places
        return super().to_internal_value(data)


def _amount(**kwargs: Any) -> AmountField:
    return AmountField(max_digits=20, decimal_places=8, min_value=TINY, **kwargs)


class OrderCreateInputSerializer(FieldsBuiltOnceMixin, serializers.Serializer[Any]):
    """Shape only: the instrument's rules (tick, step, minimum, outcome) live in the services."""

    instrument = serializers.CharField(max_length=100)
    side = serializers.ChoiceField(choices=Side.choices)
    order_type = serializers.ChoiceField(choices=OrderType.choices)
    quantity = _amount()
    price = _amount(required=False, allow_null=True, default=None)
    outcome = serializers.ChoiceField(choices=Outcome.choices, required=False, allow_blank=True, default="")
    time_in_force = serializers.ChoiceField(
        choices=TimeInForce.choices, required=False, default=TimeInForce.GTC
    )
    post_only = serializers.BooleanField(required=False, default=False)
    client_order_id = serializers.RegexField(
        CLIENT_ORDER_ID_PATTERN, required=False, allow_null=True, default=None
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields) if isinstance(self.initial_data, dict) else set()
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return attrs


_DECIMALS = ("quantity", "price", "notional", "filled_quantity", "avg_fill_price", "fees")


class OrderSerializer(FieldsBuiltOnceMixin, serializers.ModelSerializer[Order]):
    class Meta:
        model = Order
        fields = (
            "id", "client_order_id", "exchange", "exchange_order_id", "instrument", "instrument_type", "side",
            "outcome", "order_type", "time_in_force", "post_only", "quantity", "price", "notional", "status",
            "filled_quantity", "avg_fill_price", "fees", "fee_currency", "error_code", "error_message",
            "created_at", "submitted_at", "updated_at", "closed_at", "cancel_requested_at",
        )  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {name: {"normalize_output": True} for name in _DECIMALS}


class ExecutionSerializer(FieldsBuiltOnceMixin, serializers.ModelSerializer[OrderExecution]):
    order_id = serializers.UUIDField(read_only=True)
    exchange_exec_id = serializers.CharField(read_only=True)

    class Meta:
        model = OrderExecution
        fields = (
            "id", "order_id", "exchange", "exchange_exec_id", "instrument", "side", "outcome", "quantity",
            "price", "fee", "fee_currency", "liquidity", "executed_at", "created_at",
        )  # fmt: skip
        read_only_fields = fields
        extra_kwargs = {name: {"normalize_output": True} for name in ("quantity", "price", "fee")}


class CancelAllOutputSerializer(serializers.Serializer[Any]):
    requested = serializers.IntegerField()
    cancelled = serializers.ListField(child=serializers.UUIDField())
    filled = serializers.ListField(child=serializers.UUIDField())
    pending = serializers.ListField(child=serializers.UUIDField())
    failed = serializers.ListField(child=serializers.DictField())
