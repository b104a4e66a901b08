"""`/ws/prices` hardening, end to end (uvicorn serving k2.asgi, real PostgreSQL and Redis, real
tokens): revoked sessions lose their sockets, hostile frames get error answers and the socket
stays open, and only the known user channels can be muted."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import psycopg
import pytest
from django.db import connections
from django.utils import timezone
from websockets.exceptions import ConnectionClosed

from apps.accounts.choices import SessionRevokeReason
from apps.accounts.models import Session
from apps.accounts.services import ClientInfo, auth_login, password_change, session_revoke
from apps.marketdata.push import push_to_user
from apps.marketdata.ws import hub as hub_module
from tests.marketdata.conftest import PASSWORD, in_thread, make_user_token, recv_json, recv_until, ws_connect

pytestmark = pytest.mark.django_db(transaction=True)

ORDER_UPDATE = {"type": "order_update", "order_id": "o-1", "status": "filled", "filled_quantity": "0.1"}


async def authed(asgi_server: Any, token: str) -> Any:
    ws = await ws_connect(asgi_server.ws_url, token)
    assert (await recv_json(ws))["type"] == "authenticated"
    return ws


def second_login(email: str) -> str:
    result = auth_login(email=email, password=PASSWORD, client=ClientInfo(ip="127.0.0.1"))
    assert result.tokens is not None
    return result.tokens.access_token


def sessions_of(user: Any) -> list[Session]:
    return list(Session.objects.filter(user=user).order_by("created_at"))


async def frames_until_closed(ws: Any, timeout: float = 5.0) -> tuple[list[dict[str, Any]], int | None]:
    """The frames received until the server closes the socket, and its close code."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            seen.append(await recv_json(ws, left))
    except ConnectionClosed as closed:
        return seen, closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        pass
    raise AssertionError(f"still open after {timeout}s; received {seen}")


async def assert_still_open(ws: Any) -> None:
    await ws.send(json.dumps({"type": "ping", "id": "still-open"}))
    assert (await recv_until(ws, lambda m: m["type"] == "pong"))["id"] == "still-open"


# ---- 1. a revoked session's socket is closed --------------------------------------------------


async def two_sessions_sockets(asgi_server: Any, monkeypatch: Any) -> tuple[Any, list[Any], list[Session]]:
    """One user signed in twice, a socket authenticated with each session: (user, sockets,
    sessions), in sign-in order. Revocations reach sockets by their event only (no sweep)."""
    monkeypatch.setattr(hub_module, "REVOCATION_POLL_SECONDS", 3600.0, raising=False)
    user, token = await in_thread(make_user_token, "alice@example.com")
    other_token = await in_thread(second_login, "alice@example.com")
    sockets = [await authed(asgi_server, token), await authed(asgi_server, other_token)]
    return user, sockets, await in_thread(sessions_of, user)


async def test_logout_closes_that_sessions_socket_before_the_next_order_update(asgi_server, monkeypatch):
    user, (revoked_ws, other_ws), (first, _second) = await two_sessions_sockets(asgi_server, monkeypatch)
    await in_thread(session_revoke, session=first, actor=user, reason=SessionRevokeReason.LOGOUT)
    await asyncio.to_thread(push_to_user, user.id, ORDER_UPDATE, channel="orders")

    seen, code = await frames_until_closed(revoked_ws)
    assert code == 4401
    assert not [m for m in seen if m["type"] == "order_update"]
    assert [m["code"] for m in seen if m["type"] == "error"] == ["SESSION_REVOKED"]
    # the user's other session still gets its order updates
    got = await recv_until(other_ws, lambda m: m["type"] == "order_update")
    assert got["order_id"] == "o-1"
    await other_ws.close()


async def test_password_change_closes_the_other_sessions_sockets(asgi_server, monkeypatch):
    user, (stolen_ws, kept_ws), (_first, kept) = await two_sessions_sockets(asgi_server, monkeypatch)
    revoked = await in_thread(
        password_change, user=user, session=kept, current_password=PASSWORD, new_password="an0ther-Passw0rd!"
    )
    assert revoked == 1
    await asyncio.to_thread(push_to_user, user.id, ORDER_UPDATE, channel="orders")

    seen, code = await frames_until_closed(stolen_ws)
    assert code == 4401
    assert not [m for m in seen if m["type"] == "order_update"]
    assert (await recv_until(kept_ws, lambda m: m["type"] == "order_update"))["order_id"] == "o-1"
    await kept_ws.close()


async def test_the_sweep_closes_a_revoked_sessions_socket_when_the_event_was_lost(asgi_server, monkeypatch):
    monkeypatch.setattr(hub_module, "REVOCATION_POLL_SECONDS", 0.5)
    user, token = await in_thread(make_user_token, "alice@example.com")
    ws = await authed(asgi_server, token)

    def revoke_without_event() -> None:  # as if the publish after commit never arrived
        Session.objects.filter(user=user).update(revoked_at=timezone.now(), revoked_reason="user")

    await in_thread(revoke_without_event)
    seen, code = await frames_until_closed(ws)
    assert code == 4401
    assert [m.get("code") for m in seen if m["type"] == "error"] == ["SESSION_REVOKED"]


# ---- 2. a deeply nested frame ------------------------------------------------------------------


async def test_a_deeply_nested_frame_is_malformed_and_the_socket_stays_open(asgi_server, user_token):
    _, token = user_token
    ws = await authed(asgi_server, token)
    await ws.send("[" * 30000)  # under the 64 KB limit, deeper than the parser's recursion limit
    error = await recv_until(ws, lambda m: m["type"] == "error")
    assert error["code"] == "MALFORMED_MESSAGE"
    await assert_still_open(ws)
    await ws.close()


