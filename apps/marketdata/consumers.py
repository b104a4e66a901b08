"""`/ws/prices`: the one client WebSocket (prices now; order updates and notifications too).

Protocol (every server frame carries `channel` and a per-channel `seq`; see README):

    client                                              server
    (upgrade with `Authorization: Bearer <access>`)  -> rejected (HTTP 403) if the token is bad
    {"type":"auth","token":"<access>"}               -> {"type":"authenticated",...} (or error + close 4401)
    {"type":"subscribe","channel":"prices",
     "instruments":["BTC-USD"]}                      -> {"type":"subscribed",...}, then one price per
                                                        instrument with "snapshot":true, then live prices
    {"type":"unsubscribe","channel":"prices",
     "instruments":[...]} (no list = all)            -> {"type":"unsubscribed",...}
    {"type":"ping"}                                  -> {"type":"pong"}
                                                     <- {"type":"heartbeat"}, {"type":"status",...},
                                                        {"type":"order_update",...} (channel "orders")

Bad input gets `{"type":"error","code","message","details"}` and the socket stays open (a
server fault handling a message answers `INTERNAL_ERROR`, also without closing). The token goes
in the upgrade request's header or the first message, never in the URL; the socket is closed
(4401, after a `SESSION_REVOKED` error) when that token's session is revoked (see ws/hub.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable
from typing import Any, cast

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.marketdata.selectors import instrument_venues, normalise_symbol
from apps.marketdata.ws.hub import get_hub
from apps.marketdata.ws.session import CLOSE_UNAUTHENTICATED, PRICES, SYSTEM, ClientSession
from k2.api.exceptions import ApplicationError
from k2.observability.logging import get_logger

log = get_logger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SYMBOL_LENGTH = 100
CLIENT_RATE = 20.0  # messages per second per socket
CLIENT_BURST = 40.0
# the channels other apps push on (apps.marketdata.push; orders: apps.trading.events)
USER_CHANNELS = frozenset({"orders", "notifications"})
# control characters (NUL reaches PostgreSQL as an error) and lone surrogates (not encodable)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
INSTRUMENT_CACHE_SECONDS = 30.0

_venue_cache: dict[str, tuple[str | None, float]] = {}


def _authenticate(token: str) -> tuple[str, float, str]:
    """(user id, token expiry as epoch seconds, session id); raises the accounts app's 401 errors."""
    from apps.accounts.choices import TOKEN_TYPE_ACCESS
    from apps.accounts.selectors import user_from_access_token
    from apps.accounts.tokens import decode

    user, session = user_from_access_token(token)
    claims = decode(token, token_type=TOKEN_TYPE_ACCESS)
    return str(user.id), float(claims.get("exp") or 0), str(session.pk)


async def _venues_of(symbols: list[str]) -> dict[str, str]:
    """symbol -> venue of the known symbols (cached briefly in process, unknown ones too)."""
    now = time.monotonic()
    out: dict[str, str] = {}
    missing = []
    for symbol in symbols:
        hit = _venue_cache.get(symbol)
        if hit is not None and hit[1] > now:
            if hit[0] is not None:
                out[symbol] = hit[0]
        else:
            missing.append(symbol)
    if missing:
        found = await database_sync_to_async(instrument_venues)(symbols=missing)
        for symbol in missing:
            venue = found.get(symbol)
            _venue_cache[symbol] = (venue, now + INSTRUMENT_CACHE_SECONDS)
            if venue is not None:
                out[symbol] = venue
        if len(_venue_cache) > 50_000:
            _venue_cache.clear()
    return out


