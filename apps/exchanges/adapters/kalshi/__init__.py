"""The Kalshi Trade API v2 venue: `KalshiAdapter(credentials=..., base_url=..., ws_url=...)`."""

from apps.exchanges.adapters.kalshi.adapter import (
    CAPABILITIES,
    DEMO_REST_URL,
    PRODUCTION_REST_URL,
    KalshiAdapter,
    KalshiSettings,
    ws_url_for,
)
from apps.exchanges.adapters.kalshi.client import RestSettings
from apps.exchanges.adapters.kalshi.websocket import StreamSettings

__all__ = [
    "CAPABILITIES",
    "DEMO_REST_URL",
    "PRODUCTION_REST_URL",
    "KalshiAdapter",
    "KalshiSettings",
    "RestSettings",
    "StreamSettings",
    "ws_url_for",
]
