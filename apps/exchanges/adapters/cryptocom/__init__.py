"""The Crypto.com Exchange v1 venue: `CryptocomAdapter(credentials=..., base_url=...)`."""

from apps.exchanges.adapters.cryptocom.adapter import (
    CAPABILITIES,
    PRODUCTION_REST_URL,
    UAT_REST_URL,
    CryptocomAdapter,
    CryptocomSettings,
)
from apps.exchanges.adapters.cryptocom.client import RestSettings
from apps.exchanges.adapters.cryptocom.websocket import StreamSettings

__all__ = [
    "CAPABILITIES",
    "PRODUCTION_REST_URL",
    "UAT_REST_URL",
    "CryptocomAdapter",
    "CryptocomSettings",
    "RestSettings",
    "StreamSettings",
]
