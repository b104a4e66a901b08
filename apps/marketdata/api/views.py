from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.marketdata import selectors, services
from apps.marketdata.api.serializers import (
    CandleQuerySerializer,
    InstrumentSerializer,
    PriceSerializer,
    WatchlistCopySerializer,
    WatchlistCreateSerializer,
    WatchlistItemAddSerializer,
    WatchlistOutSerializer,
    WatchlistUpdateSerializer,
    candle_data,
    price_data,
    share_url,
    watchlist_data,
)
from apps.marketdata.choices import CandleInterval, InstrumentStatus, InstrumentType
from apps.marketdata.models import Instrument, Watchlist
from k2.api.exceptions import ValidationFailed

MAX_BATCH_PRICES = 100


# ---- instruments ----------------------------------------------------------------------------


class InstrumentFilter(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(field_name="instrument_type", choices=InstrumentType.choices)
    venue = django_filters.CharFilter(field_name="venue")
    status = django_filters.ChoiceFilter(field_name="status", choices=InstrumentStatus.choices)
    event_ticker = django_filters.CharFilter(field_name="event_ticker")
    q = django_filters.CharFilter(method="search", max_length=100)

    class Meta:
        model = Instrument
        fields: list[str] = []

    def search(self, queryset: QuerySet[Instrument], name: str, value: str) -> QuerySet[Instrument]:
        return selectors.instrument_list(q=value).filter(pk__in=queryset.values("pk")) if value else queryset


class InstrumentListApi(ListAPIView[Instrument]):
    """Instruments of every venue: `?type=crypto|event&venue=&status=&q=` (symbol, base, title,
    event or series), cursor-paginated, `?sort=symbol|-symbol|venue|instrument_type`."""

    serializer_class = InstrumentSerializer
    filterset_class = InstrumentFilter
    ordering = ("symbol",)
    sort_fields = ("symbol", "venue", "instrument_type", "created_at")

    def get_queryset(self) -> QuerySet[Instrument]:
        return selectors.instrument_list()


class InstrumentDetailApi(APIView):
    @extend_schema(responses=InstrumentSerializer, operation_id="instrument_get")
    def get(self, request: Request, symbol: str) -> Response:
        return Response(InstrumentSerializer(selectors.instrument_get(symbol=symbol)).data)


# ---- prices ---------------------------------------------------------------------------------


class PriceApi(APIView):
    @extend_schema(responses=PriceSerializer, operation_id="price_get")
    def get(self, request: Request, symbol: str) -> Response:
        instrument = selectors.instrument_get(symbol=symbol)
        prices = selectors.prices_get(instruments=[instrument])
        return Response(price_data(instrument, prices.get(instrument.symbol)))


class PriceBatchApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("instruments", str, required=True, description="comma-separated")],
        responses=PriceSerializer(many=True),
        operation_id="price_batch",
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("instruments", "")
        symbols = [s for s in (part.strip() for part in raw.split(",")) if s]
        if not symbols:
            raise ValidationFailed(
                details={"fields": {"instruments": ["Give ?instruments=BTC-USD,ETH-USD."]}}
            )
        if len(symbols) > MAX_BATCH_PRICES:
            raise ValidationFailed(
                details={"fields": {"instruments": [f"At most {MAX_BATCH_PRICES} instruments per request."]}}
            )
        instruments = selectors.instruments_resolve(symbols=symbols)
        prices = selectors.prices_get(instruments=instruments)
        return Response([price_data(i, prices.get(i.symbol)) for i in instruments])


# ---- candles --------------------------------------------------------------------------------


class CandleListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("interval", str, enum=list(CandleInterval.values)),
            OpenApiParameter("start", str, description="ISO 8601 or Unix seconds (inclusive)"),
            OpenApiParameter("end", str, description="ISO 8601 or Unix seconds (exclusive); default now"),
            OpenApiParameter("limit", int, description="buckets when start or end is missing (default 100)"),
        ],
        responses=inline_serializer(
            "CandleList",
            {
                "instrument": serializers.CharField(),
                "interval": serializers.CharField(),
                "start": serializers.DateTimeField(),
                "end": serializers.DateTimeField(),
                "candles": inline_serializer(
                    "CandleRow",
                    {
                        "start": serializers.DateTimeField(),
                        "open": serializers.CharField(),
                        "high": serializers.CharField(),
                        "low": serializers.CharField(),
                        "close": serializers.CharField(),
                        "volume": serializers.CharField(),
                        "trades": serializers.IntegerField(),
                    },
                    many=True,
                ),
            },
        ),
        operation_id="candle_list",
    )
    def get(self, request: Request, symbol: str) -> Response:
        instrument = selectors.instrument_get(symbol=symbol)
        query = CandleQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        candles = selectors.candle_list(
            instrument=instrument, interval=params["interval"], start=params["start"], end=params["end"]
        )
        return Response(
            {
                "instrument": instrument.symbol,
                "interval": params["interval"],
                "start": params["start"],
                "end": params["end"],
                "candles": [candle_data(c, instrument) for c in candles],
            }
        )


