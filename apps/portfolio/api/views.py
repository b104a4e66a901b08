"""Portfolio API (architecture 2.3). Read-only; views parse, call one selector, render."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.portfolio import performance, selectors
from apps.portfolio.api.serializers import (
    BalancesSerializer,
    PerformanceQuerySerializer,
    PerformanceSerializer,
    PositionSerializer,
    PositionsQuerySerializer,
    PositionsSerializer,
    SummarySerializer,
)
from apps.portfolio.constants import PERFORMANCE_RANGES, PNL_METHODS
from apps.portfolio.exceptions import PositionNotFound
from apps.portfolio.pnl import Method

METHOD_PARAM = OpenApiParameter(
    "method", str, enum=list(PNL_METHODS), required=False, description="P&L method (default: average cost)"
)


def _method(request: Request) -> tuple[Method, str]:
    query = PositionsQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    method: Method = query.validated_data.get("method") or settings.K2_PORTFOLIO_PNL_METHOD
    return method, query.validated_data["status"]


class PortfolioSummaryApi(APIView):
    """Total value in the display currency, allocation, day change and per-venue freshness."""

    @extend_schema(responses=SummarySerializer, operation_id="portfolio_summary")
    def get(self, request: Request) -> Response:
        portfolio = selectors.portfolio_get(user=request.user)
        day_change = performance.day_change_get(portfolio=portfolio)
        data = selectors.portfolio_summary(portfolio, day_change=day_change)
        return Response(SummarySerializer(data).data)


class PortfolioBalancesApi(APIView):
    """Per venue, per currency: total, available, on hold (and the USD value)."""

    @extend_schema(responses=BalancesSerializer, operation_id="portfolio_balances")
    def get(self, request: Request) -> Response:
        portfolio = selectors.portfolio_get(user=request.user)
        data = {"balances": portfolio.balances, "venues": selectors.venue_statuses(portfolio)}
        return Response(BalancesSerializer(data).data)


class PortfolioPositionsApi(APIView):
    """Crypto holdings and event positions with cost basis, realised/unrealised P&L and fees."""

    @extend_schema(
        parameters=[
            METHOD_PARAM,
            OpenApiParameter("status", str, enum=["open", "closed", "settled", "all"], required=False),
        ],
        responses=PositionsSerializer,
        operation_id="portfolio_positions",
    )
    def get(self, request: Request) -> Response:
        method, status = _method(request)
        portfolio = selectors.portfolio_get(user=request.user, method=method)
        rows = [p for p in portfolio.positions if status == "all" or p.status == status]
        data: dict[str, Any] = {"positions": rows, "venues": selectors.venue_statuses(portfolio)}
        return Response(PositionsSerializer(data).data)


class PortfolioPositionDetailApi(APIView):
    """One position, by instrument (`BTC-USD`, a Kalshi market ticker)."""

    @extend_schema(parameters=[METHOD_PARAM], responses=PositionSerializer, operation_id="portfolio_position")
    def get(self, request: Request, instrument: str) -> Response:
        method, _ = _method(request)
        portfolio = selectors.portfolio_get(user=request.user, method=method)
        symbol = instrument.strip().upper()
        rows = [p for p in portfolio.positions if p.instrument.upper() == symbol]
        if not rows:
            raise PositionNotFound(details={"instrument": instrument})
        return Response(PositionSerializer(rows[0]).data)


class PortfolioPerformanceApi(APIView):
    """A value series over `range` and its return figures (derived; see the README)."""

    @extend_schema(
        parameters=[OpenApiParameter("range", str, enum=list(PERFORMANCE_RANGES), required=False)],
        responses=PerformanceSerializer,
        operation_id="portfolio_performance",
    )
    def get(self, request: Request) -> Response:
        query = PerformanceQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        portfolio = selectors.portfolio_get(user=request.user)
        data = performance.performance_get(portfolio=portfolio, range_name=query.validated_data["range"])
        data["venues"] = selectors.venue_statuses(portfolio)
        return Response(PerformanceSerializer(data).data)
