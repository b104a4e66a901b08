"""WebSocket routing. Apps add their consumers' URL patterns to `websocket_urlpatterns`.

Every socket passes the Origin allowlist (`K2_WS_ALLOWED_ORIGINS`) first.
"""

from typing import Any

from channels.routing import URLRouter

from apps.marketdata.routing import websocket_urlpatterns as marketdata_websocket_urlpatterns
from apps.marketdata.ws.security import OriginAllowlistMiddleware

websocket_urlpatterns: list[Any] = [
    *marketdata_websocket_urlpatterns,
]

websocket_application = OriginAllowlistMiddleware(URLRouter(websocket_urlpatterns))
