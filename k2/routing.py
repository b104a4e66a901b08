"""WebSocket routing. Apps add their consumers' URL patterns to `websocket_urlpatterns`."""

from typing import Any

from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator

websocket_urlpatterns: list[Any] = []

websocket_application = AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns))
