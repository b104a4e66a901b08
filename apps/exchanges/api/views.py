from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.exchanges import selectors, services
from apps.exchanges.api.serializers import (
    ExchangeLinkSerializer,
    LinkCallbackInputSerializer,
    LinkInitiateOutputSerializer,
)
from apps.exchanges.models import ExchangeLink
from apps.exchanges.venues import VENUES, venue_spec
from k2.api.exceptions import NotFoundError

VENUE_PARAM = OpenApiParameter("venue", str, OpenApiParameter.PATH, enum=list(VENUES))


def _known_venue(venue: str) -> str:
    if venue not in VENUES:
        raise NotFoundError(f"Unknown venue {venue!r}.", details={"venues": list(VENUES)})
    return venue


class LinkInitiateApi(APIView):
    @extend_schema(
        parameters=[VENUE_PARAM], responses=LinkInitiateOutputSerializer, operation_id="link_initiate"
    )
    def get(self, request: Request, venue: str) -> Response:
        data = services.exchange_link_initiate(user=request.user, venue=_known_venue(venue))
        return Response(LinkInitiateOutputSerializer(data).data)


class LinkCallbackApi(APIView):
    """Completes a link. POST only: credentials never travel in a URL (logs, proxies, history)."""

    @extend_schema(
        parameters=[VENUE_PARAM],
        request=inline_serializer(
            "LinkCallbackInput",
            {
                "state": serializers.CharField(),
                "api_key": serializers.CharField(required=False),
                "api_secret": serializers.CharField(required=False),
                "api_key_id": serializers.CharField(required=False),
                "private_key": serializers.CharField(required=False),
            },
        ),
        responses={201: ExchangeLinkSerializer},
        operation_id="link_callback",
    )
    def post(self, request: Request, venue: str) -> Response:
        spec = venue_spec(_known_venue(venue))
        key_field, secret_field = spec.credential_fields
        raw: Any = request.data if isinstance(request.data, dict) else {}
        serializer = LinkCallbackInputSerializer(
            data={
                "state": raw.get("state"),
                "key": raw.get(key_field.name),
                "secret": raw.get(secret_field.name),
            }
        )
        if not serializer.is_valid():
            renamed = {"key": key_field.name, "secret": secret_field.name}
            raise serializers.ValidationError(
                {renamed.get(str(k), str(k)): v for k, v in serializer.errors.items()}
            )
        data = serializer.validated_data
        link = services.exchange_link_complete(
            user=request.user, venue=venue, state=data["state"], key=data["key"], secret=data["secret"]
        )
        return Response(ExchangeLinkSerializer(link).data, status=status.HTTP_201_CREATED)


class ExchangeLinkListApi(ListAPIView[ExchangeLink]):
    serializer_class = ExchangeLinkSerializer
    pagination_class = None
    filter_backends: list[Any] = []

    def get_queryset(self) -> Any:
        return selectors.exchange_link_list(user=self.request.user)


class ExchangeLinkRevokeApi(APIView):
    @extend_schema(responses={204: None}, operation_id="exchange_link_revoke")
    def delete(self, request: Request, link_id: str) -> Response:
        services.exchange_link_revoke(user=request.user, link_id=link_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
