"""Test-only endpoints exercising the platform's API conventions (mounted by tests/k2/urls.py)."""

from __future__ import annotations

import threading

from rest_framework import permissions, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from k2.api.exceptions import ConflictError
from k2.api.throttling import AnonRateThrottle
from k2.audit.models import AuditEntry


class EchoSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=10)
    amount = serializers.DecimalField(max_digits=20, decimal_places=8)


class EchoView(APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request):
        serializer = EchoSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(EchoSerializer(serializer.validated_data).data, status=201)


class BoomView(APIView):
    permission_classes = [permissions.AllowAny]

    def get(self, request):
        raise RuntimeError("internal detail: db password hunter2 at /srv/k2/secret.py")


class ProtectedView(APIView):
    def get(self, request):
        return Response({"ok": True})


class ForbiddenView(APIView):
    permission_classes = [permissions.AllowAny]

    def get(self, request):
        raise PermissionDenied()


class ConflictView(APIView):
    permission_classes = [permissions.AllowAny]

    def get(self, request):
        raise ConflictError("Already done.", details={"limit": "5", "attempted": "6"}, code="TEST_CONFLICT")


class TwoPerMinute(AnonRateThrottle):
    rate = "2/min"
    scope = "test-two"


class ThrottledView(APIView):
    permission_classes = [permissions.AllowAny]
    throttle_classes = [TwoPerMinute]

    def get(self, request):
        return Response({"ok": True})


class EntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ("id", "action", "created_at")


class EntryListView(ListAPIView):
    permission_classes = [permissions.AllowAny]
    serializer_class = EntrySerializer
    queryset = AuditEntry.objects.all()
    sort_fields = ("created_at", "action")
    filterset_fields = ("action",)


RENDEZVOUS = threading.Barrier(2, timeout=5)


class RendezvousView(APIView):
    """Answers once a second request has arrived too: only if requests run side by side."""

    permission_classes = [permissions.AllowAny]

    def get(self, request):
        RENDEZVOUS.wait()
        return Response({"met": True})
