"""Orders and trades API (architecture 2.2). Views parse, call one service or selector, render."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.trading import selectors, services
from apps.trading.api.filters import OrderFilter, TradeFilter
from apps.trading.api.serializers import (
    CancelAllOutputSerializer,
    ExecutionSerializer,
    OrderCreateInputSerializer,
    OrderSerializer,
)
from apps.trading.choices import OrderStatus
from apps.trading.exceptions import IdempotencyKeyMismatch
from apps.trading.models import Order, OrderExecution
from k2.api.exceptions import ValidationFailed

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False, description="same as client_order_id"
)
ORDER_SORT_FIELDS = ("created_at", "updated_at", "submitted_at", "quantity", "price", "status", "instrument")


class OrderListCreateApi(ListAPIView[Order]):
    """GET: the user's orders. POST: place an order. DELETE: cancel the user's live orders."""

    serializer_class = OrderSerializer
    filterset_class = OrderFilter
    sort_fields = ORDER_SORT_FIELDS
    ordering = ("-created_at",)

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Order.objects.none()
        return selectors.order_list(user=self.request.user)

    @extend_schema(
        request=OrderCreateInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: OrderSerializer, 200: OrderSerializer},
        operation_id="order_place",
    )
    def post(self, request: Request) -> Response:
        serializer = OrderCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        header = request.headers.get("Idempotency-Key")
        if header is not None:
            header = header.strip()
            field = OrderCreateInputSerializer().fields["client_order_id"]
            try:
                field.run_validation(header)
            except Exception:
                raise ValidationFailed(
                    details={"fields": {"Idempotency-Key": ["1-50 of A-Z a-z 0-9 . _ : -"]}}
                ) from None
            if data.get("client_order_id") and data["client_order_id"] != header:
                raise IdempotencyKeyMismatch(
                    details={"header": header, "client_order_id": data["client_order_id"]}
                )
            data["client_order_id"] = header
        result = services.order_place(
            user=request.user,
            data=services.OrderInput(
                instrument=data["instrument"],
                side=data["side"],
                order_type=data["order_type"],
                quantity=data["quantity"],
                price=data.get("price"),
                outcome=data.get("outcome") or "",
                time_in_force=data.get("time_in_force") or "gtc",
                post_only=bool(data.get("post_only")),
                client_order_id=data.get("client_order_id"),
            ),
        )
        if result.order.status == OrderStatus.REJECTED:
            raise services.order_rejection_error(result.order)
        response = Response(
            OrderSerializer(result.order).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )
        if not result.created:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        parameters=[
            OpenApiParameter("instrument", str, required=False),
            OpenApiParameter("exchange", str, required=False),
            OpenApiParameter("all", bool, required=False, description="required when no filter is given"),
        ],
        responses={200: CancelAllOutputSerializer},
        operation_id="orders_cancel_all",
    )
    def delete(self, request: Request) -> Response:
        instrument = request.query_params.get("instrument") or None
        exchange = request.query_params.get("exchange") or None
        everything = request.query_params.get("all") in ("true", "1")
        if not (instrument or exchange or everything):
            raise ValidationFailed(
                "Say what to cancel: ?instrument=, ?exchange= or ?all=true.",
                details={"fields": {"instrument": ["instrument, exchange or all=true is required"]}},
            )
        if (instrument and len(instrument) > 100) or (exchange and len(exchange) > 50):
            raise ValidationFailed(details={"fields": {"instrument": ["too long"]}})
        summary = services.orders_cancel_all(user=request.user, instrument=instrument, exchange=exchange)
        return Response(CancelAllOutputSerializer(summary).data)


class OrderDetailApi(APIView):
    @extend_schema(responses=OrderSerializer, operation_id="order_get")
    def get(self, request: Request, order_id: Any) -> Response:
        return Response(OrderSerializer(selectors.order_get(user=request.user, order_id=order_id)).data)

    @extend_schema(
        responses={
            200: OrderSerializer,
            202: OpenApiResponse(OrderSerializer, "cancel sent, not yet confirmed"),
        },
        operation_id="order_cancel",
    )
    def delete(self, request: Request, order_id: Any) -> Response:
        order = services.order_cancel(user=request.user, order_id=order_id)
        done = order.status == OrderStatus.CANCELLED or order.status in (
            OrderStatus.FILLED,
            OrderStatus.REJECTED,
        )
        return Response(
            OrderSerializer(order).data, status=status.HTTP_200_OK if done else status.HTTP_202_ACCEPTED
        )


class OrderExecutionListApi(ListAPIView[OrderExecution]):
    serializer_class = ExecutionSerializer
    filter_backends: list[Any] = []
    pagination_class = None

    def get_queryset(self) -> QuerySet[OrderExecution]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return OrderExecution.objects.none()
        order = selectors.order_get(user=self.request.user, order_id=self.kwargs["order_id"])
        return selectors.execution_list(order=order)


class TradeListApi(ListAPIView[OrderExecution]):
    """The user's fills across venues."""

    serializer_class = ExecutionSerializer
    filterset_class = TradeFilter
    sort_fields = ("executed_at", "created_at", "price", "quantity")
    ordering = ("-executed_at",)

    def get_queryset(self) -> QuerySet[OrderExecution]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return OrderExecution.objects.none()
        return selectors.trade_list(user=self.request.user)
