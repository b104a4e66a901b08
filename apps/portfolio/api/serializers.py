"""Portfolio output shapes. Every amount is a decimal string (never a float); the shapes are
rendered from the selectors' dataclasses and dicts and drive the OpenAPI schema."""

from __future__ import annotations

from decimal import Context, Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.portfolio.constants import PERFORMANCE_RANGES, PNL_METHODS

EIGHT = Decimal("1E-8")


def money_text(value: Decimal | None) -> str | None:
    """Decimal -> plain string at DECIMAL(20,8) precision, trailing zeros dropped ("0.5", "100")."""
    if value is None:
        return None
    # Enough digits for the value at 8 places (the default 28 stop short of 1e20).
    context = Context(prec=max(28, value.adjusted() + 10))
    text = format(value.quantize(EIGHT, context=context), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(serializers.Field):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str | None:
        return money_text(value)


class VenueStatusSerializer(serializers.Serializer):
    venue = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["ok", "stale", "unavailable"],
        help_text="ok: answered now (or within the cache window); stale: last good answer served "
        "because the venue failed now; unavailable: failed and nothing cached",
    )
    error_code = serializers.CharField(allow_null=True)
    as_of = serializers.DateTimeField(allow_null=True, help_text="when the venue's data was read")
    age_seconds = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    prices_complete = serializers.BooleanField()


class AllocationVenueSerializer(serializers.Serializer):
    venue = serializers.CharField()
    value = MoneyField()
    percent = MoneyField()


class AllocationAssetSerializer(serializers.Serializer):
    asset = serializers.CharField()
    value = MoneyField()
    percent = MoneyField()


class AllocationTypeSerializer(serializers.Serializer):
    instrument_type = serializers.ChoiceField(choices=["cash", "crypto", "event"])
    value = MoneyField()
    percent = MoneyField()


class AllocationSerializer(serializers.Serializer):
    by_venue = AllocationVenueSerializer(many=True)
    by_asset = AllocationAssetSerializer(many=True)
    by_instrument_type = AllocationTypeSerializer(many=True)


class DayChangeSerializer(serializers.Serializer):
    value = MoneyField()
    percent = MoneyField()
    since = serializers.DateTimeField()


class UnpricedSerializer(serializers.Serializer):
    venue = serializers.CharField()
    currency = serializers.CharField()
    quantity = MoneyField()


class SummarySerializer(serializers.Serializer):
    currency = serializers.CharField(help_text="currency of every amount here")
    requested_currency = serializers.CharField(
        help_text="the user's display currency; differs from `currency` when no rate was available"
    )
    total_value = MoneyField()
    cash_value = MoneyField()
    unrealized_pnl = MoneyField()
    realized_pnl = MoneyField()
    fees = MoneyField()
    day_change = DayChangeSerializer(allow_null=True)
    allocation = AllocationSerializer()
    venues = VenueStatusSerializer(many=True)
    unpriced = UnpricedSerializer(many=True)
    as_of = serializers.DateTimeField()


class BalanceSerializer(serializers.Serializer):
    venue = serializers.CharField()
    currency = serializers.CharField()
    total = MoneyField()
    available = MoneyField()
    on_hold = MoneyField()
    price = MoneyField(help_text="USD per unit (null: no price)")
    value = MoneyField(help_text="USD value of `total`")
    venue_status = serializers.CharField()


class BalancesSerializer(serializers.Serializer):
    balances = BalanceSerializer(many=True)
    venues = VenueStatusSerializer(many=True)


class PositionSerializer(serializers.Serializer):
    venue = serializers.CharField()
    instrument = serializers.CharField()
    instrument_type = serializers.ChoiceField(choices=["crypto", "event"])
    asset = serializers.CharField()
    outcome = serializers.CharField(allow_null=True, help_text="event contracts: yes / no")
    status = serializers.ChoiceField(choices=["open", "closed", "settled"])
    quantity = MoneyField(help_text="held at the venue (contracts for events)")
    quantity_tracked = MoneyField(help_text="held according to K2's recorded executions")
    average_price = MoneyField(help_text="average cost per unit, fees included")
    price = MoneyField(help_text="latest price (events: for this outcome; settled: payout)")
    price_source = serializers.CharField(allow_null=True)
    market_value = MoneyField()
    cost_basis = MoneyField()
    cost_basis_source = serializers.CharField(allow_null=True)
    unrealized_pnl = MoneyField()
    realized_pnl = MoneyField()
    settlement_pnl = MoneyField()
    fees = MoneyField()
    max_payout = MoneyField(help_text="events: contracts x 1.00")
    market_status = serializers.CharField(allow_null=True)
    result = serializers.CharField(allow_null=True)
    title = serializers.CharField()
    venue_status = serializers.CharField()


class PositionsSerializer(serializers.Serializer):
    positions = PositionSerializer(many=True)
    venues = VenueStatusSerializer(many=True)


class PerformancePointSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    value = MoneyField()
    complete = serializers.BooleanField(help_text="false: some holding had no price at that time")


class PerformanceSerializer(serializers.Serializer):
    range = serializers.CharField()
    currency = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    interval_seconds = serializers.IntegerField()
    method = serializers.CharField(help_text="derived: rebuilt from executions and candles")
    points = PerformancePointSerializer(many=True)
    start_value = MoneyField()
    end_value = MoneyField()
    change = MoneyField()
    change_percent = MoneyField()
    high = MoneyField()
    low = MoneyField()
    max_drawdown_percent = MoneyField()
    realized_pnl = MoneyField()
    settlement_pnl = MoneyField()
    fees = MoneyField()
    venues = VenueStatusSerializer(many=True)


class PerformanceQuerySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=PERFORMANCE_RANGES, default="1m")

    def to_internal_value(self, data: Any) -> Any:
        # A present but empty `?range=` is a mistake, not a request for the default.
        if hasattr(data, "get") and data.get("range") == "":
            raise serializers.ValidationError({"range": ['"" is not a valid choice.']})
        return super().to_internal_value(data)


class PositionsQuerySerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=PNL_METHODS, required=False)
    status = serializers.ChoiceField(choices=["open", "closed", "settled", "all"], default="all")