def _bearer(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.decode("latin-1").split()
            if len(parts) == 2 and parts[0].lower() == "bearer":
                return parts[1]
            return ""
    return None


class PriceStreamConsumer(AsyncWebsocketConsumer):
    # No channel layer per socket: the process hub does all routing (see ws/hub.py).
    channel_layer_alias = "__marketdata_hub_only__"

    session: ClientSession | None = None
    request_id: Any = None  # the `id` of the message being handled, once parsed

    async def connect(self) -> None:
        self.session = None
        token = _bearer(self.scope)
        user_id: str | None = None
        expires = 0.0
        session_id = ""
        if token is not None:
            try:
                user_id, expires, session_id = await database_sync_to_async(_authenticate)(token)
            except ApplicationError as exc:
                log.info("ws_auth_refused", code=exc.code, via="header")
                await self.close()  # before accept: the upgrade is refused with 403
                return
        await self.accept()
        self.allowance = CLIENT_BURST
        self.allowance_at = time.monotonic()
        hub = get_hub()
        session = ClientSession(
            self._send_text,
            self._close_socket,
            max_rate=settings.K2_WS_MAX_UPDATES_PER_SECOND,
            max_queue=settings.K2_WS_MAX_QUEUED_MESSAGES,
            send_timeout=settings.K2_WS_SEND_TIMEOUT_SECONDS,
            max_subscriptions=settings.K2_WS_MAX_SUBSCRIPTIONS,
        )
        self.session = session
        session.start()
        hub.add(session)
        await hub.ensure_started()  # user messages and the housekeeping sweep need it too
        if user_id is not None:
            self._authenticated(user_id, expires, session_id, None)
        else:
            session.auth_deadline = time.monotonic() + settings.K2_WS_AUTH_TIMEOUT_SECONDS

    async def disconnect(self, code: int) -> None:
        session = self.session
        if session is not None:
            get_hub().remove(session)
            await session.stop()

    def _send_text(self, text: str) -> Awaitable[None]:
        # the ASGI server's own coroutine, unwrapped: the session drives it (see session.py)
        return cast("Awaitable[None]", self.base_send({"type": "websocket.send", "text": text}))

    async def _close_socket(self, code: int, reason: str) -> None:
        await self.base_send({"type": "websocket.close", "code": code, "reason": reason})

    # ---- incoming -------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None or self.session.closed:
            return
        self.request_id = None
        try:
            await self._receive(text_data)
        except Exception:
            # a bug or an outage must cost this message, not the connection
            log.exception("ws_receive_failed")
            self._error("INTERNAL_ERROR", "The server could not handle this message.", self.request_id)

    async def _receive(self, text_data: str | None) -> None:
        session = self.session
        assert session is not None
        if not self._allow():
            self._error("RATE_LIMITED", "Too many messages; slow down.", None)
            return
        if text_data is None:
            self._error("MALFORMED_MESSAGE", "Send JSON text frames.", None)
            return
        if len(text_data) > MAX_MESSAGE_BYTES:
            self._error("MESSAGE_TOO_LARGE", f"Messages are limited to {MAX_MESSAGE_BYTES} bytes.", None)
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
            self._error("MALFORMED_MESSAGE", "The message is not valid JSON.", None)
            return
        if not isinstance(message, dict):
            self._error("MALFORMED_MESSAGE", "A message is a JSON object with a 'type'.", None)
            return
        request_id = self.request_id = message.get("id")  # (for the catch-all's answer too)
        kind = message.get("type")
        if kind == "ping":
            session.enqueue(SYSTEM, _with_id({"type": "pong", "timestamp": _now_iso()}, request_id))
        elif kind == "auth":
            await self._auth(message, request_id)
        elif kind not in ("subscribe", "unsubscribe"):
            self._error("UNKNOWN_MESSAGE_TYPE", f"Unknown message type {kind!r}.", request_id)
        elif session.user_id is None:
            self._error(
                "UNAUTHENTICATED", 'Authenticate first: send {"type":"auth","token":...}.', request_id
            )
        elif kind == "subscribe":
            await self._subscribe(message, request_id)
        else:
            self._unsubscribe(message, request_id)

    def _allow(self) -> bool:
        now = time.monotonic()
        self.allowance = min(CLIENT_BURST, self.allowance + (now - self.allowance_at) * CLIENT_RATE)
        self.allowance_at = now
        if self.allowance < 1:
            return False
        self.allowance -= 1
        return True

    async def _auth(self, message: dict[str, Any], request_id: Any) -> None:
        assert self.session is not None
        token = message.get("token")
        if not isinstance(token, str) or not token:
            self._error("VALIDATION_ERROR", "'token' must be a non-empty string.", request_id)
            return
        try:
            user_id, expires, session_id = await database_sync_to_async(_authenticate)(token)
        except ApplicationError as exc:
            log.info("ws_auth_refused", code=exc.code, via="message")
            self._error(exc.code, exc.message, request_id)
            if self.session.user_id is None:
                get_hub().close_session(
                    self.session, CLOSE_UNAUTHENTICATED, "authentication failed", flush=True
                )
            return
        if self.session.user_id is not None and self.session.user_id != user_id:
            self._error("AUTH_USER_MISMATCH", "This socket belongs to another user.", request_id)
            return
        self._authenticated(user_id, expires, session_id, request_id)

    def _authenticated(self, user_id: str, expires: float, session_id: str, request_id: Any) -> None:
        session = self.session
        assert session is not None
        if session.user_id is None:
            get_hub().set_user(session, user_id)
        get_hub().set_auth_session(session, session_id)
        session.auth_deadline = None
        session.token_expires_at = expires or None
        session.enqueue(
            SYSTEM,
            _with_id(
                {
                    "type": "authenticated",
                    "user_id": user_id,
                    "expires_at": _iso(expires) if expires else None,
                    "limits": {
                        "max_subscriptions": session.max_subscriptions,
                        "max_updates_per_second": settings.K2_WS_MAX_UPDATES_PER_SECOND,
                    },
                },
                request_id,
            ),
        )

    async def _subscribe(self, message: dict[str, Any], request_id: Any) -> None:
        session = self.session
        assert session is not None
        channel = message.get("channel", PRICES)
        if channel != PRICES:
            self._mute(channel, request_id, mute=False)
            return
        symbols = self._instruments(message, request_id, required=True)
        if symbols is None:
            return
        new = [s for s in symbols if s not in session.subscriptions]
        total = len(session.subscriptions) + len(new)
        if total > session.max_subscriptions:
            self._error(
                "TOO_MANY_SUBSCRIPTIONS",
                f"At most {session.max_subscriptions} instruments per connection.",
                request_id,
                {
                    "limit": session.max_subscriptions,
                    "current": len(session.subscriptions),
                    "requested": len(new),
                },
            )
            return
        venues = await _venues_of(new)
        unknown = [s for s in new if s not in venues]
        if unknown:
            self._error(
                "UNKNOWN_INSTRUMENT",
                f"Unknown instrument(s): {', '.join(unknown)}.",
                request_id,
                {"instruments": unknown},
            )
        known = {s: venues[s] for s in new if s in venues}
        if not known and unknown:
            return
        session.enqueue(
            PRICES,
            _with_id(
                {"type": "subscribed", "instruments": sorted({*session.subscriptions, *known})}, request_id
            ),
        )
        if known:
            await get_hub().subscribe(session, known)

    def _unsubscribe(self, message: dict[str, Any], request_id: Any) -> None:
        session = self.session
        assert session is not None
        channel = message.get("channel", PRICES)
        if channel != PRICES:
            self._mute(channel, request_id, mute=True)
            return
        if message.get("instruments") is None:
            symbols: list[str] | None = list(session.subscriptions)
        else:
            symbols = self._instruments(message, request_id, required=True)
        if symbols is None:
            return
        get_hub().unsubscribe(session, [s for s in symbols if s in session.subscriptions])
        session.enqueue(
            PRICES,
            _with_id({"type": "unsubscribed", "instruments": sorted(session.subscriptions)}, request_id),
        )

    def _mute(self, channel: Any, request_id: Any, *, mute: bool) -> None:
        session = self.session
        assert session is not None
        if not isinstance(channel, str) or channel not in USER_CHANNELS:  # also bounds `muted`
            shown = channel[:50] if isinstance(channel, str) else channel
            self._error("UNKNOWN_CHANNEL", f"Unknown channel {shown!r}.", request_id)
            return
        if mute:
            session.muted.add(channel)
        else:
            session.muted.discard(channel)
        kind = "unsubscribed" if mute else "subscribed"
        session.enqueue(channel, _with_id({"type": kind}, request_id))

    def _instruments(self, message: dict[str, Any], request_id: Any, *, required: bool) -> list[str] | None:
        raw = message.get("instruments")
        limit = self.session.max_subscriptions if self.session else 0
        if (
            not isinstance(raw, list)
            or (required and not raw)
            or not all(
                isinstance(s, str) and 0 < len(s) <= MAX_SYMBOL_LENGTH and not _CONTROL_CHARACTERS.search(s)
                for s in raw
            )
        ):
            self._error(
                "VALIDATION_ERROR",
                "'instruments' must be a non-empty list of instrument symbols.",
                request_id,
            )
            return None
        symbols = list(dict.fromkeys(normalise_symbol(s) for s in raw))
        if len(symbols) > limit:
            self._error(
                "TOO_MANY_SUBSCRIPTIONS",
                f"At most {limit} instruments per connection.",
                request_id,
                {"limit": limit, "requested": len(symbols)},
            )
            return None
        return symbols

    def _error(self, code: str, message: str, request_id: Any, details: dict[str, Any] | None = None) -> None:
        if self.session is not None:
            body = {"type": "error", "code": code, "message": message, "details": details or {}}
            self.session.enqueue(SYSTEM, _with_id(body, request_id))


def _with_id(body: dict[str, Any], request_id: Any) -> dict[str, Any]:
    if isinstance(request_id, str | int) and not isinstance(request_id, bool):
        body["id"] = request_id
    return body


def _now_iso() -> str:
    return _iso(time.time())


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")
