"""Push a message to every open `/ws/prices` socket of one user, on any web process.

    from apps.marketdata.push import push_to_user_on_commit
    push_to_user_on_commit(order.user_id, {"type": "order_update", "order_id": str(order.id),
                                            "status": "filled", ...}, channel="orders")

The message is any JSON object with a `type`; the client receives it with `channel` and the
socket's per-channel `seq` added: `{"channel":"orders","seq":7,"type":"order_update",...}`.
Delivery is at most once and best effort (a socket that is not connected misses it; clients
re-read state over REST after reconnecting or on a `seq` gap). Use the `_on_commit` form inside
a transaction so a rolled-back change is never announced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from apps.marketdata import cache

RESERVED = frozenset({"prices", "system"})


def _payload(user_id: Any, message: dict[str, Any], channel: str) -> str:
    if channel in RESERVED or not channel:
        raise ValueError(f"channel {channel!r} is reserved")
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("message must be a JSON object with a string 'type'")
    if "channel" in message or "seq" in message:
        raise ValueError("'channel' and 'seq' are added by the socket")
    return json.dumps({"user_id": str(user_id), "channel": channel, "message": message}, default=str)


def push_to_user(user_id: Any, message: dict[str, Any], *, channel: str = "notifications") -> int:
    """Publish now; returns how many web processes received it."""
    return int(cache.sync_client().publish(cache.USER_CHANNEL, _payload(user_id, message, channel)))


def push_to_users(messages: Sequence[tuple[Any, dict[str, Any], str]]) -> None:
    """Publish several `(user_id, message, channel)` now, in this order, in one round trip."""
    if len(messages) == 1:
        user_id, message, channel = messages[0]
        push_to_user(user_id, message, channel=channel)
        return
    payloads = [_payload(user_id, message, channel) for user_id, message, channel in messages]
    with cache.sync_client().pipeline(transaction=False) as pipe:
        for payload in payloads:
            pipe.publish(cache.USER_CHANNEL, payload)
        pipe.execute()


def push_to_user_on_commit(user_id: Any, message: dict[str, Any], *, channel: str = "notifications") -> None:
    """Publish after the current transaction commits (now, outside one)."""
    payload = _payload(user_id, message, channel)
    transaction.on_commit(lambda: cache.sync_client().publish(cache.USER_CHANNEL, payload))


async def apush_to_user(user_id: Any, message: dict[str, Any], *, channel: str = "notifications") -> int:
    """The asyncio form (consumers, the feed)."""
    client = cache.async_client()
    try:
        return int(await client.publish(cache.USER_CHANNEL, _payload(user_id, message, channel)))
    finally:
        await client.aclose()
