from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.marketdata.cache import PriceSnapshot
from apps.marketdata.choices import INTERVAL_SECONDS, CandleInterval
from apps.marketdata.models import Candle, Instrument, Watchlist
from apps.marketdata.selectors import price_or_placeholder


def plain(value: Decimal | None, step: Decimal | None = None) -> str | None:
    """A decimal as a plain string: to the instrument's step when given, else without padding."""
    if value is None:
        return None
    if step is not None and step > 0:
        return format(value.quantize(step.normalize()), "f")
    normal = value.normalize()
    return format(normal, "f") if normal != 0 else "0"


@extend_schema_field(OpenApiTypes.STR)
class PlainDecimalField(serializers.Field):
    """A decimal as a plain string without exponent or trailing zeros ("0.01", "1")."""

    def to_representation(self, value: Decimal) -> str | None:
        return plain(value)


class InstrumentSerializer(serializers.ModelSerializer[Instrument]):
    tick_size = PlainDecimalField()
    quantity_step = PlainDecimalField()
    min_quantity = PlainDecimalField()

    class Meta:
        model = Instrument
        fields = (
            "symbol", "instrument_type", "venue", "venue_symbol", "base", "quote", "tick_size",
            "quantity_step", "min_quantity", "status", "event_ticker", "series_ticker", "title",
            "close_time", "settle_time", "result", "synced_at",
        )  # fmt: skip
        read_only_fields = fields


class PriceSerializer(serializers.Serializer[dict[str, Any]]):
    """Documentation of the price shape (the data comes straight from the cache)."""

    instrument = serializers.CharField()
    venue = serializers.CharField()
    price = serializers.CharField(allow_null=True, help_text="last trade price")
    bid = serializers.CharField(allow_null=True)
    ask = serializers.CharField(allow_null=True)
    bid_size = serializers.CharField(allow_null=True)
    ask_size = serializers.CharField(allow_null=True)
    change_24h = serializers.CharField(allow_null=True, help_text="24 h change in percent")
    volume_24h = serializers.CharField(allow_null=True)
    high_24h = serializers.CharField(allow_null=True)
    low_24h = serializers.CharField(allow_null=True)
    timestamp = serializers.CharField(allow_null=True)
    seq = serializers.IntegerField(help_text="the instrument's feed sequence")
    stale = serializers.BooleanField()


def price_data(instrument: Instrument, snap: PriceSnapshot | None) -> dict[str, Any]:
    return price_or_placeholder(instrument, snap)


class EpochOrIsoDateTimeField(serializers.DateTimeField):
    """ISO 8601, or Unix seconds/milliseconds."""

    def to_internal_value(self, value: Any) -> datetime:
        text = str(value).strip()
        if text.isdigit():
            number = int(text)
            if number > 10**11:
                number //= 1000
            try:
                return datetime.fromtimestamp(number, tz=UTC)
            except (OverflowError, OSError, ValueError):
                self.fail("invalid", format="ISO 8601 or Unix seconds")
        return super().to_internal_value(value)


class CandleQuerySerializer(serializers.Serializer[dict[str, Any]]):
    interval = serializers.ChoiceField(choices=CandleInterval.choices, default=CandleInterval.M1)
    start = EpochOrIsoDateTimeField(required=False)
    end = EpochOrIsoDateTimeField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        seconds = INTERVAL_SECONDS[attrs["interval"]]
        maximum = settings.K2_MARKETDATA_MAX_CANDLES
        limit = min(attrs.get("limit") or 100, maximum)
        end = attrs.get("end")
        start = attrs.get("start")
        if end is None:
            end = datetime.now(tz=UTC) if start is None else None
        try:  # a window running off the calendar (before year 1, after 9999) is bad input
            if start is None and end is not None:
                start = datetime.fromtimestamp(end.timestamp() - seconds * limit, tz=UTC)
            if end is None:
                assert start is not None
                end = datetime.fromtimestamp(start.timestamp() + seconds * limit, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise serializers.ValidationError(
                {"start": ["The window runs past the supported dates; give both 'start' and 'end'."]}
            ) from None
        assert start is not None
        if start >= end:
            raise serializers.ValidationError({"start": ["'start' must be before 'end'."]})
        if (end - start).total_seconds() / seconds > maximum:
            raise serializers.ValidationError(
                {"start": [f"At most {maximum} {attrs['interval']} candles per request; narrow the range."]}
            )
        attrs["start"], attrs["end"] = start, end
        return attrs


def candle_data(candle: Candle, instrument: Instrument) -> dict[str, Any]:
    tick, step = instrument.tick_size, instrument.quantity_step
    return {
        "start": candle.start,
        "open": plain(candle.open, tick),
        "high": plain(candle.high, tick),
        "low": plain(candle.low, tick),
        "close": plain(candle.close, tick),
        "volume": plain(candle.volume, step),
        "trades": candle.trade_count,
    }


# ---- watchlists -----------------------------------------------------------------------------


class WatchlistCreateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=100, allow_blank=False, trim_whitespace=True)
    instruments = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, default=list, allow_empty=True
    )


class WatchlistUpdateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=100, allow_blank=False, trim_whitespace=True, required=False)
    instruments = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, allow_empty=True
    )


class WatchlistItemAddSerializer(serializers.Serializer[dict[str, Any]]):
    instrument = serializers.CharField(max_length=100)
    position = serializers.IntegerField(required=False, min_value=0)


class WatchlistCopySerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=100, required=False, allow_blank=False, trim_whitespace=True)


def share_url(token: str) -> str:
    return f"{settings.K2_PUBLIC_URL.rstrip('/')}/v1/watchlists/shared/{token}"


def watchlist_data(
    watchlist: Watchlist, prices: dict[str, PriceSnapshot | None], *, owner_view: bool = True
) -> dict[str, Any]:
    items = []
    for item in watchlist.items.all():
        instrument = item.instrument
        items.append(
            {
                "instrument": instrument.symbol,
                "instrument_type": instrument.instrument_type,
                "venue": instrument.venue,
                "status": instrument.status,
                "position": item.position,
                "added_at": item.added_at,
                "price": price_data(instrument, prices.get(instrument.symbol)),
            }
        )
    data: dict[str, Any] = {"id": watchlist.id, "name": watchlist.name, "items": items}
    if owner_view:
        data.update(
            {
                "shared": bool(watchlist.share_token),
                "share_token": watchlist.share_token,
                "share_url": share_url(watchlist.share_token) if watchlist.share_token else None,
                "copied_from": watchlist.copied_from_id,
                "created_at": watchlist.created_at,
                "updated_at": watchlist.updated_at,
            }
        )
    return data


class WatchlistItemOutSerializer(serializers.Serializer[dict[str, Any]]):
    instrument = serializers.CharField()
    instrument_type = serializers.CharField()
    venue = serializers.CharField()
    status = serializers.CharField()
    position = serializers.IntegerField()
    added_at = serializers.DateTimeField()
    price = PriceSerializer()


class WatchlistOutSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    items = WatchlistItemOutSerializer(many=True)
    shared = serializers.BooleanField(required=False)
    share_token = serializers.CharField(allow_null=True, required=False)
    share_url = serializers.CharField(allow_null=True, required=False)
    copied_from = serializers.UUIDField(allow_null=True, required=False)
    created_at = serializers.DateTimeField(required=False)
    updated_at = serializers.DateTimeField(required=False)