# ---- 3. control characters in symbols, and unexpected failures ---------------------------------


@pytest.mark.parametrize("symbol", ["BTC\u0000", "BTC\u0007-USD", "BTC\u0085", "BTC\ud800"])
async def test_a_symbol_with_control_characters_is_a_validation_error(asgi_server, user_token, symbol):
    _, token = user_token
    ws = await authed(asgi_server, token)
    await ws.send(json.dumps({"type": "subscribe", "channel": "prices", "instruments": [symbol], "id": 1}))
    error = await recv_until(ws, lambda m: m["type"] == "error")
    assert (error["code"], error["id"]) == ("VALIDATION_ERROR", 1)
    await assert_still_open(ws)
    await ws.close()


async def test_a_token_that_cannot_be_encoded_gets_the_usual_auth_error(asgi_server, user_token):
    # a lone surrogate ("\ud800" in the JSON) cannot be encoded to UTF-8; the token decoder
    # refuses it like any other garbage: TOKEN_INVALID, and close 4401 if not yet authenticated
    _user, token = user_token
    answers = []
    for bad in ("not-a-token", "a\ud800b", token + "\ud800", token[:20] + "\udfff" + token[20:]):
        ws = await ws_connect(asgi_server.ws_url)
        await ws.send(json.dumps({"type": "auth", "token": bad, "id": 7}))
        seen, code = await frames_until_closed(ws)
        assert code == 4401, (bad, seen)
        answers.append([m for m in seen if m["type"] == "error"])
    assert [(m["code"], m["message"], m["id"]) for m in answers[0]] == [
        ("TOKEN_INVALID", "The token is invalid.", 7)
    ], answers[0]
    assert all(a == answers[0] for a in answers[1:]), answers
    # an authenticated socket that re-authenticates with one keeps its authentication
    ws = await authed(asgi_server, token)
    await ws.send(json.dumps({"type": "auth", "token": "a\ud800b"}))
    assert (await recv_until(ws, lambda m: m["type"] == "error"))["code"] == "TOKEN_INVALID"
    await assert_still_open(ws)
    await ws.close()


def _hold_sessions_table() -> psycopg.Connection:
    """A second database client holding an exclusive lock on the sessions table (as a migration
    would), in an open transaction: anything reading a session waits for it."""
    db = connections["default"].settings_dict
    conn = psycopg.connect(
        host=db["HOST"], port=db["PORT"] or None, dbname=db["NAME"], user=db["USER"],
        password=db["PASSWORD"], connect_timeout=5,
    )  # fmt: skip
    conn.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
    return conn


def _terminate_backends_blocked_by(holder: psycopg.Connection, timeout: float = 10.0) -> int:
    """Have PostgreSQL end the connections waiting for `holder`'s lock (what a failover or an
    operator's pg_terminate_backend does to a server's connection); how many it ended."""
    db = connections["default"].settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or None, dbname=db["NAME"], user=db["USER"],
        password=db["PASSWORD"], connect_timeout=5, autocommit=True,
    ) as admin:  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE %s = ANY(pg_blocking_pids(pid))",
                [holder.info.backend_pid],
            ).fetchall()
            if rows:
                return len(rows)
            time.sleep(0.02)
    raise AssertionError(f"nothing waited for the lock within {timeout}s")


async def test_an_unexpected_failure_answers_internal_error_and_the_socket_stays_open(
    asgi_server, user_token
):
    # A real fault, nothing patched: the database ends the connection that is reading this
    # token's session. The error is not one of the accounts app's: it reaches the consumer's
    # catch-all, which answers INTERNAL_ERROR and keeps the socket.
    user, token = user_token
    ws = await ws_connect(asgi_server.ws_url)
    holder = await asyncio.to_thread(_hold_sessions_table)
    try:
        await ws.send(json.dumps({"type": "auth", "token": token, "id": 9}))
        assert await asyncio.to_thread(_terminate_backends_blocked_by, holder) == 1
        error = await recv_until(ws, lambda m: m["type"] == "error")
        assert (error["code"], error["id"]) == ("INTERNAL_ERROR", 9)
    finally:
        await asyncio.to_thread(holder.close)  # rolls back: the lock is released
    await ws.send(json.dumps({"type": "auth", "token": token}))
    assert (await recv_until(ws, lambda m: m["type"] == "authenticated"))["user_id"] == str(user.id)
    await ws.close()


# ---- 4. only the known user channels ------------------------------------------------------------


async def test_only_known_user_channels_can_be_muted(asgi_server, user_token):
    user, token = user_token
    ws = await authed(asgi_server, token)
    for channel in ["made-up", "x" * 50, ["orders"], "", "system"]:
        for kind in ("unsubscribe", "subscribe"):
            await ws.send(json.dumps({"type": kind, "channel": channel}))
            error = await recv_until(ws, lambda m: m["type"] == "error")
            assert error["code"] == "UNKNOWN_CHANNEL", (kind, channel)
    for channel in ("orders", "notifications"):
        await ws.send(json.dumps({"type": "unsubscribe", "channel": channel}))
        assert (await recv_until(ws, lambda m: m["type"] == "unsubscribed"))["channel"] == channel
    await asyncio.to_thread(push_to_user, user.id, ORDER_UPDATE, channel="orders")
    with pytest.raises(TimeoutError):
        await recv_until(ws, lambda m: m["type"] == "order_update", timeout=0.5)
    await ws.close()
