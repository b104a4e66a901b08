"""WebSocket Origin allowlist (cross-site WebSocket hijacking protection).

Browsers always send `Origin`; a page on another site must not open a socket with the user's
credentials. Allowed: exact origins from `K2_WS_ALLOWED_ORIGINS` (`https://app.example.com`),
wildcard hosts (`https://*.example.com`) or `*`. Clients that send no `Origin` (mobile apps,
servers) are allowed when `K2_WS_ALLOW_NO_ORIGIN` is on. A refused upgrade gets HTTP 403.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from django.conf import settings

from k2.observability.logging import get_logger

log = get_logger(__name__)


def origin_allowed(origin: str | None) -> bool:
    if origin is None:
        return bool(settings.K2_WS_ALLOW_NO_ORIGIN)
    value = origin.strip().lower().rstrip("/")
    for pattern in settings.K2_WS_ALLOWED_ORIGINS:
        allowed = pattern.strip().lower().rstrip("/")
        if allowed == "*" or allowed == value or ("*" in allowed and fnmatch.fnmatchcase(value, allowed)):
            return True
    return False


class OriginAllowlistMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope.get("type") == "websocket":
            origin = None
            for name, value in scope.get("headers", []):
                if name == b"origin":
                    origin = value.decode("latin-1")
                    break
            if not origin_allowed(origin):
                log.info("ws_origin_refused", origin=origin, path=scope.get("path"))
                message = await receive()
                if message.get("type") == "websocket.connect":
                    await send({"type": "websocket.close", "code": 4403})
                return None
        return await self.app(scope, receive, send)
