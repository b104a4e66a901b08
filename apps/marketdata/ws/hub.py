"""The per-process fan-out hub: one Redis subscription per web process, broadcast in memory.

The feed publishes each price once to `k2:md:events`; every web process's hub receives it once,
serialises the client message once, and offers it to the local sockets subscribed to that
instrument (each socket conflates on its own, see `session.py`). Messages for one user
(`k2:ws:user`, from `apps.marketdata.push`) reach that user's local sockets the same way. So a
tick costs one Redis message per web process, not one channel-layer `group_send` per socket.

Revoked sessions (logout, password change, `session_revoke_all`): the accounts services publish
`{"t":"revoke","user_id",...,"session_ids":[...]}` on the same user channel after commit
(`sessions_revoked_publish_on_commit`), and the hub closes the sockets authenticated with those
sessions (4401) before any later message for the user reaches them. As a fallback for a lost
publish, the sweep re-reads every few seconds which of its sockets' sessions were revoked (one
query per process for all its sockets).

The hub also runs the per-process housekeeping sweep: heartbeats, the slow-consumer watchdog,
the authentication deadline and token expiry, and venue liveness (a feed that died without
saying so shows up as its venue key expiring; clients are told their prices went stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from apps.marketdata import cache
from apps.marketdata.ws.session import (
    CLOSE_SLOW_CONSUMER,
    CLOSE_UNAUTHENTICATED,
    PRICES,
    SYSTEM,
    ClientSession,
    fragment,
)
from k2.aio import cancel_and_wait
from k2.observability.logging import get_logger

log = get_logger(__name__)

SWEEP_SECONDS = 0.5
VENUE_POLL_SECONDS = 2.0
SUBSCRIBE_TIMEOUT = 5.0
REVOCATION_POLL_SECONDS = 5.0
REVOKE_EVENT = "revoke"


def sessions_revoked_publish_on_commit(*, revoked: Iterable[tuple[Any, Any]]) -> None:
    """After commit, tell every web process to close the sockets of these `(user_id, session_id)`
    pairs. Best effort (`robust`: Redis down is logged, the revocation stands; the hub's sweep
    catches up)."""
    by_user: dict[str, list[str]] = {}
    for user_id, session_id in revoked:
        by_user.setdefault(str(user_id), []).append(str(session_id))
    if not by_user:
        return
    payloads = [
        json.dumps({"t": REVOKE_EVENT, "user_id": user_id, "session_ids": ids})
        for user_id, ids in by_user.items()
    ]

    def publish() -> None:
        with cache.sync_client().pipeline(transaction=False) as pipe:
            for payload in payloads:
                pipe.publish(cache.USER_CHANNEL, payload)
            pipe.execute()

    transaction.on_commit(publish, robust=True)


def _revoked_among(session_ids: set[str]) -> set[str]:
    from apps.accounts.models import Session

    return {
        str(pk)
        for pk in Session.objects.filter(pk__in=session_ids, revoked_at__isnull=False).values_list(
            "pk", flat=True
        )
    }


def _iso_now() -> str:
    return datetime.now(tz=UTC).isoformat().replace("+00:00", "Z")


def price_message(snap: dict[str, Any], *, stale: bool) -> str:
    """The client `price` message (without channel/seq/snapshot, added per socket)."""
    body = dict(snap)
    body["feed_seq"] = body.pop("seq", 0)
    body["stale"] = bool(body.get("stale")) or stale
    return fragment({"type": "price", **body})


class Hub:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sessions: set[ClientSession] = set()
        self.by_instrument: dict[str, set[ClientSession]] = {}
        self.by_user: dict[str, set[ClientSession]] = {}
        self.auth_session: dict[ClientSession, str] = {}  # socket -> accounts session id
        self.venue_live: dict[str, bool] = {}
        self.redis: aioredis.Redis = cache.async_client()
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._revocation_check: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self.stats = {"events": 0, "prices": 0, "offers": 0, "user_messages": 0, "reconnects": 0}

    # ---- lifecycle ------------------------------------------------------------------------
    async def ensure_started(self) -> None:
        """Subscribed to the fan-out channels before returning, so a snapshot read after this
        call can never miss an update published in between."""
        async with self._start_lock:
            if self._reader is None or self._reader.done():
                self._ready.clear()
                self._reader = self.loop.create_task(self._read_forever())
                self._sweeper = self._sweeper or self.loop.create_task(self._sweep_forever())
        await asyncio.wait_for(self._ready.wait(), SUBSCRIBE_TIMEOUT)

    async def stop(self) -> None:
        await cancel_and_wait(self._reader, self._sweeper, self._revocation_check)
        self._reader = self._sweeper = self._revocation_check = None
        for session in list(self.sessions):
            await session.stop()
        self.sessions.clear()
        self.by_instrument.clear()
        self.by_user.clear()
        self.auth_session.clear()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    # ---- registry -------------------------------------------------------------------------
    def add(self, session: ClientSession) -> None:
        self.sessions.add(session)

    def remove(self, session: ClientSession) -> None:
        self.sessions.discard(session)
        self.auth_session.pop(session, None)
        for instrument in list(session.subscriptions):
            self._unindex(session, instrument)
        if session.user_id is not None:
            users = self.by_user.get(session.user_id)
            if users is not None:
                users.discard(session)
                if not users:
                    del self.by_user[session.user_id]

    def set_user(self, session: ClientSession, user_id: str) -> None:
        session.user_id = user_id
        self.by_user.setdefault(user_id, set()).add(session)

    def set_auth_session(self, session: ClientSession, session_id: str) -> None:
        """The accounts session the socket's current token belongs to (closed when it is revoked)."""
        if session in self.sessions:
            self.auth_session[session] = session_id

    async def subscribe(self, session: ClientSession, venues_of: dict[str, str]) -> None:
        """Start delivering the instruments' prices to `session`, then offer each one's cached
        price as its snapshot (an instrument never priced gets an all-null stale snapshot)."""
        await self.ensure_started()
        for instrument, venue in venues_of.items():
            session.watch(instrument, venue)
            self.by_instrument.setdefault(instrument, set()).add(session)
        snaps = await cache.prices_read_async(self.redis, list(venues_of), venues_of)
        for instrument, snap in snaps.items():
            if snap is None:
                placeholder = {
                    "instrument": instrument, "venue": venues_of[instrument], "price": None, "bid": None,
                    "ask": None, "bid_size": None, "ask_size": None, "change_24h": None, "volume_24h": None,
                    "high_24h": None, "low_24h": None, "timestamp": None, "seq": 0, "stale": True,
                }  # fmt: skip
                session.offer_price(instrument, 0, price_message(placeholder, stale=True))
            else:
                session.offer_price(instrument, snap.seq, price_message(snap.as_dict(), stale=snap.stale))

    def unsubscribe(self, session: ClientSession, instruments: Iterable[str]) -> None:
        for instrument in list(instruments):
            self._unindex(session, instrument)

    def _unindex(self, session: ClientSession, instrument: str) -> None:
        session.forget(instrument)
        subs = self.by_instrument.get(instrument)
        if subs is not None:
            subs.discard(session)
            if not subs:
                del self.by_instrument[instrument]

    # ---- Redis ----------------------------------------------------------------------------
    async def _read_forever(self) -> None:
        attempt = 0
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(cache.EVENTS_CHANNEL, cache.USER_CHANNEL)
                if attempt:
                    self.stats["reconnects"] += 1
                    await self._resnapshot()
                await self._refresh_venues(announce=bool(attempt))
                self._ready.set()
                attempt = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                attempt += 1
                log.warning("ws_hub_redis_lost", attempt=attempt, exc_info=True)
                await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        self.stats["events"] += 1
        name = channel.decode() if isinstance(channel, bytes) else channel
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("ws_hub_bad_event", channel=name)
            return
        if name == cache.USER_CHANNEL:
            if event.get("t") == REVOKE_EVENT:
                self._on_revoke(str(event.get("user_id")), event.get("session_ids"))
            else:
                self._on_user_message(event)
        elif event.get("t") == "price":
            self._on_price(event["p"])
        elif event.get("t") == "status":
            self._on_status(str(event.get("venue")), str(event.get("state")), str(event.get("detail", "")))

    def _on_price(self, snap: dict[str, Any]) -> None:
        self.stats["prices"] += 1
        instrument = snap.get("instrument")
        subscribers = self.by_instrument.get(str(instrument))
        if not subscribers:
            return
        venue = str(snap.get("venue"))
        stale = not self.venue_live.get(venue, True)
        frag = price_message(snap, stale=stale)
        feed_seq = int(snap.get("seq") or 0)
        for session in subscribers:
            session.offer_price(str(instrument), feed_seq, frag)
        self.stats["offers"] += len(subscribers)

    def _on_status(self, venue: str, state: str, detail: str) -> None:
        live = state == cache.VENUE_LIVE
        was = self.venue_live.get(venue)
        self.venue_live[venue] = live
        if was == live:
            return
        for session in self.sessions:
            instruments = sorted(i for i, v in session.subscriptions.items() if v == venue)
            if instruments:
                session.enqueue(
                    PRICES,
                    {
                        "type": "status",
                        "venue": venue,
                        "state": state,
                        "stale": not live,
                        "instruments": instruments,
                        "detail": detail,
                        "timestamp": _iso_now(),
                    },
                )

    def _on_user_message(self, event: dict[str, Any]) -> None:
        sessions = self.by_user.get(str(event.get("user_id")))
        message = event.get("message")
        channel = str(event.get("channel") or "notifications")
        if not sessions or not isinstance(message, dict):
            return
        self.stats["user_messages"] += 1
        frag = fragment(message)
        for session in sessions:
            if channel not in session.muted:
                session.enqueue(channel, frag)

    def _on_revoke(self, user_id: str, session_ids: Any) -> None:
        if not isinstance(session_ids, list):
            return
        revoked = {str(s) for s in session_ids}
        for session in list(self.by_user.get(user_id, ())):
            if self.auth_session.get(session) in revoked:
                self._close_revoked(session)

    def _close_revoked(self, session: ClientSession) -> None:
        log.info("ws_session_revoked_closed", user_id=session.user_id)
        session.enqueue(
            SYSTEM,
            {"type": "error", "code": "SESSION_REVOKED", "message": "This session has ended. Sign in again."},
        )
        self.close_session(session, CLOSE_UNAUTHENTICATED, "session revoked", flush=True)

    async def _resnapshot(self) -> None:
        """After losing Redis for a while, give every socket fresh prices (marked as snapshots)."""
        wanted: dict[str, str] = {}
        for session in self.sessions:
            wanted.update(session.subscriptions)
            session.awaiting_snapshot.update(session.subscriptions)
        snaps = await cache.prices_read_async(self.redis, list(wanted), wanted)
        for instrument, snap in snaps.items():
            if snap is None:
                continue
            frag = price_message(snap.as_dict(), stale=snap.stale)
            for session in self.by_instrument.get(instrument, ()):
                session.last_feed_seq.pop(instrument, None)
                session.offer_price(instrument, snap.seq, frag)

    async def _refresh_venues(self, *, announce: bool) -> None:
        venues = {v for s in self.sessions for v in s.subscriptions.values()} | set(self.venue_live)
        states = await cache.venue_states_read_async(self.redis, venues)
        for venue, state in states.items():
            if announce or venue in self.venue_live:
                self._on_status(venue, state.state, state.detail)
            else:
                self.venue_live[venue] = state.live

    # ---- housekeeping ---------------------------------------------------------------------
    def close_session(self, session: ClientSession, code: int, reason: str, *, flush: bool = False) -> None:
        """Stop delivering to `session` and close it: at once (a slow consumer: nothing more can
        be sent), or after the messages already queued (`flush`: e.g. the error saying why)."""
        self.remove(session)
        if flush:
            session.close_after_flush(code, reason)
        else:
            session.kill(code, reason)

    async def _sweep_forever(self) -> None:
        next_heartbeat = time.monotonic() + settings.K2_WS_HEARTBEAT_SECONDS
        next_venue_poll = time.monotonic() + VENUE_POLL_SECONDS
        next_revocation_poll = time.monotonic() + REVOCATION_POLL_SECONDS
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                now = time.monotonic()
                self._sweep_sessions(now)
                if now >= next_heartbeat:
                    next_heartbeat = now + settings.K2_WS_HEARTBEAT_SECONDS
                    beat = fragment({"type": "heartbeat", "timestamp": _iso_now()})
                    for session in self.sessions:
                        session.enqueue(SYSTEM, beat)
                if now >= next_venue_poll:
                    next_venue_poll = now + VENUE_POLL_SECONDS
                    await self._refresh_venues(announce=False)
                if now >= next_revocation_poll:
                    next_revocation_poll = now + REVOCATION_POLL_SECONDS
                    if self.auth_session and (
                        self._revocation_check is None or self._revocation_check.done()
                    ):
                        # its own task: a slow database must not hold up heartbeats and the watchdog
                        self._revocation_check = self.loop.create_task(self._close_revoked_sessions())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("ws_hub_sweep_failed", exc_info=True)

    async def _close_revoked_sessions(self) -> None:
        """The fallback for a lost revoke event: one query for all this process's sockets."""
        try:
            revoked = await database_sync_to_async(_revoked_among)(set(self.auth_session.values()))
        except Exception:
            log.warning("ws_hub_revocation_check_failed", exc_info=True)
            return
        for session, session_id in list(self.auth_session.items()):
            if session_id in revoked:
                self._close_revoked(session)

    def _sweep_sessions(self, now: float) -> None:
        loop_now = self.loop.time()
        wall = time.time()
        for session in list(self.sessions):
            if session.closed:  # its socket failed: free it now, the disconnect may never come
                self.close_session(session, CLOSE_SLOW_CONSUMER, "send failed")
                continue
            if session.stuck_for(loop_now) > session.send_timeout:
                log.info("ws_slow_consumer_closed", user_id=session.user_id, buffered=session.buffered())
                self.close_session(session, CLOSE_SLOW_CONSUMER, "slow consumer")
            elif (
                session.user_id is None and session.auth_deadline is not None and now > session.auth_deadline
            ):
                session.enqueue(
                    SYSTEM, {"type": "error", "code": "AUTH_TIMEOUT", "message": "Authenticate first."}
                )
                self.close_session(session, CLOSE_UNAUTHENTICATED, "authentication timeout", flush=True)
                session.auth_deadline = None
            elif session.token_expires_at is not None and wall > session.token_expires_at:
                session.enqueue(
                    SYSTEM,
                    {
                        "type": "error",
                        "code": "TOKEN_EXPIRED",
                        "message": "The access token expired; reconnect with a fresh one.",
                    },
                )
                session.token_expires_at = None
                self.close_session(session, CLOSE_UNAUTHENTICATED, "token expired", flush=True)


_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop (one per web process in production)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None or hub.loop is not loop:
        hub = Hub()
        _hubs[id(loop)] = hub
    return hub


async def reset_hub() -> None:
    """Stop and forget this loop's hub (tests)."""
    hub = _hubs.pop(id(asyncio.get_running_loop()), None)
    if hub is not None:
        await hub.stop()