# ---- watchlists -----------------------------------------------------------------------------


def _one(watchlist: Watchlist, *, owner_view: bool = True) -> dict[str, Any]:
    return watchlist_data(
        watchlist, selectors.watchlist_prices(watchlists=[watchlist]), owner_view=owner_view
    )


class WatchlistListCreateApi(ListAPIView[Watchlist]):
    ordering = ("created_at",)
    sort_fields = ("created_at", "name")
    serializer_class = WatchlistOutSerializer  # type: ignore[assignment]  # output shape (schema)

    def get_queryset(self) -> QuerySet[Watchlist]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Watchlist.objects.none()
        return selectors.watchlist_list(user=self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        prices = selectors.watchlist_prices(watchlists=rows)
        data = [watchlist_data(w, prices) for w in rows]
        return self.get_paginated_response(data) if page is not None else Response(data)

    @extend_schema(request=WatchlistCreateSerializer, responses={201: WatchlistOutSerializer})
    def post(self, request: Request) -> Response:
        body = WatchlistCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = services.watchlist_create(user=request.user, **body.validated_data)
        watchlist = selectors.watchlist_get(user=request.user, watchlist_id=created.id)
        return Response(_one(watchlist), status=status.HTTP_201_CREATED)


class WatchlistDetailApi(APIView):
    @extend_schema(responses=WatchlistOutSerializer, operation_id="watchlist_get")
    def get(self, request: Request, watchlist_id: Any) -> Response:
        return Response(_one(selectors.watchlist_get(user=request.user, watchlist_id=watchlist_id)))

    @extend_schema(request=WatchlistUpdateSerializer, responses=WatchlistOutSerializer)
    def patch(self, request: Request, watchlist_id: Any) -> Response:
        body = WatchlistUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.watchlist_update(user=request.user, watchlist_id=watchlist_id, **body.validated_data)
        return Response(_one(selectors.watchlist_get(user=request.user, watchlist_id=watchlist_id)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, watchlist_id: Any) -> Response:
        services.watchlist_delete(user=request.user, watchlist_id=watchlist_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistItemAddApi(APIView):
    @extend_schema(request=WatchlistItemAddSerializer, responses={201: WatchlistOutSerializer})
    def post(self, request: Request, watchlist_id: Any) -> Response:
        body = WatchlistItemAddSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.watchlist_item_add(
            user=request.user,
            watchlist_id=watchlist_id,
            symbol=body.validated_data["instrument"],
            position=body.validated_data.get("position"),
        )
        watchlist = selectors.watchlist_get(user=request.user, watchlist_id=watchlist_id)
        return Response(_one(watchlist), status=status.HTTP_201_CREATED)


class WatchlistItemRemoveApi(APIView):
    @extend_schema(responses=WatchlistOutSerializer)
    def delete(self, request: Request, watchlist_id: Any, symbol: str) -> Response:
        services.watchlist_item_remove(user=request.user, watchlist_id=watchlist_id, symbol=symbol)
        return Response(_one(selectors.watchlist_get(user=request.user, watchlist_id=watchlist_id)))


class WatchlistShareApi(APIView):
    @extend_schema(
        request=None,
        responses=inline_serializer(
            "WatchlistShare", {"share_token": serializers.CharField(), "share_url": serializers.CharField()}
        ),
    )
    def post(self, request: Request, watchlist_id: Any) -> Response:
        watchlist = services.watchlist_share(user=request.user, watchlist_id=watchlist_id)
        token = watchlist.share_token or ""
        return Response({"share_token": token, "share_url": share_url(token)})

    @extend_schema(responses={204: None})
    def delete(self, request: Request, watchlist_id: Any) -> Response:
        services.watchlist_unshare(user=request.user, watchlist_id=watchlist_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SharedWatchlistApi(APIView):
    """Read-only view of a shared list by its token; needs no account (revoking the token
    ends access at once). The owner is not disclosed."""

    permission_classes = [AllowAny]

    @extend_schema(responses=WatchlistOutSerializer, operation_id="watchlist_shared_get")
    def get(self, request: Request, token: str) -> Response:
        return Response(_one(selectors.watchlist_get_shared(token=token), owner_view=False))


class SharedWatchlistCopyApi(APIView):
    @extend_schema(request=WatchlistCopySerializer, responses={201: WatchlistOutSerializer})
    def post(self, request: Request, token: str) -> Response:
        body = WatchlistCopySerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        copy = services.watchlist_copy(user=request.user, token=token, name=body.validated_data.get("name"))
        watchlist = selectors.watchlist_get(user=request.user, watchlist_id=copy.id)
        return Response(_one(watchlist), status=status.HTTP_201_CREATED)
